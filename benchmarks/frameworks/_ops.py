"""Array-level ops shared by the JAX-based implementations (so they compute the same math).

Layouts follow torch: Linear weight ``(out, in)``, Conv weight ``(out, in, kh, kw)``, NCHW.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

BN_MOMENTUM = 0.1   # torch's convention: running = (1 - m) * running + m * batch
EPS = 1e-5


def make_optimizer(name: str) -> optax.GradientTransformation:
    """torch.optim.SGD(lr=0.01, momentum=0.9) / torch.optim.Adam(lr=1e-3) as optax."""
    if name == "sgd":
        return optax.sgd(0.01, momentum=0.9)
    if name == "adam":
        return optax.adam(1e-3, b1=0.9, b2=0.999, eps=1e-8)
    raise ValueError(name)


def loss_fn(kind: str, out, y):
    if kind == "ce":
        return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
    return jnp.mean((out - y) ** 2)


def dropout(key, x, p):
    keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
    return jnp.where(keep, x / (1.0 - p), 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def standardize(x, axes=(-1,)):
    """``(x̂, mean, var)``: ``x̂ = (x - mean) / sqrt(var + eps)`` over ``axes`` (two-pass
    moments, kept dims), with the textbook normalisation backward for ``x̂``: a few
    reductions and one elementwise pass over ``x``. ``mean``/``var`` are for running
    statistics and are not differentiated."""
    return _standardize_fwd(x, axes)[0]


def _standardize_fwd(x, axes):
    m = x.mean(axes, keepdims=True)
    v = jnp.square(x - m).mean(axes, keepdims=True)
    r = jax.lax.rsqrt(v + EPS)
    xhat = (x - m) * r
    return (xhat, m, v), (xhat, r)


def _standardize_bwd(axes, res, cts):
    xhat, r = res
    g = cts[0]
    gc = g - g.mean(axes, keepdims=True)
    return (r * (gc - xhat * (xhat * gc).mean(axes, keepdims=True)),)


standardize.defvjp(_standardize_fwd, _standardize_bwd)


def layer_norm(x, w, b):
    return standardize(x)[0] * w + b


def batch_norm_nhwc_train(x, weight, bias, mean, var, nbt):
    """Training-mode BatchNorm2d on channels-last ``x``; ``(y, new_mean, new_var, new_nbt)``.
    The batch statistics come out of the normalisation itself (one pair of reductions)."""
    n = x.shape[0] * x.shape[1] * x.shape[2]
    xhat, bm, bv = standardize(x, (0, 1, 2))
    bm, bv = jax.lax.stop_gradient(bm.reshape(-1)), jax.lax.stop_gradient(bv.reshape(-1))
    y = xhat * weight + bias
    new_mean = (1 - BN_MOMENTUM) * mean + BN_MOMENTUM * bm
    new_var = (1 - BN_MOMENTUM) * var + BN_MOMENTUM * bv * (n / (n - 1))
    return y, new_mean, new_var, nbt + 1


@jax.custom_vjp
def max_pool2d_nhwc(x):
    """2x2 max pooling (stride 2) on channels-last ``x`` with torch's gradient routing: each
    window's gradient goes to its first maximum (row-major), not split among ties as
    differentiating ``max`` does. The winner is found by comparing the four elements with
    each other; the backward is one elementwise select."""
    return _pool_fwd(x)[0]


def _pool_fwd(x):
    n, h, w, c = x.shape
    x6 = x.reshape(n, h // 2, 2, w // 2, 2, c)
    a, b, c, d = (x6[:, :, i, :, j] for i in (0, 1) for j in (0, 1))
    wins = ((a >= b) & (a >= c) & (a >= d), (b > a) & (b >= c) & (b >= d),
            (c > a) & (c > b) & (c >= d), (d > a) & (d > b) & (d > c))
    return x6.max(axis=(2, 4)), wins


def _pool_bwd(wins, g):
    a, b, c, d = (jnp.where(m, g, jnp.zeros((), g.dtype)) for m in wins)
    n, ho, wo, ch = g.shape
    return (jnp.stack([jnp.stack([a, b], 3), jnp.stack([c, d], 3)], 2)
            .reshape(n, 2 * ho, 2 * wo, ch),)


max_pool2d_nhwc.defvjp(_pool_fwd, _pool_bwd)


def gelu(x):
    """torch.nn.GELU() default, in torch's formula ``x/2 (1 + erf(x/√2))``: XLA's CPU code
    for it is faster than for ``jax.nn.gelu(approximate=False)``'s erfc form."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * 0.7071067811865476))


def causal_attention(qkv, heads):
    """``qkv``: (..., T, 3d) from one fused projection, like GPT-2's ``c_attn``; heads split in
    place as (..., T, heads, hd), ``jax.nn.dot_product_attention``'s layout (no transposes)."""
    *lead, t, d3 = qkv.shape
    d = d3 // 3
    q, k, v = (a.reshape(-1, t, heads, d // heads) for a in jnp.split(qkv, 3, axis=-1))
    o = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    return o.reshape(*lead, t, d)
