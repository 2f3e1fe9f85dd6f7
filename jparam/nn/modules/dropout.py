"""Dropout with its own key: fresh masks under ``jax.jit`` with no extra argument."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jparam._module import Module
from jparam._random import module_key, new_key_leaf

__all__ = ["Dropout"]


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
    """

    def forward(self, input: jax.Array) -> jax.Array:
        if not self.training or self.p == 0.0:
            return input
        if self.p == 1.0:
            return jnp.zeros_like(input)
        keep = jax.random.bernoulli(module_key(self), 1.0 - self.p, jnp.shape(input))
        return jnp.where(keep, input / (1.0 - self.p), jnp.zeros((), jnp.result_type(input)))
