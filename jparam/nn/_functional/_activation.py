"""Activation functions with torch.nn.functional's names, signatures and defaults."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jparam.amp import _autocast as _amp

__all__ = [
    "relu", "relu_", "relu6", "leaky_relu", "prelu", "rrelu", "elu", "selu", "celu", "gelu",
    "silu", "mish", "sigmoid", "tanh", "hardtanh", "hardsigmoid", "hardswish", "hardshrink",
    "softshrink", "tanhshrink", "softplus", "softsign", "softmax", "softmin", "log_softmax",
    "glu", "threshold", "logsigmoid",
]


def _dim_check(x, dim, fname):
    if dim is None:
        # torch's legacy implicit-dim rule: 0 for 0/1/3-d inputs, else 1.
        return 0 if x.ndim in (0, 1, 3) else 1
    if not -max(x.ndim, 1) <= dim < max(x.ndim, 1):
        raise IndexError(f"{fname}: dim {dim} out of range for input with {x.ndim} dimensions")
    return dim


def relu(input, inplace: bool = False):
    """``max(x, 0)``.

    Example:
        >>> F.relu(jnp.array([-1.0, 2.0]))
        Array([0., 2.], dtype=float32)
    """
    return jax.nn.relu(input)       # gradient 0 at x == 0, as torch


def relu_(input):
    """Alias of :func:`relu` (jax arrays are immutable)."""
    return relu(input)


def relu6(input, inplace: bool = False):
    """``min(max(x, 0), 6)``.

    Example:
        >>> F.relu6(jnp.array([-1.0, 7.0]))
        Array([0., 6.], dtype=float32)
    """
    return hardtanh(input, 0.0, 6.0)


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False):
    """``x if x > 0 else negative_slope * x``.

    Example:
        >>> F.leaky_relu(jnp.array([-1.0, 2.0]), 0.1)
        Array([-0.1,  2. ], dtype=float32)
    """
    return jnp.where(input > 0, input, input * negative_slope)


def prelu(input, weight):
    """Leaky ReLU with a learnt slope per channel (dim 1) or one shared slope.

    Example:
        >>> F.prelu(jnp.ones((2, 3)) * -1, jnp.full((3,), 0.25)).shape
        (2, 3)
    """
    input, weight = _amp.cast_for_matmul(input, weight)
    weight = jnp.asarray(weight)
    if weight.size != 1:
        if input.ndim < 2 or weight.ndim != 1 or input.shape[1] != weight.shape[0]:
            raise ValueError(
                f"prelu: weight of shape {tuple(weight.shape)} must have one element or "
                f"input.shape[1] elements; input shape is {tuple(input.shape)}")
        weight = weight.reshape((1, -1) + (1,) * (input.ndim - 2))
    else:
        weight = weight.reshape(())
    return jnp.where(input > 0, input, weight.astype(input.dtype) * input)


def rrelu(input, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False,
          inplace: bool = False, *, key=None):
    """Randomised leaky ReLU; in eval the slope is ``(lower + upper) / 2``.

    Example:
        >>> F.rrelu(jnp.array([-1.0]))
        Array([-0.22916667], dtype=float32)
    """
    if training:
        if key is None:
            raise ValueError("rrelu(training=True) needs an explicit `key`")
        a = jax.random.uniform(key, input.shape, input.dtype, lower, upper)
        return jnp.where(input >= 0, input, input * a)
    return leaky_relu(input, (lower + upper) / 2)


def elu(input, alpha: float = 1.0, inplace: bool = False):
    """``x if x > 0 else alpha * (exp(x) - 1)``.

    Example:
        >>> F.elu(jnp.array([0.0]))
        Array([0.], dtype=float32)
    """
    neg = jnp.where(input > 0, jnp.zeros((), input.dtype), input)   # torch's slope at 0: alpha
    return jnp.where(input > 0, input, alpha * jnp.expm1(neg))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input, inplace: bool = False):
    """``scale * elu(x, alpha)`` with the self-normalising constants.

    Example:
        >>> F.selu(jnp.array([1.0]))
        Array([1.050701], dtype=float32)
    """
    return _SELU_SCALE * elu(input, _SELU_ALPHA)


def celu(input, alpha: float = 1.0, inplace: bool = False):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``.

    Example:
        >>> F.celu(jnp.array([1.0]))
        Array([1.], dtype=float32)
    """
    neg = jnp.where(input > 0, jnp.zeros((), input.dtype), input)   # torch's slope at 0: 1
    return jnp.where(input > 0, input, alpha * jnp.expm1(neg / alpha))


def gelu(input, approximate: str = "none"):
    """Gaussian error linear unit, exact (``'none'``) or the ``'tanh'`` approximation.

    Example:
        >>> F.gelu(jnp.array([1.0]), approximate="tanh").shape
        (1,)
    """
    if approximate == "none":
        return input * 0.5 * (1.0 + jax.lax.erf(input * (1.0 / math.sqrt(2.0))))
    if approximate == "tanh":
        k = math.sqrt(2.0 / math.pi)
        return 0.5 * input * (1.0 + jnp.tanh(k * (input + 0.044715 * input ** 3)))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def silu(input, inplace: bool = False):
    """``x * sigmoid(x)``.

    Example:
        >>> F.silu(jnp.array([0.0]))
        Array([0.], dtype=float32)
    """
    return input * jax.nn.sigmoid(input)


def mish(input, inplace: bool = False):
    """``x * tanh(softplus(x))``.

    Example:
        >>> F.mish(jnp.array([0.0]))
        Array([0.], dtype=float32)
    """
    return input * jnp.tanh(softplus(input))


def sigmoid(input):
    """Logistic sigmoid.

    Example:
        >>> F.sigmoid(jnp.array([0.0]))
        Array([0.5], dtype=float32)
    """
    return jax.nn.sigmoid(input)


def tanh(input):
    """Hyperbolic tangent.

    Example:
        >>> F.tanh(jnp.array([0.0]))
        Array([0.], dtype=float32)
    """
    return jnp.tanh(input)


def hardtanh(input, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
    """Clamp to ``[min_val, max_val]`` (gradient 0 outside, like torch).

    Example:
        >>> F.hardtanh(jnp.array([-2.0, 0.5]))
        Array([-1. ,  0.5], dtype=float32)
    """
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) cannot be greater than max_val ({max_val})")
    # torch's gradient is zero at and beyond the bounds: where(...) gives exactly that.
    return jnp.where(input <= min_val, jnp.asarray(min_val, input.dtype),
                     jnp.where(input >= max_val, jnp.asarray(max_val, input.dtype), input))


def hardsigmoid(input, inplace: bool = False):
    """``relu6(x + 3) / 6``.

    Example:
        >>> F.hardsigmoid(jnp.array([0.0]))
        Array([0.5], dtype=float32)
    """
    return jnp.where(input <= -3, jnp.zeros((), input.dtype),
                     jnp.where(input >= 3, jnp.ones((), input.dtype), input / 6 + 0.5))


def hardswish(input, inplace: bool = False):
    """``x * relu6(x + 3) / 6``.

    Example:
        >>> F.hardswish(jnp.array([1.0]))
        Array([0.6666667], dtype=float32)
    """
    return jnp.where(input <= -3, jnp.zeros((), input.dtype),
                     jnp.where(input >= 3, input, input * (input + 3) / 6))


def hardshrink(input, lambd: float = 0.5):
    """``x if |x| > lambd else 0``.

    Example:
        >>> F.hardshrink(jnp.array([0.2, 1.0]))
        Array([0., 1.], dtype=float32)
    """
    return jnp.where((input > lambd) | (input < -lambd), input, jnp.zeros((), input.dtype))


def softshrink(input, lambd: float = 0.5):
    """``x - lambd`` above ``lambd``, ``x + lambd`` below ``-lambd``, else 0.

    Example:
        >>> F.softshrink(jnp.array([1.0]))
        Array([0.5], dtype=float32)
    """
    return jnp.where(input > lambd, input - lambd,
                     jnp.where(input < -lambd, input + lambd, jnp.zeros((), input.dtype)))


def tanhshrink(input):
    """``x - tanh(x)``.

    Example:
        >>> F.tanhshrink(jnp.array([0.0]))
        Array([0.], dtype=float32)
    """
    return input - jnp.tanh(input)


def softplus(input, beta: float = 1.0, threshold: float = 20.0):
    """``log(1 + exp(beta * x)) / beta``; linear where ``beta * x > threshold``.

    Example:
        >>> F.softplus(jnp.array([0.0]))
        Array([0.6931472], dtype=float32)
    """
    input = _amp.cast_to_float32(input)
    bx = input * beta
    safe = jnp.where(bx > threshold, jnp.zeros((), input.dtype), bx)
    return jnp.where(bx > threshold, input, jnp.log1p(jnp.exp(safe)) / beta)


def softsign(input):
    """``x / (1 + |x|)``.

    Example:
        >>> F.softsign(jnp.array([1.0]))
        Array([0.5], dtype=float32)
    """
    return input / (1 + jnp.abs(input))


def softmax(input, dim=None, _stacklevel: int = 3, dtype=None):
    """Softmax along ``dim`` (optionally computed in ``dtype``).

    Example:
        >>> F.softmax(jnp.zeros((2, 2)), dim=-1)
        Array([[0.5, 0.5],
               [0.5, 0.5]], dtype=float32)
    """
    input = _amp.cast_to_float32(input)
    dim = _dim_check(input, dim, "softmax")
    if dtype is not None:
        input = input.astype(dtype)
    return jax.nn.softmax(input, axis=dim)


def softmin(input, dim=None, _stacklevel: int = 3, dtype=None):
    """``softmax(-x)`` along ``dim``.

    Example:
        >>> F.softmin(jnp.zeros((2,)), dim=0)
        Array([0.5, 0.5], dtype=float32)
    """
    input = _amp.cast_to_float32(input)
    dim = _dim_check(input, dim, "softmin")
    if dtype is not None:
        input = input.astype(dtype)
    return jax.nn.softmax(-input, axis=dim)


def log_softmax(input, dim=None, _stacklevel: int = 3, dtype=None):
    """Log of softmax along ``dim``, computed stably.

    Example:
        >>> F.log_softmax(jnp.zeros((2,)), dim=0)
        Array([-0.6931472, -0.6931472], dtype=float32)
    """
    input = _amp.cast_to_float32(input)
    dim = _dim_check(input, dim, "log_softmax")
    if dtype is not None:
        input = input.astype(dtype)
    return jax.nn.log_softmax(input, axis=dim)


def glu(input, dim: int = -1):
    """Gated linear unit: split ``dim`` in halves ``a, b`` and return ``a * sigmoid(b)``.

    Example:
        >>> F.glu(jnp.ones((2, 4))).shape
        (2, 2)
    """
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    n = input.shape[dim]
    if n % 2:
        raise RuntimeError(
            f"Halving dimension must be even, but dimension {dim} is size {n}")
    a, b = jnp.split(input, 2, axis=dim)
    return a * jax.nn.sigmoid(b)


def threshold(input, threshold: float, value: float, inplace: bool = False):
    """``x if x > threshold else value``.

    Example:
        >>> F.threshold(jnp.array([0.5, 2.0]), 1.0, -1.0)
        Array([-1.,  2.], dtype=float32)
    """
    return jnp.where(input > threshold, input, jnp.asarray(value, input.dtype))


def logsigmoid(input):
    """``log(sigmoid(x))``, computed stably.

    Example:
        >>> F.logsigmoid(jnp.array([0.0]))
        Array([-0.6931472], dtype=float32)
    """
    return jax.nn.log_sigmoid(input)
