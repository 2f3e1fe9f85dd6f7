"""Activation modules (torch names, constructor signatures and reprs); attention lives in
``activation_attention.py``."""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from jparam._module import Module
from jparam._parameter import Parameter, _unwrap
from jparam.nn import functional as F
from jparam.nn import init as nn_init

__all__ = ["ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU", "SiLU",
           "Mish", "Sigmoid", "Tanh", "Hardtanh", "Hardsigmoid", "Hardswish", "Hardshrink",
           "Softshrink", "Tanhshrink", "Softplus", "Softsign", "Softmax", "Softmin", "LogSoftmax",
           "Softmax2d", "GLU", "Threshold", "LogSigmoid"]


def _inplace(inplace: bool, lead: str = ", ") -> str:
    return f"{lead}inplace=True" if inplace else ""


class _Plain(Module):
    """An activation with no arguments beyond ``inplace``."""

    _fn: Callable

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return self._fn(input)

    def extra_repr(self) -> str:
        return _inplace(self.inplace, "")


class _NoArgs(Module):
    _fn: Callable

    def forward(self, input: jax.Array) -> jax.Array:
        return self._fn(input)


class ReLU(_Plain):
    """``max(x, 0)``.

    Example:
        >>> nn.ReLU()(jnp.array([-1.0, 2.0]))
        Array([0., 2.], dtype=float32)
    """

    _fn = staticmethod(F.relu)


class SELU(_Plain):
    """Scaled ELU with the self-normalising constants.

    Example:
        >>> nn.SELU()(jnp.zeros(2)).shape
        (2,)
    """

    _fn = staticmethod(F.selu)


class SiLU(_Plain):
    """``x * sigmoid(x)``.

    Example:
        >>> nn.SiLU()(jnp.zeros(2)).shape
        (2,)
    """

    _fn = staticmethod(F.silu)


class Mish(_Plain):
    """``x * tanh(softplus(x))``.

    Example:
        >>> nn.Mish()(jnp.zeros(2)).shape
        (2,)
    """

    _fn = staticmethod(F.mish)


class Hardsigmoid(_Plain):
    """``relu6(x + 3) / 6``.

    Example:
        >>> nn.Hardsigmoid()(jnp.zeros(2))
        Array([0.5, 0.5], dtype=float32)
    """

    _fn = staticmethod(F.hardsigmoid)

    def extra_repr(self) -> str:
        return ""


class Hardswish(_Plain):
    """``x * relu6(x + 3) / 6``.

    Example:
        >>> nn.Hardswish()(jnp.zeros(2)).shape
        (2,)
    """

    _fn = staticmethod(F.hardswish)

    def extra_repr(self) -> str:
        return ""


class Sigmoid(_NoArgs):
    """Logistic sigmoid.

    Example:
        >>> nn.Sigmoid()(jnp.zeros(2))
        Array([0.5, 0.5], dtype=float32)
    """

    _fn = staticmethod(F.sigmoid)


class Tanh(_NoArgs):
    """Hyperbolic tangent.

    Example:
        >>> nn.Tanh()(jnp.zeros(2)).shape
        (2,)
    """

    _fn = staticmethod(F.tanh)


class Tanhshrink(_NoArgs):
    """``x - tanh(x)``.

    Example:
        >>> nn.Tanhshrink()(jnp.zeros(2)).shape
        (2,)
    """

    _fn = staticmethod(F.tanhshrink)


class Softsign(_NoArgs):
    """``x / (1 + |x|)``.

    Example:
        >>> nn.Softsign()(jnp.ones(2))
        Array([0.5, 0.5], dtype=float32)
    """

    _fn = staticmethod(F.softsign)


class LogSigmoid(_NoArgs):
    """``log(sigmoid(x))``.

    Example:
        >>> nn.LogSigmoid()(jnp.zeros(2)).shape
        (2,)
    """

    _fn = staticmethod(F.logsigmoid)


class Hardtanh(Module):
    """Clamp to ``[min_val, max_val]``.

    Example:
        >>> nn.Hardtanh()(jnp.array([-2.0, 0.5]))
        Array([-1. ,  0.5], dtype=float32)
    """

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False,
                 min_value: Optional[float] = None, max_value: Optional[float] = None) -> None:
        super().__init__()
        if min_value is not None:
            min_val = min_value
        if max_value is not None:
            max_val = max_value
        if max_val <= min_val:
            raise ValueError(f"Hardtanh: max_val ({max_val}) must be greater than min_val ({min_val})")
        self.min_val = min_val
        self.max_val = max_val
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.hardtanh(input, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}{_inplace(self.inplace)}"


class ReLU6(Hardtanh):
    """``min(max(x, 0), 6)``.

    Example:
        >>> nn.ReLU6()(jnp.array([7.0]))
        Array([6.], dtype=float32)
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self) -> str:
        return _inplace(self.inplace, "")


class LeakyReLU(Module):
    """``x if x > 0 else negative_slope * x``.

    Example:
        >>> nn.LeakyReLU(0.1)(jnp.array([-1.0]))
        Array([-0.1], dtype=float32)
    """

    def __init__(self, negative_slope: float = 1e-2, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}{_inplace(self.inplace)}"


class PReLU(Module):
    """Leaky ReLU with a learnt slope: one shared (default) or one per channel (dim 1).

    Example:
        >>> m = nn.PReLU(3)
        >>> m.weight.shape, m(jnp.ones((2, 3))).shape
        ((3,), (2, 3))
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        self.num_parameters = num_parameters
        self.init = init
        self.weight = Parameter(nn_init._empty((num_parameters,), dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Fill ``weight`` with ``init`` (torch's init), in place."""
        nn_init.constant_(self.weight, self.init)

    def forward(self, input: jax.Array) -> jax.Array:
        return F.prelu(input, _unwrap(self.weight))

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class RReLU(Module):
    """Randomised leaky ReLU: slope ``~ U(lower, upper)`` in training (module's own key),
    ``(lower + upper) / 2`` in eval.

    Example:
        >>> nn.RReLU().eval()(jnp.array([-1.0])).shape
        (1,)
    """

    def __init__(self, lower: float = 1.0 / 8, upper: float = 1.0 / 3, inplace: bool = False) -> None:
        super().__init__()
        from jparam._random import new_key_leaf

        self.lower = lower
        self.upper = upper
        self.inplace = inplace
        self._rng = new_key_leaf()

    def forward(self, input: jax.Array) -> jax.Array:
        if not self.training:
            return F.rrelu(input, self.lower, self.upper, False)
        from jparam._random import module_key

        return F.rrelu(input, self.lower, self.upper, True, key=module_key(self))

    def extra_repr(self) -> str:
        return f"lower={self.lower}, upper={self.upper}{_inplace(self.inplace)}"


class ELU(Module):
    """``x if x > 0 else alpha * (exp(x) - 1)``.

    Example:
        >>> nn.ELU()(jnp.zeros(2)).shape
        (2,)
    """

    _fn = staticmethod(F.elu)

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return self._fn(input, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}{_inplace(self.inplace)}"


class CELU(ELU):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``.

    Example:
        >>> nn.CELU(2.0)(jnp.zeros(2)).shape
        (2,)
    """

    _fn = staticmethod(F.celu)


class GELU(Module):
    """Gaussian error linear unit (``approximate='none'`` or ``'tanh'``).

    Example:
        >>> nn.GELU(approximate="tanh")(jnp.zeros(2)).shape
        (2,)
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, input: jax.Array) -> jax.Array:
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softplus(Module):
    """``log(1 + exp(beta x)) / beta``, linear above ``threshold``.

    Example:
        >>> nn.Softplus()(jnp.zeros(1))
        Array([0.6931472], dtype=float32)
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, input: jax.Array) -> jax.Array:
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardshrink(Module):
    """``x if |x| > lambd else 0``.

    Example:
        >>> nn.Hardshrink()(jnp.array([0.2, 1.0]))
        Array([0., 1.], dtype=float32)
    """

    _fn = staticmethod(F.hardshrink)

    def __init__(self, lambd: float = 0.5) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, input: jax.Array) -> jax.Array:
        return self._fn(input, self.lambd)

    def extra_repr(self) -> str:
        return f"{self.lambd}"


class Softshrink(Hardshrink):
    """Shrink towards zero by ``lambd``.

    Example:
        >>> nn.Softshrink()(jnp.array([1.0]))
        Array([0.5], dtype=float32)
    """

    _fn = staticmethod(F.softshrink)


class Threshold(Module):
    """``x if x > threshold else value``.

    Example:
        >>> nn.Threshold(0.1, 20.0)(jnp.array([0.0, 1.0]))
        Array([20.,  1.], dtype=float32)
    """

    def __init__(self, threshold: float, value: float, inplace: bool = False) -> None:
        super().__init__()
        self.threshold = threshold
        self.value = value
        self.inplace = inplace

    def forward(self, input: jax.Array) -> jax.Array:
        return F.threshold(input, self.threshold, self.value)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, value={self.value}{_inplace(self.inplace)}"


class _DimAct(Module):
    _fn: Callable

    def __init__(self, dim: Optional[int] = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: jax.Array) -> jax.Array:
        return self._fn(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_DimAct):
    """Softmax along ``dim``.

    Example:
        >>> nn.Softmax(dim=-1)(jnp.zeros((1, 2)))
        Array([[0.5, 0.5]], dtype=float32)
    """

    _fn = staticmethod(F.softmax)


class Softmin(_DimAct):
    """Softmax of ``-x`` along ``dim``.

    Example:
        >>> nn.Softmin(dim=-1)(jnp.zeros((1, 2)))
        Array([[0.5, 0.5]], dtype=float32)
    """

    _fn = staticmethod(F.softmin)


class LogSoftmax(_DimAct):
    """Log-softmax along ``dim``.

    Example:
        >>> nn.LogSoftmax(dim=1)(jnp.zeros((1, 2))).shape
        (1, 2)
    """

    _fn = staticmethod(F.log_softmax)


class Softmax2d(Module):
    """Softmax over channels (dim -3) of ``(N, C, H, W)`` / ``(C, H, W)``.

    Example:
        >>> nn.Softmax2d()(jnp.zeros((1, 2, 3, 3))).shape
        (1, 2, 3, 3)
    """

    def forward(self, input: jax.Array) -> jax.Array:
        if jnp.ndim(input) not in (3, 4):
            raise ValueError(f"Softmax2d: expected input of 3 or 4 dims, got shape "
                             f"{tuple(jnp.shape(input))}")
        return F.softmax(input, -3)


class GLU(Module):
    """Gated linear unit over ``dim``: ``a * sigmoid(b)``.

    Example:
        >>> nn.GLU()(jnp.ones((2, 4))).shape
        (2, 2)
    """

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, input: jax.Array) -> jax.Array:
        return F.glu(input, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
