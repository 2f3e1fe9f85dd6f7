"""Normalisation functions; stateful ones return their new running stats (jax can't mutate)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _explicit
from ._layout import channels_first, channels_last
from jparam.amp import _autocast as _amp

__all__ = ["batch_norm", "instance_norm", "layer_norm", "group_norm", "rms_norm",
           "local_response_norm", "normalize"]


def _bshape(x, v):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def _scale_shift(y, weight, bias):
    """``y * weight + bias`` broadcast on the trailing axes (either may be None)."""
    if weight is not None:
        y = y * weight.astype(y.dtype)
    if bias is not None:
        y = y + bias.astype(y.dtype)
    return y


def _affine(y, weight, bias):
    """``y * weight + bias`` with per-channel vectors on a channels-first ``y``."""
    return _scale_shift(y, None if weight is None else _bshape(y, weight),
                        None if bias is None else _bshape(y, bias))


def _moments(x, axes):
    """``(mean, biased var)`` over ``axes`` (kept as size-1 dims); two passes, for accuracy."""
    mean = jnp.mean(x, axis=axes, keepdims=True)
    return mean, jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)


def _standardize_plain(x, axes, eps):
    """``(x̂, mean, var)`` with ``x̂ = (x - mean) / sqrt(var + eps)`` over ``axes``, two-pass."""
    mean, var = _moments(x, axes)
    return (x - mean) * jax.lax.rsqrt(var + eps), mean, var


# The custom JVP states the derivative in closed form,
#   dx̂ = C(P(r dx)),   r = 1/sqrt(var + eps),   P u = u - x̂ mean(x̂ u),   C u = u - mean(u),
# (C and P commute, as mean(x̂) = 0), in the order whose transpose is the textbook
# normalisation backward r P(C g): centre the cotangent, project out x̂, scale. A few
# reductions and one elementwise pass over the activations, where differentiating the
# two-pass formula materialises several more full-size intermediates; the other order
# costs XLA a pass more per norm (benchmarks/README.md, "CNN and GPT overhead").
_standardize_static = jax.custom_jvp(_standardize_plain, nondiff_argnums=(1, 2))


def _standardize(x, axes, eps):
    """``(x̂, mean, var)``; a static ``eps`` (the usual float) takes the closed-form
    derivative of :data:`_standardize_static`, a traced one plain autodiff."""
    if isinstance(eps, (int, float)):
        return _standardize_static(x, axes, float(eps))
    return _standardize_plain(x, axes, eps)


@_standardize_static.defjvp
def _standardize_jvp(axes, eps, primals, tangents):
    (x,), (dx,) = primals, tangents
    xhat, mean, var = _standardize_static(x, axes, eps)
    r = jax.lax.rsqrt(var + eps)
    a = r * dx
    proj = jnp.mean(xhat * a, axis=axes, keepdims=True)        # r mean(x̂ dx)
    b = a - xhat * proj
    dxhat = b - jnp.mean(b, axis=axes, keepdims=True)
    dmean = jnp.mean(dx, axis=axes, keepdims=True)
    dvar = 2 * proj / (r * r)                 # d mean((x - mean)²) = 2 mean((x - mean) dx)
    return (xhat, mean, var), (dxhat, dmean, dvar)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation over all dims but 1 (channels).

    torch's ``F.batch_norm`` updates ``running_mean``/``running_var`` in place. jax arrays
    are immutable, so when torch would mutate them — ``training=True`` with running stats
    given — this returns ``(output, new_running_mean, new_running_var)``; otherwise it
    returns the output alone, like torch. Updates follow torch: biased batch variance to
    normalise, unbiased for the running variance, ``new = (1 - momentum) * old + momentum * batch``.

    Example:
        >>> x = jnp.ones((4, 3))
        >>> y, rm, rv = F.batch_norm(x, jnp.zeros(3), jnp.ones(3), training=True)
        >>> F.batch_norm(x, rm, rv).shape
        (4, 3)
    """
    input, weight, bias = _amp.cast_to_float32(input, weight, bias)
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected input with at least 2 dims (N, C, ...), "
                         f"got shape {tuple(input.shape)}")
    c = input.shape[1]
    for name, v in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if v is not None and tuple(v.shape) != (c,):
            raise ValueError(f"batch_norm: {name} must have shape ({c},), got {tuple(v.shape)}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: running_mean and running_var must both be given or both None")
    x = channels_last(input)            # per-channel vectors broadcast on the last axis
    axes = tuple(range(x.ndim - 1))
    if training or running_mean is None:
        n = input.size // c
        if training and n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input "
                             f"size {tuple(input.shape)}")
        y, mean, var = _standardize(x, axes, eps)
        mean, var = mean.reshape(c), var.reshape(c)
    else:
        mean, var = running_mean.astype(input.dtype), running_var.astype(input.dtype)
        y = (x - mean) * jax.lax.rsqrt(var + eps)
    y = channels_first(_scale_shift(y, weight, bias))
    if not training or running_mean is None:
        return y
    m = 0.0 if momentum is None else momentum
    sm, sv = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
    unbiased = sv * (n / (n - 1))
    new_rm = ((1 - m) * running_mean + m * sm.astype(running_mean.dtype)).astype(running_mean.dtype)
    new_rv = ((1 - m) * running_var + m * unbiased.astype(running_var.dtype)).astype(running_var.dtype)
    return y, new_rm, new_rv


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Normalise each (sample, channel) plane over its spatial dims.

    With running stats and ``use_input_stats=True`` it returns ``(output, new_running_mean,
    new_running_var)`` (the batch-average of the per-instance stats, as torch); otherwise the
    output alone.

    Example:
        >>> F.instance_norm(jnp.ones((2, 3, 5))).shape
        (2, 3, 5)
    """
    input, weight, bias = _amp.cast_to_float32(input, weight, bias)
    if input.ndim < 3:
        raise ValueError(f"instance_norm: expected input (N, C, *spatial), got shape "
                         f"{tuple(input.shape)}")
    axes = tuple(range(2, input.ndim))
    if use_input_stats or running_mean is None:
        y, mean, var = _standardize(input, axes, eps)
    else:
        mean = _bshape(input, running_mean.astype(input.dtype))
        var = _bshape(input, running_var.astype(input.dtype))
        y = (input - mean) * jax.lax.rsqrt(var + eps)
    y = _affine(y, weight, bias)
    if not use_input_stats or running_mean is None:
        return y
    n = 1
    for a in axes:
        n *= input.shape[a]
    sm = jax.lax.stop_gradient(jnp.mean(mean.reshape(input.shape[:2]), axis=0))
    sv = jax.lax.stop_gradient(jnp.mean(var.reshape(input.shape[:2]), axis=0)) * (n / max(n - 1, 1))
    m = momentum
    new_rm = ((1 - m) * running_mean + m * sm).astype(running_mean.dtype)
    new_rv = ((1 - m) * running_var + m * sv).astype(running_var.dtype)
    return y, new_rm, new_rv


def _norm_shape(normalized_shape):
    if isinstance(normalized_shape, int):
        return (normalized_shape,)
    return tuple(int(s) for s in normalized_shape)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing ``normalized_shape`` dims (biased variance).

    Example:
        >>> F.layer_norm(jnp.ones((2, 4)), (4,)).shape
        (2, 4)
    """
    input, weight, bias = _amp.cast_to_float32(input, weight, bias)
    ns = _norm_shape(normalized_shape)
    if tuple(input.shape[input.ndim - len(ns):]) != ns:
        raise ValueError(f"layer_norm: input shape {tuple(input.shape)} does not end with "
                         f"normalized_shape {ns}")
    axes = tuple(range(input.ndim - len(ns), input.ndim))
    mesh = _explicit.explicit_mesh(input, weight, bias) if len(ns) == 1 else None
    if mesh is not None:  # JAX's explicit sharding: an FSDP-sharded weight is gathered
        weight, bias = _explicit.like_trailing(weight, input, mesh), _explicit.like_trailing(bias, input, mesh)
    return _scale_shift(_standardize(input, axes, eps)[0], weight, bias)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise channels in ``num_groups`` groups over (group channels, spatial dims).

    Example:
        >>> F.group_norm(jnp.ones((2, 4, 3)), 2).shape
        (2, 4, 3)
    """
    input, weight, bias = _amp.cast_to_float32(input, weight, bias)
    if input.ndim < 2:
        raise ValueError(f"group_norm: expected input (N, C, *), got shape {tuple(input.shape)}")
    n, c = input.shape[:2]
    if c % num_groups:
        raise ValueError(f"group_norm: number of channels {c} must be divisible by "
                         f"num_groups={num_groups}")
    x = input.reshape((n, num_groups, -1))
    y = _standardize(x, (x.ndim - 1,), eps)[0].reshape(input.shape)
    return _affine(y, weight, bias)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """``x / sqrt(mean(x², trailing dims) + eps) * weight``; ``eps=None`` → dtype's eps.

    Example:
        >>> F.rms_norm(jnp.ones((2, 4)), (4,)).shape
        (2, 4)
    """
    input, weight = _amp.cast_to_float32(input, weight)
    ns = _norm_shape(normalized_shape)
    if tuple(input.shape[input.ndim - len(ns):]) != ns:
        raise ValueError(f"rms_norm: input shape {tuple(input.shape)} does not end with "
                         f"normalized_shape {ns}")
    if eps is None:
        eps = float(jnp.finfo(input.dtype).eps)
    axes = tuple(range(input.ndim - len(ns), input.ndim))
    y = input * jax.lax.rsqrt(jnp.mean(jnp.square(input), axis=axes, keepdims=True) + eps)
    return _scale_shift(y, weight, None)


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation across channels (torch's padding and averaging).

    Example:
        >>> F.local_response_norm(jnp.ones((1, 4, 3, 3)), 2).shape
        (1, 4, 3, 3)
    """
    if input.ndim < 3:
        raise ValueError(f"local_response_norm: expected 3-d or higher input, got shape "
                         f"{tuple(input.shape)}")
    div = jnp.square(input)
    pads = [(0, 0)] * input.ndim
    pads[1] = (size // 2, (size - 1) // 2)
    div = jnp.pad(div, pads)
    dims = [1] * input.ndim
    dims[1] = size
    div = jax.lax.reduce_window(div, jnp.array(0, div.dtype), jax.lax.add, tuple(dims),
                                (1,) * input.ndim, "VALID") / size
    div = (div * alpha + k) ** beta
    return input / div


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    """``x / max(‖x‖_p, eps)`` along ``dim``.

    Example:
        >>> F.normalize(jnp.array([[3.0, 4.0]]))
        Array([[0.6, 0.8]], dtype=float32)
    """
    input = _amp.cast_to_float32(input)
    norm = jnp.linalg.norm(input, ord=p, axis=dim, keepdims=True) if p != 2 else \
        jnp.sqrt(jnp.sum(jnp.square(input), axis=dim, keepdims=True))
    return input / jnp.maximum(norm, eps)
