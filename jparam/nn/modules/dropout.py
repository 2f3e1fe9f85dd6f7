"""Dropout with its own key: fresh masks under ``jax.jit`` with no extra argument."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jparam._module import Module
from jparam._random import module_key, new_key_leaf
from jparam.nn import functional as F

__all__ = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout"]


class _DropoutNd(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if p < 0 or p > 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace
        self._rng = new_key_leaf()

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

    def forward(self, input: jax.Array) -> jax.Array:
        if not self.training or self.p == 0.0:
            return input
        if self.p == 1.0:
            return jnp.zeros_like(input)
        keep = jax.random.bernoulli(module_key(self), 1.0 - self.p, jnp.shape(input))
        return jnp.where(keep, input / (1.0 - self.p), jnp.zeros((), jnp.result_type(input)))


class _KeyedDropout(_DropoutNd):
    _fn = ""

    def forward(self, input: jax.Array) -> jax.Array:
        fn = getattr(F, self._fn)
        if not self.training or self.p == 0.0:
            return input
        return fn(input, self.p, True, key=module_key(self))


class Dropout1d(_KeyedDropout):
    """Zero whole channels of ``(N, C, L)`` / ``(C, L)`` inputs with probability ``p``.

    Example:
        >>> nn.Dropout1d(0.2)(jnp.ones((2, 3, 4))).shape
        (2, 3, 4)
    """

    _fn = "dropout1d"


class Dropout2d(_KeyedDropout):
    """Zero whole channels of ``(N, C, H, W)`` / ``(C, H, W)`` inputs with probability ``p``.

    Example:
        >>> nn.Dropout2d(0.2)(jnp.ones((2, 3, 4, 4))).shape
        (2, 3, 4, 4)
    """

    _fn = "dropout2d"


class Dropout3d(_KeyedDropout):
    """Zero whole channels of ``(N, C, D, H, W)`` / ``(C, D, H, W)`` inputs.

    Example:
        >>> nn.Dropout3d(0.2)(jnp.ones((2, 3, 2, 2, 2))).shape
        (2, 3, 2, 2, 2)
    """

    _fn = "dropout3d"


class AlphaDropout(_KeyedDropout):
    """Dropout that keeps SELU's zero mean / unit variance (torch's affine correction).

    Example:
        >>> nn.AlphaDropout(0.2)(jnp.ones((4, 5))).shape
        (4, 5)
    """

    _fn = "alpha_dropout"


class FeatureAlphaDropout(_KeyedDropout):
    """Alpha dropout of whole channels.

    Example:
        >>> nn.FeatureAlphaDropout(0.2)(jnp.ones((2, 3, 4))).shape
        (2, 3, 4)
    """

    _fn = "feature_alpha_dropout"
