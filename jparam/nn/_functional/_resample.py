"""interpolate / upsample with torch's source-index rules (computed in float32 like torch)."""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ._pool import _adaptive, _mean

__all__ = ["interpolate", "upsample", "upsample_nearest", "upsample_bilinear"]

_MODES = {"nearest": None, "nearest-exact": None, "linear": 1, "bilinear": 2, "bicubic": 2,
          "trilinear": 3, "area": None}


def _scale(in_size, out_size, align_corners, scale, cubic=False):
    f = np.float32
    if align_corners:
        return f((in_size - 1) / (out_size - 1)) if out_size > 1 else f(0)
    if scale is not None and scale > 0:
        return f(1.0 / scale)
    return f(in_size / out_size)


def _nearest_idx(in_size, out_size, scale, exact):
    dst = np.arange(out_size, dtype=np.float32)
    if not exact and out_size == in_size:
        return np.arange(out_size)
    if not exact and out_size == 2 * in_size:
        return np.arange(out_size) >> 1
    s = np.float32(1.0 / scale) if scale is not None and scale > 0 else np.float32(in_size / out_size)
    if exact:
        src = np.floor((dst + np.float32(0.5)) * s)
    else:
        src = np.floor(dst * s)
    return np.minimum(src.astype(np.int64), in_size - 1)


def _source(in_size, out_size, align_corners, scale, cubic):
    s = _scale(in_size, out_size, align_corners, scale)
    dst = np.arange(out_size, dtype=np.float32)
    if align_corners:
        src = s * dst
    else:
        src = s * (dst + np.float32(0.5)) - np.float32(0.5)
        if not cubic:
            src = np.maximum(src, np.float32(0))
    return src.astype(np.float32)


def _take(x, idx, axis):
    return jnp.take(x, jnp.asarray(idx, jnp.int32), axis=axis)


def _bshape(w, x, axis):
    shape = [1] * x.ndim
    shape[axis] = w.shape[0]
    return jnp.asarray(w.reshape(shape), x.dtype)


def _linear_axis(x, axis, out_size, align_corners, scale):
    L = x.shape[axis]
    src = _source(L, out_size, align_corners, scale, False)
    i0 = src.astype(np.int64)
    l1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    l0 = np.float32(1) - l1
    i1 = i0 + (i0 < L - 1)
    return _take(x, i0, axis) * _bshape(l0, x, axis) + _take(x, i1, axis) * _bshape(l1, x, axis)


def _cubic_weights(t, A=np.float32(-0.75)):
    def c1(v):  # |v| <= 1
        return ((A + 2) * v - (A + 3)) * v * v + 1

    def c2(v):  # 1 < |v| < 2
        return ((A * v - 5 * A) * v + 8 * A) * v - 4 * A

    one = np.float32(1)
    return [c2(t + one), c1(t), c1(one - t), c2(np.float32(2) - t)]


def _cubic_axis(x, axis, out_size, align_corners, scale):
    L = x.shape[axis]
    src = _source(L, out_size, align_corners, scale, True)
    i = np.floor(src).astype(np.int64)
    t = (src - i.astype(np.float32)).astype(np.float32)
    ws = _cubic_weights(t)
    out = None
    for k, w in enumerate(ws):
        idx = np.clip(i - 1 + k, 0, L - 1)
        term = _take(x, idx, axis) * _bshape(w.astype(np.float32), x, axis)
        out = term if out is None else out + term
    return out


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the spatial dims of a channels-first input.

    Modes ``'nearest'`` (torch's ``floor(dst·scale)`` rule), ``'nearest-exact'``, ``'linear'``,
    ``'bilinear'``, ``'trilinear'``, ``'bicubic'`` (A=-0.75) and ``'area'``; ``align_corners``
    and a given ``scale_factor`` change the source-index scale exactly as in torch.

    Example:
        >>> F.interpolate(jnp.ones((1, 1, 2, 2)), scale_factor=2, mode="bilinear").shape
        (1, 1, 4, 4)
    """
    if mode not in _MODES:
        raise ValueError(f"interpolate: unsupported mode {mode!r}; expected one of {list(_MODES)}")
    n = input.ndim - 2
    if n < 1 or n > 3:
        raise ValueError(f"interpolate: expected a 3-d, 4-d or 5-d input, got shape "
                         f"{tuple(input.shape)}")
    if _MODES[mode] is not None and _MODES[mode] != n:
        raise ValueError(f"interpolate: mode {mode!r} expects a {_MODES[mode] + 2}-d input, got "
                         f"shape {tuple(input.shape)}")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    if mode in ("nearest", "nearest-exact", "area") and align_corners is not None:
        raise ValueError("align_corners option can only be set with the interpolating modes: "
                         "linear | bilinear | bicubic | trilinear")
    align_corners = bool(align_corners)
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: exactly one of size or scale_factor must be defined")
    spatial = input.shape[2:]
    if size is not None:
        sizes = tuple(size) if isinstance(size, (tuple, list)) else (size,) * n
        if len(sizes) != n:
            raise ValueError(f"interpolate: size {size!r} must have {n} entries for input shape "
                             f"{tuple(input.shape)}")
        sizes = tuple(int(s) for s in sizes)
        scales = (None,) * n
    else:
        scales = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) \
            else (scale_factor,) * n
        if len(scales) != n:
            raise ValueError(f"interpolate: scale_factor {scale_factor!r} must have {n} entries")
        sizes = tuple(int(math.floor(float(L) * float(s))) for L, s in zip(spatial, scales))
        if recompute_scale_factor:
            scales = (None,) * n
    if mode == "area":
        return _adaptive(n, input, sizes, _mean, "interpolate(mode='area')")
    x = input
    for j in range(n):
        axis, L, o, sc = 2 + j, spatial[j], sizes[j], scales[j]
        if mode in ("nearest", "nearest-exact"):
            x = _take(x, _nearest_idx(L, o, sc, mode == "nearest-exact"), axis)
        elif mode == "bicubic":
            x = _cubic_axis(x, axis, o, align_corners, sc)
        else:
            x = _linear_axis(x, axis, o, align_corners, sc)
    return x


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Deprecated torch alias of :func:`interpolate`.

    Example:
        >>> F.upsample(jnp.ones((1, 1, 2)), scale_factor=2).shape
        (1, 1, 4)
    """
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    """``interpolate(mode='nearest')``.

    Example:
        >>> F.upsample_nearest(jnp.ones((1, 1, 2)), 3).shape
        (1, 1, 3)
    """
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    """``interpolate(mode='bilinear', align_corners=True)``.

    Example:
        >>> F.upsample_bilinear(jnp.ones((1, 1, 2, 2)), scale_factor=2).shape
        (1, 1, 4, 4)
    """
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)
