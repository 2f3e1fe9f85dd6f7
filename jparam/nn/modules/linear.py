"""Linear family: Identity, Linear (torch layout ``(out, in)``, torch init)."""
from __future__ import annotations

import math
from typing import Any, Optional

import jax
import jax.numpy as jnp

from jparam._module import Module
from jparam._parameter import Parameter
from jparam._random import next_key

__all__ = ["Identity", "Linear"]


def _uniform(shape, bound: float, dtype) -> jax.Array:
    dtype = jnp.dtype(dtype) if dtype is not None else jnp.float32
    return jax.random.uniform(next_key(), shape, jnp.float32, -bound, bound).astype(dtype)


class Identity(Module):
    """Returns its input (accepts and ignores any constructor arguments, like torch)."""

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
        y = jnp.matmul(input, self.weight.data.T)
        if self.bias is not None:
            y = y + self.bias.data
        return y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
