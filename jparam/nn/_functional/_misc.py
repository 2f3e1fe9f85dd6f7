"""Embedding, dropout, padding, resampling and distance functions (torch semantics)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jparam.amp import _autocast as _amp

__all__ = [
    "embedding", "one_hot", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
    "feature_alpha_dropout", "pad", "pixel_shuffle", "pixel_unshuffle",
    "cosine_similarity", "pairwise_distance", "cdist", "pdist",
]


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    """Look up rows of ``weight`` (``(num_embeddings, dim)``); ``padding_idx`` rows get no gradient.

    ``max_norm`` rescales the looked-up rows to norm at most ``max_norm`` in the forward
    (torch also rewrites ``weight`` in place; here the stored weight is unchanged).

    Example:
        >>> F.embedding(jnp.array([0, 2]), jnp.eye(3)).shape
        (2, 3)
    """
    if not jnp.issubdtype(jnp.asarray(input).dtype, jnp.integer):
        raise TypeError(f"embedding: indices must be an integer array, got dtype {input.dtype}")
    if scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: scale_grad_by_freq and sparse are not supported")
    num = weight.shape[0]
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"embedding: padding_idx {padding_idx} must be within num_embeddings {num}")
        padding_idx = padding_idx % num
    out = jnp.take(weight, input, axis=0)
    if max_norm is not None:
        norms = jnp.linalg.norm(jax.lax.stop_gradient(out), ord=norm_type, axis=-1, keepdims=True)
        scale = jnp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(out.dtype)
        out = out + jax.lax.stop_gradient(out * scale - out)
    if padding_idx is not None:
        out = jnp.where((input == padding_idx)[..., None], jax.lax.stop_gradient(out), out)
    return out


def one_hot(tensor, num_classes=-1):
    """One-hot encode integer classes into a trailing dim (``num_classes=-1``: max + 1, needs
    a concrete array).

    Example:
        >>> F.one_hot(jnp.array([0, 2]), 3)
        Array([[1, 0, 0],
               [0, 0, 1]], dtype=int32)
    """
    if not jnp.issubdtype(jnp.asarray(tensor).dtype, jnp.integer):
        raise TypeError(f"one_hot is only applicable to index tensor, got dtype {tensor.dtype}")
    if num_classes == -1:
        try:
            num_classes = int(np.max(np.asarray(tensor))) + 1
        except jax.errors.ConcretizationTypeError as e:
            raise ValueError("one_hot: pass num_classes explicitly under jit") from e
    return (tensor[..., None] == jnp.arange(num_classes)).astype(jnp.asarray(tensor).dtype)


def _check_p(p, fname):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{fname}: dropout probability has to be between 0 and 1, but got {p}")


def _need_key(key, fname):
    if key is None:
        raise ValueError(f"{fname}(training=True, p>0) needs an explicit `key` "
                         "(e.g. jax.random.key(0)); the nn.Dropout module supplies one itself")
    if isinstance(key, (np.ndarray, jax.Array)) and not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
    return key


def dropout(input, p=0.5, training=True, inplace=False, *, key=None):
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)``.

    Example:
        >>> F.dropout(jnp.ones(4), 0.5, key=jax.random.key(0)).shape
        (4,)
    """
    _check_p(p, "dropout")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return jnp.zeros_like(input)
    keep = jax.random.bernoulli(_need_key(key, "dropout"), 1.0 - p, input.shape)
    return jnp.where(keep, input / (1.0 - p), jnp.zeros((), input.dtype)).astype(input.dtype)


def _feature_dropout(input, p, training, n, fname, key):
    _check_p(p, fname)
    if input.ndim not in (n + 1, n + 2):
        raise ValueError(f"{fname}: expected {n + 1}-d (unbatched) or {n + 2}-d (batched) input, "
                         f"got shape {tuple(input.shape)}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return jnp.zeros_like(input)
    mshape = input.shape[:input.ndim - n] + (1,) * n
    keep = jax.random.bernoulli(_need_key(key, fname), 1.0 - p, mshape)
    return jnp.where(keep, input / (1.0 - p), jnp.zeros((), input.dtype)).astype(input.dtype)


def dropout1d(input, p=0.5, training=True, inplace=False, *, key=None):
    """Zero whole channels of ``(N, C, L)`` / ``(C, L)`` inputs.

    Example:
        >>> F.dropout1d(jnp.ones((2, 3, 4)), key=jax.random.key(0)).shape
        (2, 3, 4)
    """
    return _feature_dropout(input, p, training, 1, "dropout1d", key)


def dropout2d(input, p=0.5, training=True, inplace=False, *, key=None):
    """Zero whole channels of ``(N, C, H, W)`` / ``(C, H, W)`` inputs.

    Example:
        >>> F.dropout2d(jnp.ones((2, 3, 4, 4)), key=jax.random.key(0)).shape
        (2, 3, 4, 4)
    """
    return _feature_dropout(input, p, training, 2, "dropout2d", key)


def dropout3d(input, p=0.5, training=True, inplace=False, *, key=None):
    """Zero whole channels of ``(N, C, D, H, W)`` / ``(C, D, H, W)`` inputs.

    Example:
        >>> F.dropout3d(jnp.ones((2, 3, 2, 2, 2)), key=jax.random.key(0)).shape
        (2, 3, 2, 2, 2)
    """
    return _feature_dropout(input, p, training, 3, "dropout3d", key)


_ALPHA = 1.7580993408473766


def _alpha(input, p, training, mshape, fname, key):
    _check_p(p, fname)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return jnp.zeros_like(input)
    keep = jax.random.bernoulli(_need_key(key, fname), 1.0 - p, mshape).astype(input.dtype)
    a = 1.0 / math.sqrt((_ALPHA * _ALPHA * p + 1) * (1 - p))
    b = (keep - 1) * (_ALPHA * a) + _ALPHA * a * p
    return input * (keep * a) + b


def alpha_dropout(input, p=0.5, training=False, inplace=False, *, key=None):
    """Dropout that keeps SELU's self-normalisation (torch's affine correction).

    Example:
        >>> F.alpha_dropout(jnp.ones(4), 0.2, training=True, key=jax.random.key(0)).shape
        (4,)
    """
    return _alpha(input, p, training, input.shape, "alpha_dropout", key)


def feature_alpha_dropout(input, p=0.5, training=False, inplace=False, *, key=None):
    """Alpha dropout of whole channels (dims 0, 1 of the mask; rest broadcast).

    Example:
        >>> F.feature_alpha_dropout(jnp.ones((2, 3, 4)), 0.2, True, key=jax.random.key(0)).shape
        (2, 3, 4)
    """
    mshape = input.shape[:2] + (1,) * (input.ndim - 2)
    return _alpha(input, p, training, mshape, "feature_alpha_dropout", key)


_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad(input, pad, mode="constant", value=None):
    """Pad with torch's reversed pad tuple ``(last_lo, last_hi, prev_lo, prev_hi, ...)``.

    Modes: ``'constant'`` (negative pads crop), ``'reflect'``, ``'replicate'``, ``'circular'``.

    Example:
        >>> F.pad(jnp.ones((1, 2, 3)), (1, 1)).shape
        (1, 2, 5)
    """
    pad = tuple(int(v) for v in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"pad: pad length must be even and at most 2*input.ndim "
                         f"(input shape {tuple(input.shape)}), got {pad}")
    npd = len(pad) // 2
    widths = [(0, 0)] * (input.ndim - npd) + [(pad[2 * i], pad[2 * i + 1])
                                              for i in reversed(range(npd))]
    if mode == "constant":
        v = jnp.asarray(0 if value is None else value, input.dtype)
        return jax.lax.pad(input, v, [(lo, hi, 0) for lo, hi in widths])
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: unsupported mode {mode!r}; expected 'constant', 'reflect', "
                         "'replicate' or 'circular'")
    if value is not None and value != 0:
        raise ValueError(f"pad: padding mode {mode!r} doesn't take in value argument")
    if mode == "reflect":
        for (lo, hi), n in zip(widths[input.ndim - npd:], input.shape[input.ndim - npd:]):
            if lo >= n or hi >= n:
                raise ValueError(f"pad: padding size should be less than the corresponding input "
                                 f"dimension for reflect mode, got pad {pad} for shape "
                                 f"{tuple(input.shape)}")
    if mode == "circular":
        for (lo, hi), n in zip(widths[input.ndim - npd:], input.shape[input.ndim - npd:]):
            if lo > n or hi > n:
                raise ValueError(f"pad: padding value causes wrapping around more than once "
                                 f"(pad {pad}, input shape {tuple(input.shape)})")
    crop = [(max(-lo, 0), max(-hi, 0)) for lo, hi in widths]
    if any(c != (0, 0) for c in crop):
        input = input[tuple(slice(lo, n - hi) for (lo, hi), n in zip(crop, input.shape))]
        widths = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
    return jnp.pad(input, widths, mode=_PAD_MODES[mode])


def pixel_shuffle(input, upscale_factor):
    """``(*, C·r², H, W) → (*, C, H·r, W·r)``.

    Example:
        >>> F.pixel_shuffle(jnp.ones((1, 8, 2, 2)), 2).shape
        (1, 2, 4, 4)
    """
    r = int(upscale_factor)
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise ValueError(f"pixel_shuffle expects its input's 'channel' dimension to be divisible "
                         f"by the square of upscale_factor, but input.size(-3)={c} is not "
                         f"divisible by {r * r}")
    oc = c // (r * r)
    x = input.reshape(tuple(lead) + (oc, r, r, h, w))
    n = len(lead)
    x = jnp.transpose(x, tuple(range(n)) + (n, n + 3, n + 1, n + 4, n + 2))
    return x.reshape(tuple(lead) + (oc, h * r, w * r))


def pixel_unshuffle(input, downscale_factor):
    """``(*, C, H·r, W·r) → (*, C·r², H, W)``.

    Example:
        >>> F.pixel_unshuffle(jnp.ones((1, 2, 4, 4)), 2).shape
        (1, 8, 2, 2)
    """
    r = int(downscale_factor)
    *lead, c, h, w = input.shape
    if h % r or w % r:
        raise ValueError(f"pixel_unshuffle expects height {h} and width {w} to be divisible by "
                         f"downscale_factor {r}")
    n = len(lead)
    x = input.reshape(tuple(lead) + (c, h // r, r, w // r, r))
    x = jnp.transpose(x, tuple(range(n)) + (n, n + 2, n + 4, n + 1, n + 3))
    return x.reshape(tuple(lead) + (c * r * r, h // r, w // r))


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """Cosine similarity along ``dim`` (inputs broadcast); norms clamped below by ``eps``.

    Example:
        >>> F.cosine_similarity(jnp.ones((2, 3)), jnp.ones((2, 3)))
        Array([0.99999994, 0.99999994], dtype=float32)
    """
    x1, x2 = _amp.cast_to_float32(x1, x2)
    x1, x2 = jnp.broadcast_arrays(x1, x2)
    n1 = jnp.sqrt(jnp.sum(jnp.square(x1), axis=dim, keepdims=True))
    n2 = jnp.sqrt(jnp.sum(jnp.square(x2), axis=dim, keepdims=True))
    return jnp.sum((x1 / jnp.maximum(n1, eps)) * (x2 / jnp.maximum(n2, eps)), axis=dim)


def _pnorm(d, p, axis, keepdims=False):
    if p == 2:
        return jnp.sqrt(jnp.sum(jnp.square(d), axis=axis, keepdims=keepdims))
    if p == 1:
        return jnp.sum(jnp.abs(d), axis=axis, keepdims=keepdims)
    if p == float("inf"):
        return jnp.max(jnp.abs(d), axis=axis, keepdims=keepdims)
    if p == 0:
        return jnp.sum((d != 0).astype(d.dtype), axis=axis, keepdims=keepdims)
    return jnp.sum(jnp.abs(d) ** p, axis=axis, keepdims=keepdims) ** (1.0 / p)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """``‖x1 - x2 + eps‖_p`` over the last dim.

    Example:
        >>> F.pairwise_distance(jnp.zeros((2, 3)), jnp.ones((2, 3))).shape
        (2,)
    """
    x1, x2 = _amp.cast_to_float32(x1, x2)
    return _pnorm(x1 - x2 + eps, p, -1, keepdim)


def cdist(x1, x2, p=2.0, compute_mode="use_mm_for_euclid_dist_if_necessary"):
    """p-norm distances between every row of ``x1 (…, P, M)`` and of ``x2 (…, R, M)``.

    Example:
        >>> F.cdist(jnp.zeros((3, 2)), jnp.ones((4, 2))).shape
        (3, 4)
    """
    x1, x2 = _amp.cast_to_float32(x1, x2)
    return _pnorm(x1[..., :, None, :] - x2[..., None, :, :], p, -1)


def pdist(input, p=2):
    """Condensed pairwise distances between the rows of an ``(N, M)`` input (upper triangle).

    Example:
        >>> F.pdist(jnp.zeros((4, 2))).shape
        (6,)
    """
    input = _amp.cast_to_float32(input)
    n = input.shape[0]
    i, j = np.triu_indices(n, 1)
    return _pnorm(input[i] - input[j], p, -1)
