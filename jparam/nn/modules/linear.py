"""Linear family: Identity, Linear, Bilinear (torch layouts and torch init)."""
from __future__ import annotations

import math
from typing import Any, Optional

import jax
import jax.numpy as jnp

from jparam._module import Module
from jparam._parameter import Parameter
from jparam._random import next_key
from jparam._random import normal as _host_normal, uniform as _host_uniform
from jparam.nn import functional as F

__all__ = ["Identity", "Linear", "Bilinear"]


def _uniform(shape, bound: float, dtype) -> jax.Array:
    dtype = jnp.dtype(dtype) if dtype is not None else jnp.float32
    return _host_uniform(shape, jnp.float32, -bound, bound).astype(dtype)


def _data(p: Optional[Parameter]):
    return None if p is None else p.data


class Identity(Module):
    """Returns its input (accepts and ignores any constructor arguments, like torch).

    Example:
        >>> nn.Identity(54, unused="x")(jnp.ones(3)).shape
        (3,)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Any) -> Any:
        return input


class Linear(Module):
    r"""``y = x W^T + b`` with ``weight`` of shape ``(out_features, in_features)``.

    Init (torch's): ``weight, bias ~ U(-1/sqrt(in_features), 1/sqrt(in_features))``
    (kaiming_uniform with ``a = sqrt(5)``).

    Example:
        >>> fc = nn.Linear(3, 2)
        >>> fc(jnp.ones((4, 3))).shape
        (4, 2)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        self.weight = Parameter(_uniform((out_features, in_features), bound, dtype))
        if bias:
            self.bias = Parameter(_uniform((out_features,), bound, dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, input: jax.Array) -> jax.Array:
        if jnp.shape(input)[-1:] != (self.in_features,):
            raise ValueError(f"Linear: expected input with last dimension {self.in_features}, "
                             f"got shape {tuple(jnp.shape(input))}")
        return F.linear(input, self.weight.data, _data(self.bias))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Bilinear(Module):
    r"""``y_k = x1ᵀ W_k x2 + b_k`` with ``weight`` ``(out_features, in1_features, in2_features)``.

    Init (torch's): weight and bias ``~ U(±1/sqrt(in1_features))``.

    Example:
        >>> m = nn.Bilinear(3, 4, 2)
        >>> m(jnp.ones((5, 3)), jnp.ones((5, 4))).shape
        (5, 2)
    """

    def __init__(self, in1_features: int, in2_features: int, out_features: int, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.in1_features = in1_features
        self.in2_features = in2_features
        self.out_features = out_features
        bound = 1.0 / math.sqrt(in1_features) if in1_features > 0 else 0.0
        self.weight = Parameter(_uniform((out_features, in1_features, in2_features), bound, dtype))
        if bias:
            self.bias = Parameter(_uniform((out_features,), bound, dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, input1: jax.Array, input2: jax.Array) -> jax.Array:
        return F.bilinear(input1, input2, self.weight.data, _data(self.bias))

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")
