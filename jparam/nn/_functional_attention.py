"""Attention functions with torch's semantics: ``scaled_dot_product_attention`` and
``multi_head_attention_forward`` (pure functions on JAX arrays).

Mask conventions follow torch exactly, and they differ between the two functions:

* ``scaled_dot_product_attention``: a bool ``attn_mask`` is ``True`` where a query/key pair
  *takes part*; a float mask is *added* to the scores. A row with no allowed key gives a zero
  output row (and zero gradient), like torch's safe softmax.
* ``multi_head_attention_forward``: bool ``key_padding_mask`` / ``attn_mask`` are ``True``
  where the key is *masked out*; float masks are added.

Randomness is explicit: dropout with ``dropout_p > 0`` needs ``key_rng`` (a ``jax.random``
key, typed or raw ``uint32[2]``). The ``MultiheadAttention`` module supplies it itself.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jparam.amp import _autocast as _amp

__all__ = ["scaled_dot_product_attention", "multi_head_attention_forward"]

Array = jax.Array


def _as_key(key, fname: str):
    if key is None:
        raise ValueError(f"{fname}: dropout_p > 0 needs an explicit `key_rng` "
                         "(e.g. jax.random.key(0)); the nn modules supply one themselves")
    if isinstance(key, (np.ndarray, jax.Array)) and not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
    return key


def _dropout(x: Array, p: float, key, fname: str) -> Array:
    """torch.dropout(x, p, train=True): zero with probability p, scale the rest by 1/(1-p)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{fname}: dropout probability has to be between 0 and 1, but got {p}")
    if p == 0.0:
        return x
    if p == 1.0:
        return jnp.zeros_like(x)
    keep = jax.random.bernoulli(_as_key(key, fname), 1.0 - p, x.shape)
    return jnp.where(keep, x / (1.0 - p), jnp.zeros((), x.dtype))


def _safe_softmax(scores: Array) -> Array:
    """Softmax over the last axis; a row that is entirely -inf gives zeros (torch's
    ``_safe_softmax``), with finite (zero) gradients."""
    row_max = jnp.max(scores, axis=-1, keepdims=True)
    row_max = jax.lax.stop_gradient(jnp.where(jnp.isfinite(row_max), row_max, 0.0))
    e = jnp.exp(scores - row_max)
    s = jnp.sum(e, axis=-1, keepdims=True)
    return e / jnp.where(s == 0, jnp.ones((), s.dtype), s)


def _check_float(x, name, fname):
    if not hasattr(x, "dtype") or not jnp.issubdtype(x.dtype, jnp.floating):
        got = getattr(x, "dtype", type(x).__name__)
        raise TypeError(f"{fname}: `{name}` must be a floating-point array, got {got}")


def scaled_dot_product_attention(query: Array, key: Array, value: Array,
                                 attn_mask: Optional[Array] = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: Optional[float] = None,
                                 enable_gqa: bool = False, *, key_rng=None) -> Array:
    """``softmax(q kᵀ · scale + bias) v`` over the last two axes, like
    ``torch.nn.functional.scaled_dot_product_attention``.

    Shapes: ``query (..., L, E)``, ``key (..., S, E)``, ``value (..., S, Ev)`` → ``(..., L, Ev)``.
    ``attn_mask`` broadcasts to ``(..., L, S)``: bool ``True`` = take part, float = added.
    ``is_causal`` uses a top-left aligned lower-triangular mask (torch's ``tril``).
    ``scale`` defaults to ``1/sqrt(E)``. ``enable_gqa`` repeats key/value heads (axis -3) to the
    query's head count. ``dropout_p`` is always applied (as in torch); pass ``key_rng``.

    Example:
        >>> q = jnp.ones((2, 4, 3, 8)); k = v = jnp.ones((2, 4, 5, 8))
        >>> scaled_dot_product_attention(q, k, v, is_causal=True).shape
        (2, 4, 3, 8)
    """
    query, key, value = _amp.cast_for_matmul(query, key, value)
    fname = "scaled_dot_product_attention"
    for name, x in (("query", query), ("key", key), ("value", value)):
        _check_float(x, name, fname)
        if x.ndim < 2:
            raise ValueError(f"{fname}: `{name}` must have at least 2 dims, got shape {x.shape}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"{fname}: query's last dim {query.shape[-1]} must equal key's "
                         f"{key.shape[-1]} (shapes {query.shape} and {key.shape})")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"{fname}: key and value must have the same sequence length, got "
                         f"shapes {key.shape} and {value.shape}")
    L, S = query.shape[-2], key.shape[-2]
    scale_factor = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    if enable_gqa and query.ndim >= 3 and key.ndim >= 3:
        hq, hk, hv = query.shape[-3], key.shape[-3], value.shape[-3]
        if hk != hv or hq % hk != 0:
            raise ValueError(f"{fname}: with enable_gqa the number of key/value heads ({hk}, {hv}) "
                             f"must be equal and divide the query heads ({hq})")
        if hq != hk:
            key = jnp.repeat(key, hq // hk, axis=-3)
            value = jnp.repeat(value, hq // hv, axis=-3)
    scores = jnp.matmul(query, jnp.swapaxes(key, -2, -1)) * jnp.asarray(scale_factor, query.dtype)
    neg_inf = jnp.asarray(-jnp.inf, scores.dtype)
    if is_causal:
        if attn_mask is not None:
            raise ValueError(f"{fname}: explicit attn_mask should not be set when is_causal=True")
        causal = jnp.tril(jnp.ones((L, S), dtype=bool))
        scores = jnp.where(causal, scores, neg_inf)
    if attn_mask is not None:
        attn_mask = jnp.asarray(attn_mask)
        if attn_mask.dtype == jnp.bool_:
            scores = jnp.where(attn_mask, scores, neg_inf)
        elif jnp.issubdtype(attn_mask.dtype, jnp.floating):
            scores = scores + attn_mask.astype(scores.dtype)
        else:
            raise TypeError(f"{fname}: attn_mask dtype must be bool or floating, got {attn_mask.dtype}")
    weights = _amp.cast_for_matmul(_safe_softmax(_amp.cast_to_float32(scores)))
    if dropout_p > 0.0:
        weights = _dropout(weights, dropout_p, key_rng, fname)
    return jnp.matmul(weights, value)


def _canonical_mask(mask, name: str, dtype):
    """bool → float with -inf where True (masked out); float kept as is."""
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.dtype == jnp.bool_:
        return jnp.where(mask, jnp.asarray(-jnp.inf, dtype), jnp.asarray(0.0, dtype))
    if not jnp.issubdtype(mask.dtype, jnp.floating):
        raise TypeError(f"multi_head_attention_forward: only bool and floating types of {name} "
                        f"are supported, got {mask.dtype}")
    return mask


def _linear(x, w, b):
    y = jnp.matmul(x, w.T)
    return y if b is None else y + b


def _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads) -> bool:
    f = "multi_head_attention_forward"
    if query.ndim == 3:
        if key.ndim != 3 or value.ndim != 3:
            raise ValueError(f"{f}: for batched (3-D) `query`, expected `key` and `value` to be 3-D "
                             f"but found {key.ndim}-D and {value.ndim}-D arrays")
        if key_padding_mask is not None and key_padding_mask.ndim != 2:
            raise ValueError(f"{f}: for batched (3-D) `query`, expected `key_padding_mask` to be "
                             f"None or 2-D but found {key_padding_mask.ndim}-D")
        if attn_mask is not None and attn_mask.ndim not in (2, 3):
            raise ValueError(f"{f}: expected `attn_mask` to be None, 2-D or 3-D but found "
                             f"{attn_mask.ndim}-D")
        return True
    if query.ndim == 2:
        if key.ndim != 2 or value.ndim != 2:
            raise ValueError(f"{f}: for unbatched (2-D) `query`, expected `key` and `value` to be 2-D "
                             f"but found {key.ndim}-D and {value.ndim}-D arrays")
        if key_padding_mask is not None and key_padding_mask.ndim != 1:
            raise ValueError(f"{f}: for unbatched (2-D) `query`, expected `key_padding_mask` to be "
                             f"None or 1-D but found {key_padding_mask.ndim}-D")
        if attn_mask is not None:
            if attn_mask.ndim not in (2, 3):
                raise ValueError(f"{f}: expected `attn_mask` to be None, 2-D or 3-D but found "
                                 f"{attn_mask.ndim}-D")
            if attn_mask.ndim == 3:
                exp = (num_heads, query.shape[0], key.shape[0])
                if tuple(attn_mask.shape) != exp:
                    raise ValueError(f"{f}: expected `attn_mask` shape {exp} but got {attn_mask.shape}")
        return False
    raise ValueError(f"{f}: query should be unbatched 2D or batched 3D but received a "
                     f"{query.ndim}-D array of shape {query.shape}")


def multi_head_attention_forward(
        query: Array, key: Array, value: Array, embed_dim_to_check: int, num_heads: int,
        in_proj_weight: Optional[Array], in_proj_bias: Optional[Array],
        bias_k: Optional[Array], bias_v: Optional[Array], add_zero_attn: bool,
        dropout_p: float, out_proj_weight: Array, out_proj_bias: Optional[Array],
        training: bool = True, key_padding_mask: Optional[Array] = None,
        need_weights: bool = True, attn_mask: Optional[Array] = None,
        use_separate_proj_weight: bool = False, q_proj_weight: Optional[Array] = None,
        k_proj_weight: Optional[Array] = None, v_proj_weight: Optional[Array] = None,
        static_k: Optional[Array] = None, static_v: Optional[Array] = None,
        average_attn_weights: bool = True, is_causal: bool = False, *,
        key_rng=None) -> Tuple[Array, Optional[Array]]:
    """Multi-head attention with torch's argument semantics (sequence-first layout).

    Shapes: ``query (L, N, E)`` / ``key (S, N, Ek)`` / ``value (S, N, Ev)``, or unbatched
    ``(L, E)``. ``key_padding_mask (N, S)``: bool ``True`` = ignore that key, float = added.
    ``attn_mask (L, S)`` or ``(N·num_heads, L, S)``, same convention. Returns
    ``(attn_output (L, N, E), attn_weights)``; weights are ``(N, L, S)`` averaged over heads,
    ``(N, num_heads, L, S)`` if ``average_attn_weights=False``, ``None`` if not ``need_weights``.
    ``is_causal`` is a hint that ``attn_mask`` is causal (torch requires the mask too).
    Dropout (``training`` and ``dropout_p > 0``) needs ``key_rng``.

    Example:
        >>> E, H = 8, 2; x = jnp.ones((5, 3, E))
        >>> w = jnp.ones((3 * E, E)) * 0.1; wo = jnp.eye(E)
        >>> out, attn = multi_head_attention_forward(x, x, x, E, H, w, None, None, None,
        ...                                          False, 0.0, wo, None)
        >>> out.shape, attn.shape
        ((5, 3, 8), (3, 5, 5))
    """
    (query, key, value, in_proj_weight, in_proj_bias, bias_k, bias_v, out_proj_weight, out_proj_bias,
     q_proj_weight, k_proj_weight, v_proj_weight, static_k, static_v) = _amp.cast_for_matmul(
        query, key, value, in_proj_weight, in_proj_bias, bias_k, bias_v, out_proj_weight,
        out_proj_bias, q_proj_weight, k_proj_weight, v_proj_weight, static_k, static_v)
    f = "multi_head_attention_forward"
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    for name, x in (("query", query), ("key", key), ("value", value)):
        _check_float(x, name, f)
    if key_padding_mask is not None:
        key_padding_mask = jnp.asarray(key_padding_mask)
    if attn_mask is not None:
        attn_mask = jnp.asarray(attn_mask)
    is_batched = _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads)
    if not is_batched:
        query, key, value = query[:, None], key[:, None], value[:, None]
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask[None]

    tgt_len, bsz, embed_dim = query.shape
    src_len = key.shape[0]
    dtype = query.dtype
    key_padding_mask = _canonical_mask(key_padding_mask, "key_padding_mask", dtype)
    if is_causal and attn_mask is None:
        raise ValueError(f"{f}: need attn_mask if specifying the is_causal hint; you may use "
                         "Transformer.generate_square_subsequent_mask to create it")
    if is_causal and key_padding_mask is None and not need_weights:
        attn_mask = None   # torch hands is_causal to SDPA and drops the mask
    else:
        attn_mask = _canonical_mask(attn_mask, "attn_mask", dtype)
        if key_padding_mask is not None:
            is_causal = False

    if embed_dim != embed_dim_to_check:
        raise ValueError(f"{f}: was expecting embedding dimension of {embed_dim_to_check}, "
                         f"but got {embed_dim}")
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise ValueError(f"{f}: embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if use_separate_proj_weight:
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(f"{f}: key's sequence and batch dims {key.shape[:2]} do not match "
                             f"value's {value.shape[:2]}")
        if q_proj_weight is None or k_proj_weight is None or v_proj_weight is None:
            raise ValueError(f"{f}: use_separate_proj_weight=True needs q_proj_weight, "
                             "k_proj_weight and v_proj_weight")
        b_q = b_k = b_v = None
        if in_proj_bias is not None:
            b_q, b_k, b_v = jnp.split(in_proj_bias, 3)
        q = _linear(query, q_proj_weight, b_q)
        k = _linear(key, k_proj_weight, b_k)
        v = _linear(value, v_proj_weight, b_v)
    else:
        if key.shape != value.shape:
            raise ValueError(f"{f}: key shape {key.shape} does not match value shape {value.shape}")
        if in_proj_weight is None:
            raise ValueError(f"{f}: use_separate_proj_weight is False but in_proj_weight is None")
        if in_proj_weight.shape != (3 * embed_dim, embed_dim):
            raise ValueError(f"{f}: in_proj_weight must have shape {(3 * embed_dim, embed_dim)}, "
                             f"got {in_proj_weight.shape}")
        w_q, w_k, w_v = jnp.split(in_proj_weight, 3)
        b_q = b_k = b_v = None
        if in_proj_bias is not None:
            b_q, b_k, b_v = jnp.split(in_proj_bias, 3)
        q, k, v = _linear(query, w_q, b_q), _linear(key, w_k, b_k), _linear(value, w_v, b_v)

    if attn_mask is not None:
        if attn_mask.ndim == 2:
            if attn_mask.shape != (tgt_len, src_len):
                raise ValueError(f"{f}: the shape of the 2D attn_mask is {attn_mask.shape}, but "
                                 f"should be {(tgt_len, src_len)}")
            attn_mask = attn_mask[None]
        elif attn_mask.shape != (bsz * num_heads, tgt_len, src_len):
            raise ValueError(f"{f}: the shape of the 3D attn_mask is {attn_mask.shape}, but "
                             f"should be {(bsz * num_heads, tgt_len, src_len)}")

    pad_last = lambda m: None if m is None else jnp.pad(m, [(0, 0)] * (m.ndim - 1) + [(0, 1)])
    if bias_k is not None and bias_v is not None:
        if static_k is not None or static_v is not None:
            raise ValueError(f"{f}: bias cannot be added to static key/value")
        k = jnp.concatenate([k, jnp.broadcast_to(jnp.reshape(bias_k, (1, 1, -1)), (1, bsz, k.shape[-1]))])
        v = jnp.concatenate([v, jnp.broadcast_to(jnp.reshape(bias_v, (1, 1, -1)), (1, bsz, v.shape[-1]))])
        attn_mask, key_padding_mask = pad_last(attn_mask), pad_last(key_padding_mask)
    elif (bias_k is None) != (bias_v is None):
        raise ValueError(f"{f}: bias_k and bias_v must both be set or both be None")

    # (len, bsz, E) -> (bsz*heads, len, head_dim); row index b*num_heads + h, like torch.
    q = jnp.swapaxes(q.reshape(tgt_len, bsz * num_heads, head_dim), 0, 1)
    if static_k is None:
        k = jnp.swapaxes(k.reshape(k.shape[0], bsz * num_heads, head_dim), 0, 1)
    else:
        if static_k.shape[0] != bsz * num_heads or static_k.shape[2] != head_dim:
            raise ValueError(f"{f}: static_k must have shape ({bsz * num_heads}, S, {head_dim}), "
                             f"got {static_k.shape}")
        k = static_k
    if static_v is None:
        v = jnp.swapaxes(v.reshape(v.shape[0], bsz * num_heads, head_dim), 0, 1)
    else:
        if static_v.shape[0] != bsz * num_heads or static_v.shape[2] != head_dim:
            raise ValueError(f"{f}: static_v must have shape ({bsz * num_heads}, S, {head_dim}), "
                             f"got {static_v.shape}")
        v = static_v

    if add_zero_attn:
        zeros = jnp.zeros((bsz * num_heads, 1, head_dim), k.dtype)
        k = jnp.concatenate([k, zeros], axis=1)
        v = jnp.concatenate([v, zeros.astype(v.dtype)], axis=1)
        attn_mask, key_padding_mask = pad_last(attn_mask), pad_last(key_padding_mask)

    src_len = k.shape[1]
    if key_padding_mask is not None:
        if key_padding_mask.shape != (bsz, src_len):
            raise ValueError(f"{f}: expected key_padding_mask shape {(bsz, src_len)}, "
                             f"got {key_padding_mask.shape}")
        kpm = jnp.broadcast_to(key_padding_mask[:, None, None, :], (bsz, num_heads, 1, src_len))
        kpm = kpm.reshape(bsz * num_heads, 1, src_len)
        attn_mask = kpm if attn_mask is None else attn_mask + kpm

    if not training:
        dropout_p = 0.0

    if need_weights:
        if is_causal and attn_mask is None:
            raise ValueError(f"{f}: is_causal without attn_mask is not supported with need_weights")
        q_scaled = q * jnp.asarray(math.sqrt(1.0 / float(head_dim)), q.dtype)
        w = jnp.matmul(q_scaled, jnp.swapaxes(k, -2, -1))
        if attn_mask is not None:
            w = attn_mask + w
        w = jax.nn.softmax(w, axis=-1)   # plain softmax: a fully masked row is NaN, as in torch
        if dropout_p > 0.0:
            w = _dropout(w, dropout_p, key_rng, f)
        out = jnp.matmul(w, v)
        out = jnp.swapaxes(out, 0, 1).reshape(tgt_len * bsz, embed_dim)
        out = _linear(out, out_proj_weight, out_proj_bias).reshape(tgt_len, bsz, -1)
        w = w.reshape(bsz, num_heads, tgt_len, src_len)
        if average_attn_weights:
            w = jnp.mean(w, axis=1)
        if not is_batched:
            out, w = out[:, 0], w[0]
        return out, w

    if attn_mask is not None:
        if attn_mask.shape[0] == 1:
            attn_mask = attn_mask[None]
        else:
            attn_mask = attn_mask.reshape(bsz, num_heads, -1, src_len)
    q = q.reshape(bsz, num_heads, tgt_len, head_dim)
    k = k.reshape(bsz, num_heads, src_len, head_dim)
    v = v.reshape(bsz, num_heads, src_len, head_dim)
    out = scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, key_rng=key_rng)
    out = jnp.transpose(out, (2, 0, 1, 3)).reshape(bsz * tgt_len, embed_dim)
    out = _linear(out, out_proj_weight, out_proj_bias).reshape(tgt_len, bsz, -1)
    if not is_batched:
        out = out[:, 0]
    return out, None
