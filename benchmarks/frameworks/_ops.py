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
    """``(x - mean) / sqrt(var + eps)`` over ``axes`` (two-pass moments), with the textbook
    normalisation backward: a few reductions and one elementwise pass over ``x``."""
    return _standardize_fwd(x, axes)[0]


def _standardize_fwd(x, axes):
    m = x.mean(axes, keepdims=True)
    r = jax.lax.rsqrt(jnp.square(x - m).mean(axes, keepdims=True) + EPS)
    xhat = (x - m) * r
    return xhat, (xhat, r)


def _standardize_bwd(axes, res, g):
    xhat, r = res
    gc = g - g.mean(axes, keepdims=True)
    return (r * (gc - xhat * (xhat * gc).mean(axes, keepdims=True)),)


standardize.defvjp(_standardize_fwd, _standardize_bwd)


def layer_norm(x, w, b):
    return standardize(x) * w + b


def batch_norm_nhwc_train(x, weight, bias, mean, var, nbt):
    """Training-mode BatchNorm2d on channels-last ``x``; ``(y, new_mean, new_var, new_nbt)``."""
    n = x.shape[0] * x.shape[1] * x.shape[2]
    bm = jax.lax.stop_gradient(x.mean((0, 1, 2)))
    bv = jax.lax.stop_gradient(jnp.square(x - bm).mean((0, 1, 2)))
    y = standardize(x, (0, 1, 2)) * weight + bias
    new_mean = (1 - BN_MOMENTUM) * mean + BN_MOMENTUM * bm
    new_var = (1 - BN_MOMENTUM) * var + BN_MOMENTUM * bv * (n / (n - 1))
    return y, new_mean, new_var, nbt + 1


def max_pool2d_nhwc(x, k=2):
    """Tiled max pooling (stride = kernel) on channels-last ``x``: a reshape and a max."""
    n, h, w, c = x.shape
    return x.reshape(n, h // k, k, w // k, k, c).max(axis=(2, 4))


def gelu(x):
    return jax.nn.gelu(x, approximate=False)     # torch.nn.GELU() default


def causal_attention(qkv, heads):
    """``qkv``: (..., T, 3d) from one fused projection, like GPT-2's ``c_attn``; heads split in
    place as (..., T, heads, hd), ``jax.nn.dot_product_attention``'s layout (no transposes)."""
    *lead, t, d3 = qkv.shape
    d = d3 // 3
    q, k, v = (a.reshape(-1, t, heads, d // heads) for a in jnp.split(qkv, 3, axis=-1))
    o = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    return o.reshape(*lead, t, d)
