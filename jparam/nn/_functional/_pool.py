"""Pooling on channels-first inputs, with torch's output-size and divisor rules."""
from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ._conv import _ntuple
from ._layout import channels_first, channels_last

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "lp_pool1d", "lp_pool2d", "lp_pool3d",
]


def _pool_out(L, k, s, p, d, ceil_mode):
    eff = d * (k - 1) + 1
    num = L + 2 * p - eff + (s - 1 if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= L + p:
        out -= 1
    return out


def _prep(n, input, kernel_size, stride, padding, dilation, fname):
    if input.ndim not in (n + 1, n + 2):
        raise ValueError(f"{fname}: expected a {n + 1}-d or {n + 2}-d input, "
                         f"got shape {tuple(input.shape)}")
    k = _ntuple(kernel_size, n, "kernel_size")
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else _ntuple(stride, n, "stride")
    p = _ntuple(padding, n, "padding")
    d = _ntuple(dilation, n, "dilation")
    for ki, pi in zip(k, p):
        if pi > ki // 2:
            raise ValueError(f"{fname}: pad should be at most half of effective kernel size, "
                             f"but got pad={pi}, kernel_size={ki}")
    return k, s, p, d


def _window(n, input, k, s, p, d, ceil_mode, fname):
    """Shared geometry: output sizes and the (lo, hi) padding that produces exactly them."""
    spatial = input.shape[-n:]
    outs, pads = [], []
    for L, ki, si, pi, di in zip(spatial, k, s, p, d):
        o = _pool_out(L, ki, si, pi, di, ceil_mode)
        if o <= 0:
            raise ValueError(f"{fname}: output size is too small (input {tuple(input.shape)}, "
                             f"kernel_size={k}, stride={s}, padding={p}, dilation={d})")
        hi = max((o - 1) * si + di * (ki - 1) + 1 - L - pi, 0)
        outs.append(o)
        pads.append((pi, hi))
    lead = input.ndim - n
    full_pads = [(0, 0)] * lead + pads
    dims = (1,) * lead + tuple(k)
    strides = (1,) * lead + tuple(s)
    dil = (1,) * lead + tuple(d)
    return outs, full_pads, dims, strides, dil


def _crop(y, n, outs):
    return y[(Ellipsis,) + tuple(slice(0, o) for o in outs)]


def _reduce_window(input, n, init, op, k, s, pads, outs):
    """``reduce_window`` over the last ``n`` dims of a channels-first input, computed
    channels-last (see ``_layout``) and cropped to ``outs``."""
    ch = input.ndim - n - 1                      # 0 unbatched, 1 batched
    x = channels_last(input, ch)
    y = jax.lax.reduce_window(x, init, op, (1,) * ch + tuple(k) + (1,),
                              (1,) * ch + tuple(s) + (1,), [(0, 0)] * ch + list(pads) + [(0, 0)])
    y = y[(slice(None),) * ch + tuple(slice(0, o) for o in outs)]
    return channels_first(y, ch)


# Windows of up to this many elements pick torch's element by pairwise comparisons (cheap,
# elementwise); larger ones by one variadic reduce.
_PAIRWISE_MAX_WINDOW = 4


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _window_max(x, axes):
    """Max over ``axes`` (kept), each spanning one whole, non-overlapping window."""
    return jnp.max(x, axis=axes, keepdims=True)


@_window_max.defjvp
def _window_max_jvp(axes, primals, tangents):
    # The gradient of each window goes to the one element torch's max pooling picks (see
    # _torch_argmax_mask). Stated as "select it, sum over the window", the backward is an
    # elementwise select, where differentiating reduce_window goes through XLA's
    # select-and-scatter (a scatter with index arrays, several times slower on CPU).
    (x,), (dx,) = primals, tangents
    y = _window_max(x, axes)
    keep = _torch_argmax_mask(x, axes)
    return y, jnp.sum(jnp.where(keep, dx, jnp.zeros((), dx.dtype)), axis=axes, keepdims=True)


def _beats(b, a):
    """torch's max-pool scan replaces the current ``a`` by a later ``b`` when ``b > a`` or
    ``b`` is NaN: ties keep the first maximum, NaNs the last NaN."""
    return (b > a) | jnp.isnan(b) if jnp.issubdtype(b.dtype, jnp.inexact) else b > a


def _torch_argmax_mask(x, axes):
    """True at exactly one element of each window (``axes``, row-major): the index torch's
    max pooling returns. Decided by comparing the window's elements with each other, never
    with a separately computed maximum: XLA recomputes ``x`` inside each fusion that reads
    it (an ``optimization_barrier`` does not stop it), so ``x`` and ``max`` may come from
    different code, and a window whose ``x == max`` test fails everywhere loses its gradient
    (tests/test_fast_paths.py has a case where a mask built that way did)."""
    k = math.prod(x.shape[a] for a in axes)
    if k > _PAIRWISE_MAX_WINDOW:
        pos = jnp.zeros((), jnp.int32)
        for a in axes:
            pos = pos * x.shape[a] + jax.lax.broadcasted_iota(jnp.int32, x.shape, a)

        # one variadic reduce of (value, index) pairs under torch's order
        def pick(a, b):
            (va, ia), (vb, ib) = a, b
            b_first = ib < ia
            take_b = jnp.where(b_first, ~_beats(va, vb), _beats(vb, va))
            return jnp.where(take_b, vb, va), jnp.where(take_b, ib, ia)

        init = (np.array(-np.inf if jnp.issubdtype(x.dtype, jnp.inexact)
                         else jnp.iinfo(x.dtype).min, x.dtype), np.array(k, np.int32))
        _, idx = jax.lax.reduce((x, pos), init, pick, axes)
        return pos == jnp.expand_dims(idx, axes)
    # small windows: an element wins iff it beats every earlier element of its window and
    # no later one beats it (the scan's outcome, pairwise); all elementwise, so it fuses
    elems = []
    for idx in itertools.product(*(range(x.shape[a]) for a in axes)):   # row-major
        where = [slice(None)] * x.ndim
        for a, i in zip(axes, idx):
            where[a] = slice(i, i + 1)
        elems.append(x[tuple(where)])
    wins = []
    for p, e in enumerate(elems):
        w = jnp.ones(e.shape, bool)
        for q, o in enumerate(elems):
            if q != p:
                w = w & (_beats(e, o) if q < p else ~_beats(o, e))
        wins.append(w)
    return _concat_windows(wins, [x.shape[a] for a in axes], axes)


def _concat_windows(parts, sizes, axes):
    """Put the per-position pieces (row-major over ``axes``) back together."""
    if not sizes:
        return parts[0]
    n = len(parts) // sizes[0]
    return jnp.concatenate([_concat_windows(parts[i * n:(i + 1) * n], sizes[1:], axes[1:])
                            for i in range(sizes[0])], axis=axes[0])


def _tiled_max_pool(input, n, k, outs):
    """Max pooling whose windows tile the input (stride = kernel, no padding or dilation):
    a reshape and :func:`_window_max`, channels-last inside (see ``_layout``)."""
    ch = input.ndim - n - 1
    x = channels_last(input, ch)
    lead, c = x.shape[:ch], x.shape[-1]
    x = x[(slice(None),) * ch + tuple(slice(0, o * ki) for o, ki in zip(outs, k))]
    split = tuple(d for o, ki in zip(outs, k) for d in (o, ki))
    axes = tuple(ch + 2 * i + 1 for i in range(n))
    y = _window_max(x.reshape(lead + split + (c,)), axes)
    return channels_first(y.reshape(lead + tuple(outs) + (c,)), ch)


def _max_pool(n, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, fname):
    k, s, p, d = _prep(n, input, kernel_size, stride, padding, dilation, fname)
    outs, pads, dims, strides, dil = _window(n, input, k, s, p, d, ceil_mode, fname)
    neg = np.array(-np.inf if jnp.issubdtype(input.dtype, jnp.floating)
                    else jnp.iinfo(input.dtype).min, input.dtype)
    if any(di != 1 for di in d):
        # JAX has no VJP for dilated max windows: take the max over the k strided views.
        xp = jax.lax.pad(input, neg, [(lo, hi, 0) for lo, hi in pads])
        lead = input.ndim - n
        views = []
        for off in itertools.product(*[range(ki) for ki in k]):
            start = (0,) * lead + tuple(o * di for o, di in zip(off, d))
            limit = tuple(xp.shape[:lead]) + tuple(st + (o - 1) * si + 1 for st, o, si
                                                   in zip(start[lead:], outs, s))
            views.append(jax.lax.slice(xp, start, limit, (1,) * lead + tuple(s)))
        y = jnp.max(jnp.stack(views), axis=0)
    elif (s == k and not any(p) and all(o * ki <= L for o, ki, L
                                        in zip(outs, k, input.shape[-n:]))):
        y = _tiled_max_pool(input, n, k, outs)
    else:
        y = _reduce_window(input, n, neg, jax.lax.max, k, s, pads[-n:], outs)
    if not return_indices:
        return y
    spatial = input.shape[-n:]
    idx = jnp.broadcast_to(jnp.arange(math.prod(spatial), dtype=jnp.int32).reshape(spatial),
                           input.shape)
    x = jax.lax.stop_gradient(input)

    def pick(a, b):
        va, ia = a
        vb, ib = b
        take_a = (va > vb) | ((va == vb) & (ia < ib)) | jnp.isnan(va)
        return jnp.where(take_a, va, vb), jnp.where(take_a, ia, ib)

    _, ind = jax.lax.reduce_window((x, idx), (neg, np.array(-1, np.int32)), pick, dims, strides,
                                   pads, window_dilation=dil)
    return y, _crop(ind, n, outs)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """1-d max pooling over ``(N, C, L)`` (torch's padding, dilation and ceil_mode rules).

    Example:
        >>> F.max_pool1d(jnp.arange(6.0).reshape(1, 1, 6), 2).shape
        (1, 1, 3)
    """
    return _max_pool(1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                     "max_pool1d")


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-d max pooling over NCHW; ``return_indices`` gives torch's flat per-plane indices.

    Example:
        >>> F.max_pool2d(jnp.ones((1, 1, 5, 5)), 2, ceil_mode=True).shape
        (1, 1, 3, 3)
    """
    return _max_pool(2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                     "max_pool2d")


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """3-d max pooling over NCDHW.

    Example:
        >>> F.max_pool3d(jnp.ones((1, 1, 4, 4, 4)), 2).shape
        (1, 1, 2, 2, 2)
    """
    return _max_pool(3, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                     "max_pool3d")


def _avg_divisor(L, k, s, p, o, include_pad):
    div = np.empty(o, np.float64)
    for i in range(o):
        start = i * s - p
        end = min(start + k, L + p)
        size = end - start
        start, end = max(start, 0), min(end, L)
        div[i] = size if include_pad else (end - start)
    return div


def _avg_pool(n, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override, fname):
    k, s, p, d = _prep(n, input, kernel_size, stride, padding, 1, fname)
    outs, pads, _, _, _ = _window(n, input, k, s, p, d, ceil_mode, fname)
    zero = np.array(0, input.dtype)
    y = _reduce_window(input, n, zero, jax.lax.add, k, s, pads[-n:], outs)
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError(f"{fname}: divisor_override must be non-zero")
        return y / jnp.asarray(divisor_override, y.dtype)
    div = np.ones((), np.float64)
    for L, ki, si, pi, o in zip(input.shape[-n:], k, s, p, outs):
        div = np.multiply.outer(div, _avg_divisor(L, ki, si, pi, o, count_include_pad))
    return y / jnp.asarray(div, y.dtype)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """1-d average pooling over ``(N, C, L)``.

    Example:
        >>> F.avg_pool1d(jnp.ones((1, 1, 6)), 2).shape
        (1, 1, 3)
    """
    return _avg_pool(1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None,
                     "avg_pool1d")


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-d average pooling over NCHW (count_include_pad, ceil_mode, divisor_override as torch).

    Example:
        >>> F.avg_pool2d(jnp.ones((1, 1, 4, 4)), 2).shape
        (1, 1, 2, 2)
    """
    return _avg_pool(2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, "avg_pool2d")


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """3-d average pooling over NCDHW.

    Example:
        >>> F.avg_pool3d(jnp.ones((1, 1, 4, 4, 4)), 2).shape
        (1, 1, 2, 2, 2)
    """
    return _avg_pool(3, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, "avg_pool3d")


def _adaptive_axis(x, axis, out, reduce):
    L = x.shape[axis]
    if out is None:
        return x
    out = int(out)
    if out <= 0:
        raise ValueError(f"adaptive pooling: output size must be positive, got {out}")
    if L % out == 0:
        k = L // out
        shape = x.shape[:axis] + (out, k) + x.shape[axis + 1:]
        return reduce(x.reshape(shape), axis + 1)
    pieces = []
    for i in range(out):
        start = (i * L) // out
        end = -((-(i + 1) * L) // out)
        sl = jax.lax.slice_in_dim(x, start, end, axis=axis)
        pieces.append(reduce(sl, axis)[(slice(None),) * axis + (None,)])
    return jnp.concatenate(pieces, axis=axis)


def _adaptive(n, input, output_size, reduce, fname):
    if input.ndim not in (n + 1, n + 2):
        raise ValueError(f"{fname}: expected a {n + 1}-d or {n + 2}-d input, "
                         f"got shape {tuple(input.shape)}")
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != n:
            raise ValueError(f"{fname}: output_size must have {n} entries, got {output_size!r}")
        sizes = tuple(output_size)
    else:
        sizes = (output_size,) * n
    y = input
    for j, o in enumerate(sizes):
        y = _adaptive_axis(y, input.ndim - n + j, o, reduce)
    return y


def _mean(x, axis):
    return jnp.mean(x, axis=axis)


def _max(x, axis):
    return jnp.max(x, axis=axis)


def adaptive_avg_pool1d(input, output_size):
    """Average over torch's adaptive windows ``[floor(iL/o), ceil((i+1)L/o))``.

    Example:
        >>> F.adaptive_avg_pool1d(jnp.ones((1, 2, 7)), 3).shape
        (1, 2, 3)
    """
    return _adaptive(1, input, output_size, _mean, "adaptive_avg_pool1d")


def adaptive_avg_pool2d(input, output_size):
    """2-d adaptive average pooling; ``None`` in ``output_size`` keeps that size.

    Example:
        >>> F.adaptive_avg_pool2d(jnp.ones((1, 2, 7, 5)), (3, None)).shape
        (1, 2, 3, 5)
    """
    return _adaptive(2, input, output_size, _mean, "adaptive_avg_pool2d")


def adaptive_avg_pool3d(input, output_size):
    """3-d adaptive average pooling.

    Example:
        >>> F.adaptive_avg_pool3d(jnp.ones((1, 2, 4, 4, 4)), 1).shape
        (1, 2, 1, 1, 1)
    """
    return _adaptive(3, input, output_size, _mean, "adaptive_avg_pool3d")


def _no_indices(return_indices, fname):
    if return_indices:
        raise NotImplementedError(f"{fname}: return_indices=True is not supported")


def adaptive_max_pool1d(input, output_size, return_indices=False):
    """1-d adaptive max pooling.

    Example:
        >>> F.adaptive_max_pool1d(jnp.ones((1, 2, 7)), 3).shape
        (1, 2, 3)
    """
    _no_indices(return_indices, "adaptive_max_pool1d")
    return _adaptive(1, input, output_size, _max, "adaptive_max_pool1d")


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """2-d adaptive max pooling.

    Example:
        >>> F.adaptive_max_pool2d(jnp.ones((1, 2, 7, 5)), 2).shape
        (1, 2, 2, 2)
    """
    _no_indices(return_indices, "adaptive_max_pool2d")
    return _adaptive(2, input, output_size, _max, "adaptive_max_pool2d")


def adaptive_max_pool3d(input, output_size, return_indices=False):
    """3-d adaptive max pooling.

    Example:
        >>> F.adaptive_max_pool3d(jnp.ones((1, 2, 4, 4, 4)), 2).shape
        (1, 2, 2, 2, 2)
    """
    _no_indices(return_indices, "adaptive_max_pool3d")
    return _adaptive(3, input, output_size, _max, "adaptive_max_pool3d")


def _lp_pool(n, input, norm_type, kernel_size, stride, ceil_mode, fname):
    k = _ntuple(kernel_size, n, "kernel_size")
    out = _avg_pool(n, input ** norm_type, k, stride, 0, ceil_mode, True, None, fname)
    out = jnp.sign(out) * jax.nn.relu(jnp.abs(out))
    return (out * math.prod(k)) ** (1.0 / norm_type)


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling ``(sum x^p)^(1/p)`` over 1-d windows.

    Example:
        >>> F.lp_pool1d(jnp.ones((1, 1, 4)), 2, 2).shape
        (1, 1, 2)
    """
    return _lp_pool(1, input, norm_type, kernel_size, stride, ceil_mode, "lp_pool1d")


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling over 2-d windows.

    Example:
        >>> F.lp_pool2d(jnp.ones((1, 1, 4, 4)), 2, 2).shape
        (1, 1, 2, 2)
    """
    return _lp_pool(2, input, norm_type, kernel_size, stride, ceil_mode, "lp_pool2d")


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Power-average pooling over 3-d windows.

    Example:
        >>> F.lp_pool3d(jnp.ones((1, 1, 4, 4, 4)), 2, 2).shape
        (1, 1, 2, 2, 2)
    """
    return _lp_pool(3, input, norm_type, kernel_size, stride, ceil_mode, "lp_pool3d")
