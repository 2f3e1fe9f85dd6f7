"""Dropout functions (torch semantics; randomness from an explicit ``key``).

:func:`_dropout` is the one implementation of inverted dropout in jparam: ``F.dropout``,
the feature (channel) dropouts, ``nn.Dropout``, attention-weight dropout and the RNNs'
inter-layer dropout all call it.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jparam._random import as_key

__all__ = ["dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
           "feature_alpha_dropout"]


def _check_p(p, fname):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{fname}: dropout probability has to be between 0 and 1, but got {p}")


def _need_key(key, fname, key_arg="key"):
    if key is None:
        raise ValueError(f"{fname}: dropout (training, p > 0) needs an explicit `{key_arg}` "
                         "(e.g. jax.random.key(0)); the nn modules supply one themselves")
    return as_key(key)


def _dropout(input, p, key, fname, mask_shape=None, key_arg="key"):
    """Zero entries with probability ``p`` (whole slices where ``mask_shape`` broadcasts)
    and scale the rest by ``1/(1-p)``; training mode, ``p`` already checked."""
    if p == 0.0:
        return input
    if p == 1.0:
        return jnp.zeros_like(input)
    shape = jnp.shape(input) if mask_shape is None else mask_shape
    keep = jax.random.bernoulli(_need_key(key, fname, key_arg), 1.0 - p, shape)
    return jnp.where(keep, input / (1.0 - p), jnp.zeros((), input.dtype)).astype(input.dtype)


def dropout(input, p=0.5, training=True, inplace=False, *, key=None):
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)``.

    Example:
        >>> F.dropout(jnp.ones(4), 0.5, key=jax.random.key(0)).shape
        (4,)
    """
    _check_p(p, "dropout")
    if not training:
        return input
    return _dropout(input, p, key, "dropout")


def _feature_dropout(input, p, training, n, fname, key):
    _check_p(p, fname)
    if input.ndim not in (n + 1, n + 2):
        raise ValueError(f"{fname}: expected {n + 1}-d (unbatched) or {n + 2}-d (batched) input, "
                         f"got shape {tuple(input.shape)}")
    if not training:
        return input
    mshape = input.shape[:input.ndim - n] + (1,) * n
    return _dropout(input, p, key, fname, mshape)


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
