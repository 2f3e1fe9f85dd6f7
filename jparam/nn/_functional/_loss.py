"""Loss functions with torch's ``reduction`` rules (and its legacy size_average/reduce)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ._misc import pairwise_distance
from jparam.amp import _autocast as _amp

__all__ = [
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "cross_entropy", "nll_loss",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div",
    "cosine_embedding_loss", "margin_ranking_loss", "triplet_margin_loss", "hinge_embedding_loss",
    "soft_margin_loss", "multilabel_soft_margin_loss", "poisson_nll_loss", "gaussian_nll_loss",
    "multi_margin_loss",
]

_REDUCTIONS = ("none", "mean", "sum")


def _legacy(size_average, reduce, reduction):
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def _reduce(loss, reduction, fname):
    if reduction == "none":
        return loss
    if reduction == "mean":
        return jnp.mean(loss)
    if reduction == "sum":
        return jnp.sum(loss)
    raise ValueError(f"{fname}: {reduction!r} is not a valid value for reduction; "
                     f"expected one of {_REDUCTIONS}")


def _same_shape(input, target, fname):
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"{fname}: target size {tuple(target.shape)} must be the same as input "
                         f"size {tuple(input.shape)}")


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean squared error ``(x - y)²``.

    Example:
        >>> F.mse_loss(jnp.zeros(3), jnp.ones(3))
        Array(1., dtype=float32)
    """
    input, target, weight = _amp.cast_to_float32(input, target, weight)
    input, target = jnp.broadcast_arrays(input, target)
    loss = jnp.square(input - target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, _legacy(size_average, reduce, reduction), "mse_loss")


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean absolute error ``|x - y|``.

    Example:
        >>> F.l1_loss(jnp.zeros(3), jnp.ones(3))
        Array(1., dtype=float32)
    """
    input, target, weight = _amp.cast_to_float32(input, target, weight)
    input, target = jnp.broadcast_arrays(input, target)
    loss = jnp.abs(input - target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, _legacy(size_average, reduce, reduction), "l1_loss")


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """``0.5 d²/beta`` where ``|d| < beta``, else ``|d| - 0.5·beta`` (``beta=0``: L1).

    Example:
        >>> F.smooth_l1_loss(jnp.zeros(2), jnp.array([0.5, 2.0]))
        Array(0.8125, dtype=float32)
    """
    input, target = _amp.cast_to_float32(input, target)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss does not support negative values for beta, got {beta}")
    input, target = jnp.broadcast_arrays(input, target)
    d = jnp.abs(input - target)
    if beta == 0:
        loss = d
    else:
        loss = jnp.where(d < beta, 0.5 * jnp.square(d) / beta, d - 0.5 * beta)
    return _reduce(loss, _legacy(size_average, reduce, reduction), "smooth_l1_loss")


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """``0.5 d²`` where ``|d| < delta``, else ``delta·(|d| - 0.5·delta)``.

    Example:
        >>> F.huber_loss(jnp.zeros(2), jnp.array([0.5, 2.0]))
        Array(0.8125, dtype=float32)
    """
    input, target, weight = _amp.cast_to_float32(input, target, weight)
    input, target = jnp.broadcast_arrays(input, target)
    d = jnp.abs(input - target)
    loss = jnp.where(d < delta, 0.5 * jnp.square(d), delta * (d - 0.5 * delta))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "huber_loss")


def _class_dim(input):
    return 0 if input.ndim == 1 else 1


def _check_nll(input, target, weight, fname):
    cd = _class_dim(input)
    c = input.shape[cd]
    expect = input.shape[:cd] + input.shape[cd + 1:]
    if tuple(target.shape) != tuple(expect):
        raise ValueError(f"{fname}: expected target of shape {tuple(expect)} (input shape "
                         f"{tuple(input.shape)} with classes on dim {cd}), got {tuple(target.shape)}")
    if not jnp.issubdtype(target.dtype, jnp.integer):
        raise TypeError(f"{fname}: class-index target must be an integer array, got {target.dtype}")
    if weight is not None and tuple(weight.shape) != (c,):
        raise ValueError(f"{fname}: weight must have shape ({c},), got {tuple(weight.shape)}")
    return cd, c


def _nll(logp, target, weight, ignore_index, reduction, fname):
    cd, c = _check_nll(logp, target, weight, fname)
    valid = target != ignore_index
    safe_t = jnp.where(valid, target, 0)
    picked = jnp.squeeze(jnp.take_along_axis(logp, jnp.expand_dims(safe_t, cd), axis=cd), cd)
    w = jnp.ones((), logp.dtype) if weight is None else jnp.take(weight.astype(logp.dtype), safe_t)
    w = jnp.where(valid, w, jnp.zeros((), logp.dtype))
    loss = -picked * w
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    if reduction == "mean":
        return jnp.sum(loss) / jnp.sum(jnp.broadcast_to(w, loss.shape))
    raise ValueError(f"{fname}: {reduction!r} is not a valid value for reduction")


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """Negative log-likelihood of log-probabilities ``(N, C, d1, …)`` at class indices
    ``(N, d1, …)``; ``'mean'`` divides by the summed weights of the non-ignored targets.

    Example:
        >>> F.nll_loss(jnp.log(jnp.full((2, 4), 0.25)), jnp.array([0, 3]))
        Array(1.3862944, dtype=float32)
    """
    input, weight = _amp.cast_to_float32(input, weight)
    return _nll(input, target, weight, ignore_index, _legacy(size_average, reduce, reduction),
                "nll_loss")


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """``nll_loss(log_softmax(input, class_dim))`` with class-index targets, or the soft
    cross entropy with probability targets (same shape as input); ``label_smoothing`` as torch.

    Example:
        >>> F.cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))
        Array(1.3862944, dtype=float32)
    """
    input, target, weight = _amp.cast_to_float32(input, target, weight)
    reduction = _legacy(size_average, reduce, reduction)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: {reduction!r} is not a valid value for reduction")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got "
                         f"{label_smoothing}")
    cd = _class_dim(input)
    c = input.shape[cd]
    logp = jax.nn.log_softmax(input, axis=cd)
    wshape = [1] * input.ndim
    wshape[cd] = c
    if jnp.issubdtype(target.dtype, jnp.floating):
        _same_shape(input, target, "cross_entropy (probability target)")
        t = target.astype(logp.dtype)
        if label_smoothing > 0:
            t = t * (1 - label_smoothing) + label_smoothing / c
        prod = logp * t
        if weight is not None:
            prod = prod * weight.astype(logp.dtype).reshape(wshape)
        if reduction == "none":
            return -jnp.sum(prod, axis=cd)
        if reduction == "sum":
            return -jnp.sum(prod)
        return -jnp.sum(prod) / (input.size // c)
    nll = _nll(logp, target, weight, ignore_index, reduction, "cross_entropy")
    if label_smoothing == 0:
        return nll
    valid = target != ignore_index
    if weight is not None:
        smooth = -jnp.sum(logp * weight.astype(logp.dtype).reshape(wshape), axis=cd)
    else:
        smooth = -jnp.sum(logp, axis=cd)
    smooth = jnp.where(valid, smooth, jnp.zeros((), smooth.dtype))
    if reduction == "none":
        ret = smooth
    elif reduction == "sum":
        ret = jnp.sum(smooth)
    elif weight is not None:
        tw = jnp.where(valid, jnp.take(weight.astype(logp.dtype), jnp.where(valid, target, 0)), 0)
        ret = jnp.sum(smooth) / jnp.sum(tw)
    else:
        ret = jnp.sum(smooth) / jnp.sum(valid)
    return (1 - label_smoothing) * nll + ret * (label_smoothing / c)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    """``-(y·log x + (1-y)·log(1-x))`` with logs clamped at -100, like torch.

    Example:
        >>> F.binary_cross_entropy(jnp.full(2, 0.5), jnp.array([0.0, 1.0]))
        Array(0.6931472, dtype=float32)
    """
    input, target, weight = _amp.cast_to_float32(input, target, weight)
    _same_shape(input, target, "binary_cross_entropy")
    log_x = jnp.maximum(jnp.log(input), -100.0)
    log_1mx = jnp.maximum(jnp.log1p(-input), -100.0)
    loss = -(target * log_x + (1 - target) * log_1mx)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, _legacy(size_average, reduce, reduction), "binary_cross_entropy")


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """Sigmoid + binary cross entropy, computed stably; ``pos_weight`` weights positives.

    Example:
        >>> F.binary_cross_entropy_with_logits(jnp.zeros(2), jnp.array([0.0, 1.0]))
        Array(0.6931472, dtype=float32)
    """
    input, target, weight, pos_weight = _amp.cast_to_float32(input, target, weight, pos_weight)
    _same_shape(input, target, "binary_cross_entropy_with_logits")
    ls = jax.nn.log_sigmoid(input)
    if pos_weight is not None:
        lw = (pos_weight - 1) * target + 1
        loss = (1 - target) * input - lw * ls
    else:
        loss = (1 - target) * input - ls
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, _legacy(size_average, reduce, reduction),
                   "binary_cross_entropy_with_logits")


def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """KL divergence with log-probability ``input``: ``target·(log target - input)``;
    ``reduction='batchmean'`` divides the sum by the batch size.

    Example:
        >>> F.kl_div(jnp.log(jnp.full(2, 0.5)), jnp.full(2, 0.5), reduction="sum")
        Array(0., dtype=float32)
    """
    input, target = _amp.cast_to_float32(input, target)
    reduction = _legacy(size_average, reduce, reduction)
    if log_target:
        loss = jnp.exp(target) * (target - input)
    else:
        loss = jax.scipy.special.xlogy(target, target) - target * input
    if reduction == "batchmean":
        return jnp.sum(loss) / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction, "kl_div")


def cosine_embedding_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None,
                          reduction="mean"):
    """``1 - cos`` for target 1, ``max(0, cos - margin)`` for target -1.

    Example:
        >>> F.cosine_embedding_loss(jnp.ones((2, 3)), jnp.ones((2, 3)), jnp.array([1, -1]))
        Array(0.5, dtype=float32)
    """
    input1, input2 = _amp.cast_to_float32(input1, input2)
    d = input1.ndim - 1
    prod = jnp.sum(input1 * input2, axis=d)
    m1 = jnp.sum(input1 * input1, axis=d) + 1e-12
    m2 = jnp.sum(input2 * input2, axis=d) + 1e-12
    cos = prod / jnp.sqrt(m1 * m2)
    zero = jnp.zeros_like(cos)
    loss = jnp.where(target == 1, 1 - cos, zero) + \
        jnp.where(target == -1, jnp.maximum(cos - margin, 0), zero)
    return _reduce(loss, _legacy(size_average, reduce, reduction), "cosine_embedding_loss")


def margin_ranking_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None,
                        reduction="mean"):
    """``max(0, -y·(x1 - x2) + margin)``.

    Example:
        >>> F.margin_ranking_loss(jnp.ones(2), jnp.zeros(2), jnp.array([1.0, -1.0]))
        Array(0.5, dtype=float32)
    """
    input1, input2 = _amp.cast_to_float32(input1, input2)
    loss = jnp.maximum(-target * (input1 - input2) + margin, 0)
    return _reduce(loss, _legacy(size_average, reduce, reduction), "margin_ranking_loss")


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False,
                        size_average=None, reduce=None, reduction="mean"):
    """``max(d(a, p) - d(a, n) + margin, 0)`` with ``pairwise_distance`` (optional swap).

    Example:
        >>> F.triplet_margin_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.ones((2, 3))).shape
        ()
    """
    anchor, positive, negative = _amp.cast_to_float32(anchor, positive, negative)
    d_ap = pairwise_distance(anchor, positive, p, eps)
    d_an = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_an = jnp.minimum(d_an, pairwise_distance(positive, negative, p, eps))
    loss = jnp.maximum(margin + d_ap - d_an, 0)
    return _reduce(loss, _legacy(size_average, reduce, reduction), "triplet_margin_loss")


def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None,
                         reduction="mean"):
    """``x`` for target 1, ``max(0, margin - x)`` for target -1.

    Example:
        >>> F.hinge_embedding_loss(jnp.array([0.5, 0.5]), jnp.array([1.0, -1.0]))
        Array(0.5, dtype=float32)
    """
    input = _amp.cast_to_float32(input)
    zero = jnp.zeros_like(input)
    loss = jnp.where(target != 1, jnp.maximum(margin - input, 0), zero) + \
        jnp.where(target != -1, input, zero)
    return _reduce(loss, _legacy(size_average, reduce, reduction), "hinge_embedding_loss")


def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """``log(1 + exp(-y·x))``.

    Example:
        >>> F.soft_margin_loss(jnp.zeros(2), jnp.ones(2))
        Array(0.6931472, dtype=float32)
    """
    input, target = _amp.cast_to_float32(input, target)
    loss = jnp.log1p(jnp.exp(-target * input))
    return _reduce(loss, _legacy(size_average, reduce, reduction), "soft_margin_loss")


def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None,
                                reduction="mean"):
    """Per-class logistic loss averaged over classes.

    Example:
        >>> F.multilabel_soft_margin_loss(jnp.zeros((2, 3)), jnp.ones((2, 3)))
        Array(0.6931472, dtype=float32)
    """
    input, target, weight = _amp.cast_to_float32(input, target, weight)
    loss = -(target * jax.nn.log_sigmoid(input) + (1 - target) * jax.nn.log_sigmoid(-input))
    if weight is not None:
        loss = loss * weight
    loss = jnp.mean(loss, axis=input.ndim - 1)
    return _reduce(loss, _legacy(size_average, reduce, reduction), "multilabel_soft_margin_loss")


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    """Multi-class hinge loss ``Σ_{i≠y} max(0, margin - x[y] + x[i])^p / C``.

    Example:
        >>> F.multi_margin_loss(jnp.zeros((2, 3)), jnp.array([0, 1]))
        Array(0.6666667, dtype=float32)
    """
    input, weight = _amp.cast_to_float32(input, weight)
    if p not in (1, 2):
        raise ValueError(f"multi_margin_loss: only p == 1 and p == 2 supported, got {p}")
    x = input if input.ndim == 2 else input[None]
    t = target.reshape(-1)
    c = x.shape[1]
    xy = jnp.take_along_axis(x, t[:, None], axis=1)
    z = jnp.maximum(margin - xy + x, 0) ** p
    if weight is not None:
        z = z * jnp.take(weight, t)[:, None]
    z = jnp.where(jnp.arange(c)[None, :] == t[:, None], 0, z)
    loss = jnp.sum(z, axis=1) / c
    if input.ndim == 1:
        loss = loss[0]
    return _reduce(loss, _legacy(size_average, reduce, reduction), "multi_margin_loss")


def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8,
                     reduce=None, reduction="mean"):
    """Poisson negative log likelihood (optional Stirling term for ``full=True``).

    Example:
        >>> F.poisson_nll_loss(jnp.zeros(2), jnp.ones(2))
        Array(1., dtype=float32)
    """
    input, target = _amp.cast_to_float32(input, target)
    if log_input:
        loss = jnp.exp(input) - target * input
    else:
        loss = input - target * jnp.log(input + eps)
    if full:
        st = target * jnp.log(target) - target + 0.5 * jnp.log(2 * jnp.pi * target)
        loss = loss + jnp.where(target > 1, st, jnp.zeros_like(st))
    return _reduce(loss, _legacy(size_average, reduce, reduction), "poisson_nll_loss")


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """Gaussian negative log likelihood ``0.5·(log var + (x - y)²/var)`` (var clamped at eps).

    Example:
        >>> F.gaussian_nll_loss(jnp.zeros(2), jnp.zeros(2), jnp.ones(2))
        Array(0., dtype=float32)
    """
    input, target, var = _amp.cast_to_float32(input, target, var)
    if var.ndim != input.ndim and var.shape == input.shape[:-1]:
        var = var[..., None]
    # torch clamps in place under no_grad: the value is clamped, the gradient is not.
    var = var + jax.lax.stop_gradient(jnp.maximum(var, eps) - var)
    loss = 0.5 * (jnp.log(var) + jnp.square(input - target) / var)
    if full:
        loss = loss + 0.5 * jnp.log(2 * jnp.pi)
    return _reduce(loss, reduction, "gaussian_nll_loss")
