"""Parameter initialisation with ``torch.nn.init``'s names, formulas and defaults.

Each function takes a :class:`jparam.nn.Parameter` (anything with a settable ``.data``),
replaces its ``.data`` with a fresh draw of the same shape and dtype and returns it, like
torch's in-place initialisers. Random draws come from ``jparam.manual_seed``'s generator
(``jparam.random.next_key()``) unless a ``generator=`` jax key is given. A plain jax
array is immutable, so passing one raises a ``TypeError``.

Every parametrised layer's ``reset_parameters()`` draws its initial values through these
functions, as torch's layers do.

Eagerly, ``uniform_`` / ``normal_`` (and so the kaiming / xavier initialisers every layer
uses) draw on the host with NumPy, from a generator seeded by a split of jparam's key.
While a constructor is traced (``jax.jit`` / ``jax.eval_shape``, as
``jparam.distributed.materialize`` does to create each device's shards directly) they
draw with ``jax.random`` from the same generator's keys instead, and ``_empty`` allocates
nothing on the host: the same distributions, another random stream.

Example:
    >>> from jparam import nn
    >>> lin = nn.Linear(4, 3)
    >>> nn.init.xavier_uniform_(lin.weight)
    Parameter containing:
    Array([[...]], dtype=float32)
    >>> nn.init.zeros_(lin.bias)
    Parameter containing:
    Array([0., 0., 0.], dtype=float32)
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jparam._random import as_key, next_key
from jparam._random import normal as _host_normal, uniform as _host_uniform

__all__ = [
    "calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
    "eye_", "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
    "orthogonal_", "sparse_",
]


def _target(tensor: Any, fname: str):
    if isinstance(tensor, (jax.Array, np.ndarray)) or not hasattr(tensor, "data"):
        raise TypeError(
            f"nn.init.{fname}: expected a jparam.nn.Parameter (or an object with a settable "
            f"`.data`), got {type(tensor).__module__}.{type(tensor).__qualname__}; jax arrays are "
            f"immutable, so wrap it: p = nn.Parameter(array); nn.init.{fname}(p)")
    data = tensor.data
    return tuple(data.shape), jnp.dtype(data.dtype)


def _key(generator):
    return next_key() if generator is None else as_key(generator)


def _dtype(dtype: Any = None) -> np.dtype:
    """A layer's ``dtype=`` argument, float32 when ``None`` (torch's default dtype)."""
    return jnp.dtype(jnp.float32 if dtype is None else dtype)


def _tracing() -> bool:
    """Whether a constructor is being traced (``jax.jit`` / ``jax.eval_shape``): then the
    initialisers emit ``jax.random`` ops rather than building host arrays (which would be
    baked into the traced program as constants of the full parameter size)."""
    return isinstance(jax.lax.full((), 0, jnp.uint8), jax.core.Tracer)


def _empty(shape: tuple, dtype: Any = None) -> jax.Array:
    """Storage for a parameter that ``reset_parameters()`` fills next (torch.empty).

    Eagerly host-allocated zeros, so building a layer compiles nothing per shape."""
    if _tracing():
        return jnp.zeros(shape, _dtype(dtype))
    return jnp.asarray(np.zeros(shape, _dtype(dtype)))


def _draw_dtype(dtype):
    # draw in float32 (at least), then cast: bfloat16/float16 params get torch-like values
    return jnp.float64 if dtype == jnp.float64 else jnp.float32


def _set(tensor, value, dtype):
    tensor.data = jnp.asarray(value).astype(dtype)
    return tensor


def calculate_gain(nonlinearity: str, param: Any = None) -> float:
    """Recommended gain for a nonlinearity (torch's table).

    Example:
        >>> nn.init.calculate_gain("relu")
        1.4142135623730951
    """
    linear_fns = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                  "conv_transpose3d"]
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, (int, float)):
            negative_slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + negative_slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor: Any):
    """``(fan_in, fan_out)``: ``size(1)·receptive`` and ``size(0)·receptive`` (torch's rule)."""
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 "
                         f"dimensions (got shape {shape})")
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _calculate_correct_fan(tensor: Any, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _no_elements(shape, fname) -> bool:
    if 0 in shape:
        warnings.warn(f"Initializing zero-element tensors is a no-op ({fname})")
        return True
    return False


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None):
    """Fill with ``U(a, b)``.

    Example:
        >>> p = nn.init.uniform_(nn.Parameter(jnp.empty((3, 5))), -0.1, 0.1)
        >>> bool(jnp.all(jnp.abs(p.data) <= 0.1))
        True
    """
    shape, dtype = _target(tensor, "uniform_")
    if generator is None and not isinstance(tensor.data, jax.core.Tracer):  # eager: a host draw
        return _set(tensor, _host_uniform(shape, _draw_dtype(dtype), a, b), dtype)
    v = jax.random.uniform(_key(generator), shape, _draw_dtype(dtype), a, b)
    return _set(tensor, v, dtype)


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None):
    """Fill with ``N(mean, std²)``.

    Example:
        >>> p = nn.init.normal_(nn.Parameter(jnp.empty((3, 5))), std=0.02)
        >>> p.shape, p.dtype
        ((3, 5), dtype('float32'))
    """
    shape, dtype = _target(tensor, "normal_")
    if generator is None and not isinstance(tensor.data, jax.core.Tracer):  # eager: a host draw
        return _set(tensor, _host_normal(shape, _draw_dtype(dtype)) * std + mean, dtype)
    v = jax.random.normal(_key(generator), shape, _draw_dtype(dtype)) * std + mean
    return _set(tensor, v, dtype)


def trunc_normal_(tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator=None):
    """Fill with ``N(mean, std²)`` truncated to the absolute interval ``[a, b]``.

    Example:
        >>> p = nn.init.trunc_normal_(nn.Parameter(jnp.empty((3, 5))), std=0.02)
        >>> bool(jnp.all(jnp.abs(p.data) <= 2.0))     # cut at a=-2, b=2 (absolute, as torch)
        True
    """
    shape, dtype = _target(tensor, "trunc_normal_")
    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn("mean is more than 2 std from [a, b] in nn.init.trunc_normal_. "
                      "The distribution of values may be incorrect.", stacklevel=2)
    v = jax.random.truncated_normal(_key(generator), (a - mean) / std, (b - mean) / std, shape,
                                    _draw_dtype(dtype)) * std + mean
    return _set(tensor, jnp.clip(v, a, b), dtype)


def constant_(tensor, val: float):
    """Fill with ``val``.

    Example:
        >>> p = nn.init.constant_(nn.Parameter(jnp.empty(3)), 0.5)
        >>> p
        Parameter containing:
        Array([0.5, 0.5, 0.5], dtype=float32)
    """
    shape, dtype = _target(tensor, "constant_")
    return _set(tensor, jnp.full(shape, val, dtype), dtype)


def ones_(tensor):
    """Fill with ones.

    Example:
        >>> p = nn.init.ones_(nn.Parameter(jnp.empty(3)))
        >>> p.data
        Array([1., 1., 1.], dtype=float32)
    """
    shape, dtype = _target(tensor, "ones_")
    return _set(tensor, jnp.ones(shape, dtype), dtype)


def zeros_(tensor):
    """Fill with zeros.

    Example:
        >>> p = nn.init.zeros_(nn.Parameter(jnp.empty(3)))
        >>> p.data
        Array([0., 0., 0.], dtype=float32)
    """
    shape, dtype = _target(tensor, "zeros_")
    return _set(tensor, jnp.zeros(shape, dtype), dtype)


def eye_(tensor):
    """Fill a 2-d parameter with the identity matrix.

    Example:
        >>> p = nn.init.eye_(nn.Parameter(jnp.empty((3, 4))))
        >>> p.data
        Array([[1., 0., 0., 0.],
               [0., 1., 0., 0.],
               [0., 0., 1., 0.]], dtype=float32)
    """
    shape, dtype = _target(tensor, "eye_")
    if len(shape) != 2:
        raise ValueError(f"Only tensors with 2 dimensions are supported (got shape {shape})")
    return _set(tensor, jnp.eye(shape[0], shape[1], dtype=dtype), dtype)


def dirac_(tensor, groups: int = 1):
    """Fill a 3/4/5-d conv weight with the Dirac delta (identity convolution per group).

    Example:
        >>> p = nn.init.dirac_(nn.Parameter(jnp.empty((4, 4, 3, 3))))
        >>> bool(jnp.array_equal(p.data[:, :, 1, 1], jnp.eye(4)))    # a conv that copies its input
        True
    """
    shape, dtype = _target(tensor, "dirac_")
    if len(shape) not in (3, 4, 5):
        raise ValueError(f"Only tensors with 3, 4, or 5 dimensions are supported (got {shape})")
    if shape[0] % groups != 0:
        raise ValueError(f"dim 0 ({shape[0]}) must be divisible by groups ({groups})")
    out_per = shape[0] // groups
    min_dim = min(out_per, shape[1])
    w = np.zeros(shape, np.float32)
    centre = tuple(k // 2 for k in shape[2:])
    for g in range(groups):
        for d in range(min_dim):
            w[(g * out_per + d, d) + centre] = 1
    return _set(tensor, w, dtype)


def xavier_uniform_(tensor, gain: float = 1.0, generator=None):
    """``U(-a, a)`` with ``a = gain·sqrt(6 / (fan_in + fan_out))``.

    Example:
        >>> p = nn.init.xavier_uniform_(nn.Parameter(jnp.empty((3, 5))))
        >>> bool(jnp.all(jnp.abs(p.data) <= (6 / (3 + 5)) ** 0.5))
        True
    """
    _target(tensor, "xavier_uniform_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor.data)
    a = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor, gain: float = 1.0, generator=None):
    """``N(0, std²)`` with ``std = gain·sqrt(2 / (fan_in + fan_out))``.

    Example:
        >>> p = nn.init.xavier_normal_(nn.Parameter(jnp.empty((3, 5))))
        >>> p.shape
        (3, 5)
    """
    _target(tensor, "xavier_normal_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor.data)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator=None):
    """``U(-b, b)`` with ``b = gain·sqrt(3 / fan)`` (He init).

    ``a=sqrt(5)`` with the defaults gives torch's Linear/Conv init ``U(±1/sqrt(fan_in))``.

    Example:
        >>> p = nn.init.kaiming_uniform_(nn.Parameter(jnp.empty((3, 5))), a=5 ** 0.5)
        >>> bool(jnp.all(jnp.abs(p.data) <= 1 / 5 ** 0.5))     # nn.Linear's default: U(-1/sqrt(fan_in), ...)
        True
    """
    shape, _ = _target(tensor, "kaiming_uniform_")
    if _no_elements(shape, "kaiming_uniform_"):
        return tensor
    fan = _calculate_correct_fan(tensor.data, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator=None):
    """``N(0, std²)`` with ``std = gain / sqrt(fan)`` (He init).

    Example:
        >>> p = nn.init.kaiming_normal_(nn.Parameter(jnp.empty((3, 5))), nonlinearity="relu")
        >>> p.shape
        (3, 5)
    """
    shape, _ = _target(tensor, "kaiming_normal_")
    if _no_elements(shape, "kaiming_normal_"):
        return tensor
    fan = _calculate_correct_fan(tensor.data, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0.0, std, generator)


def orthogonal_(tensor, gain: float = 1.0, generator=None):
    """Fill with a (semi-)orthogonal matrix (QR of a Gaussian, signs fixed as torch), times gain.

    Example:
        >>> p = nn.init.orthogonal_(nn.Parameter(jnp.empty((3, 5))))
        >>> bool(jnp.allclose(p.data @ p.data.T, jnp.eye(3), atol=1e-6))
        True
    """
    shape, dtype = _target(tensor, "orthogonal_")
    if len(shape) < 2:
        raise ValueError(f"Only tensors with 2 or more dimensions are supported (got {shape})")
    if math.prod(shape) == 0:
        return tensor
    rows = shape[0]
    cols = math.prod(shape) // rows
    flat = jax.random.normal(_key(generator), (rows, cols), _draw_dtype(dtype))
    if rows < cols:
        flat = flat.T
    q, r = jnp.linalg.qr(flat)
    q = q * jnp.sign(jnp.diagonal(r))
    if rows < cols:
        q = q.T
    return _set(tensor, (q * gain).reshape(shape), dtype)


def sparse_(tensor, sparsity: float, std: float = 0.01, generator=None):
    """2-d: ``N(0, std²)`` with a fraction ``sparsity`` of each column set to zero.

    Example:
        >>> p = nn.init.sparse_(nn.Parameter(jnp.empty((10, 5))), 0.3)
        >>> (p.data == 0).sum(axis=0)     # ceil(0.3 * 10) zeros per column
        Array([3, 3, 3, 3, 3], dtype=int32)
    """
    shape, dtype = _target(tensor, "sparse_")
    if len(shape) != 2:
        raise ValueError(f"Only tensors with 2 dimensions are supported (got {shape})")
    rows, cols = shape
    num_zeros = int(math.ceil(sparsity * rows))
    k1, k2 = jax.random.split(_key(generator))
    v = jax.random.normal(k1, shape, _draw_dtype(dtype)) * std
    ranks = jnp.argsort(jnp.argsort(jax.random.uniform(k2, shape), axis=0), axis=0)
    v = jnp.where(ranks < num_zeros, 0.0, v)
    return _set(tensor, v, dtype)
