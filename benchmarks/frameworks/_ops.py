"""Array-level ops shared by the JAX-based implementations (so they compute the same math).

Layouts follow torch: Linear weight ``(out, in)``, Conv weight ``(out, in, kh, kw)``, NCHW.
"""
from __future__ import annotations

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


def conv2d(x, w, b, padding=1):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), [(padding, padding)] * 2,
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return y + b[None, :, None, None]


def max_pool2d(x, k=2):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, k, k), (1, 1, k, k), "VALID")


def batch_norm2d_train(x, weight, bias, mean, var, nbt):
    """Training-mode BatchNorm2d; returns ``(y, new_mean, new_var, new_nbt)`` like torch."""
    bm = x.mean(axis=(0, 2, 3))
    bv = x.var(axis=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    y = (x - bm[None, :, None, None]) * jax.lax.rsqrt(bv + EPS)[None, :, None, None]
    y = y * weight[None, :, None, None] + bias[None, :, None, None]
    bm, bv = jax.lax.stop_gradient(bm), jax.lax.stop_gradient(bv)
    new_mean = (1 - BN_MOMENTUM) * mean + BN_MOMENTUM * bm
    new_var = (1 - BN_MOMENTUM) * var + BN_MOMENTUM * bv * (n / (n - 1))
    return y, new_mean, new_var, nbt + 1


def dropout(key, x, p):
    keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
    return jnp.where(keep, x / (1.0 - p), 0.0)


def layer_norm(x, w, b):
    m = x.mean(-1, keepdims=True)
    v = x.var(-1, keepdims=True)
    return (x - m) * jax.lax.rsqrt(v + EPS) * w + b


def gelu(x):
    return jax.nn.gelu(x, approximate=False)     # torch.nn.GELU() default


def causal_attention(qkv, heads):
    """``qkv``: (..., T, 3d) from one fused projection, like GPT-2's ``c_attn``."""
    *lead, t, d3 = qkv.shape
    d = d3 // 3
    hd = d // heads
    q, k, v = jnp.split(qkv, 3, axis=-1)
    q, k, v = (a.reshape(*lead, t, heads, hd).swapaxes(-2, -3) for a in (q, k, v))
    s = (q @ k.swapaxes(-1, -2)) / jnp.sqrt(jnp.float32(hd))
    mask = jnp.tril(jnp.ones((t, t), bool))
    s = jnp.where(mask, s, -jnp.inf)
    o = jax.nn.softmax(s, axis=-1) @ v
    return o.swapaxes(-2, -3).reshape(*lead, t, d)
