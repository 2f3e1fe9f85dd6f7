"""Embedding, padding, pixel shuffle and distance functions (torch semantics)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jparam.amp import _autocast as _amp

__all__ = [
    "embedding", "one_hot", "pad", "pixel_shuffle", "pixel_unshuffle",
    "cosine_similarity", "pairwise_distance", "cdist", "pdist",
]


def _take_rows(weight, index):
    """``weight[index]``.  Under JAX's explicit sharding the rows come out sharded like
    ``index`` and whole (gathered, as FSDP does) in the embedding dim: the gather cannot
    infer an output sharding by itself when the table is sharded."""
    ws = getattr(jax.typeof(weight), "sharding", None)
    mesh = getattr(ws, "mesh", None)
    if mesh is None or not getattr(mesh, "_any_axis_explicit", False):
        return jnp.take(weight, index, axis=0)
    index = jnp.asarray(index)
    ispec = tuple(getattr(jax.typeof(index).sharding, "spec", ()))
    spec = ispec + (None,) * (index.ndim - len(ispec) + weight.ndim - 1)
    return weight.at[index].get(out_sharding=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec)))


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
    out = _take_rows(weight, input)
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
