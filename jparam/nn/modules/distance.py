"""CosineSimilarity and PairwiseDistance."""
from __future__ import annotations

import jax

from jparam._module import Module
from jparam.nn import functional as F

__all__ = ["CosineSimilarity", "PairwiseDistance"]


class CosineSimilarity(Module):
    """Cosine similarity along ``dim``.

    Example:
        >>> nn.CosineSimilarity()(jnp.ones((2, 3)), jnp.ones((2, 3)))
        Array([0.99999994, 0.99999994], dtype=float32)
    """

    def __init__(self, dim: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps

    def forward(self, x1: jax.Array, x2: jax.Array) -> jax.Array:
        return F.cosine_similarity(x1, x2, self.dim, self.eps)


class PairwiseDistance(Module):
    """``‖x1 - x2 + eps‖_p`` over the last dim.

    Example:
        >>> nn.PairwiseDistance()(jnp.zeros((2, 3)), jnp.ones((2, 3))).shape
        (2,)
    """

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> None:
        super().__init__()
        self.norm = p
        self.eps = eps
        self.keepdim = keepdim

    def forward(self, x1: jax.Array, x2: jax.Array) -> jax.Array:
        return F.pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)
