"""Dropout with its own key: fresh masks under ``jax.jit`` with no extra argument."""
from __future__ import annotations

from typing import Callable

import jax

from jparam._module import Module
from jparam._random import module_key, new_key_leaf
from jparam.nn import functional as F

__all__ = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"]


class _DropoutNd(Module):
    _fn: Callable

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace
        self._rng = new_key_leaf()

    def forward(self, input: jax.Array) -> jax.Array:
        if not self.training or self.p == 0.0:
            return input
        return self._fn(input, self.p, True, key=module_key(self))

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero each element with probability ``p`` in training and scale the rest by ``1/(1-p)``.

    The mask key comes from the module's own key (seeded by ``jparam.manual_seed``) and
    advances on every training-mode call; ``eval()`` makes it the identity.

    Example:
        >>> drop = nn.Dropout(0.1)
        >>> y = nn.Dropout(0.5)(jnp.ones(1000))     # training mode: zeros, survivors scaled by 2
        >>> sorted(set(np.asarray(y).tolist()))
        [0.0, 2.0]
        >>> drop.eval()(jnp.ones(3))
        Array([1., 1., 1.], dtype=float32)
    """

    _fn = staticmethod(F.dropout)


class Dropout1d(_DropoutNd):
    """Zero whole channels of ``(N, C, L)`` / ``(C, L)`` inputs with probability ``p``.

    Example:
        >>> nn.Dropout1d(0.2)(jnp.ones((2, 3, 4))).shape
        (2, 3, 4)
    """

    _fn = staticmethod(F.dropout1d)


class Dropout2d(_DropoutNd):
    """Zero whole channels of ``(N, C, H, W)`` / ``(C, H, W)`` inputs with probability ``p``.

    Example:
        >>> nn.Dropout2d(0.2)(jnp.ones((2, 3, 4, 4))).shape
        (2, 3, 4, 4)
    """

    _fn = staticmethod(F.dropout2d)


class Dropout3d(_DropoutNd):
    """Zero whole channels of ``(N, C, D, H, W)`` / ``(C, D, H, W)`` inputs.

    Example:
        >>> nn.Dropout3d(0.2)(jnp.ones((2, 3, 2, 2, 2))).shape
        (2, 3, 2, 2, 2)
    """

    _fn = staticmethod(F.dropout3d)


class AlphaDropout(_DropoutNd):
    """Dropout that keeps SELU's zero mean / unit variance (torch's affine correction).

    Example:
        >>> nn.AlphaDropout(0.2)(jnp.ones((4, 5))).shape
        (4, 5)
    """

    _fn = staticmethod(F.alpha_dropout)


class FeatureAlphaDropout(_DropoutNd):
    """Alpha dropout of whole channels.

    Example:
        >>> nn.FeatureAlphaDropout(0.2)(jnp.ones((2, 3, 4))).shape
        (2, 3, 4)
    """

    _fn = staticmethod(F.feature_alpha_dropout)
