"""Flatten and Unflatten."""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from jparam._module import Module

__all__ = ["Flatten", "Unflatten"]


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one.

    Example:
        >>> nn.Flatten()(jnp.ones((2, 3, 4))).shape
        (2, 12)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: jax.Array) -> jax.Array:
        nd = max(jnp.ndim(input), 1)
        s, e = self.start_dim % nd, self.end_dim % nd
        if s > e:
            raise ValueError(f"Flatten: start_dim {self.start_dim} cannot come after end_dim "
                             f"{self.end_dim} for input of shape {tuple(jnp.shape(input))}")
        shape = jnp.shape(input)
        if len(shape) == 0:
            return jnp.reshape(input, (1,))
        return jnp.reshape(input, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Expand dim ``dim`` into ``unflattened_size`` (one entry may be -1).

    Example:
        >>> nn.Unflatten(1, (3, 4))(jnp.ones((2, 12))).shape
        (2, 3, 4)
    """

    def __init__(self, dim: int, unflattened_size: Sequence[int]) -> None:
        super().__init__()
        if not isinstance(unflattened_size, (tuple, list)):
            raise TypeError(f"unflattened_size must be a tuple of ints, got "
                            f"{type(unflattened_size).__name__}")
        self.dim = dim
        self.unflattened_size = tuple(unflattened_size)

    def forward(self, input: jax.Array) -> jax.Array:
        shape = jnp.shape(input)
        d = self.dim % len(shape)
        return jnp.reshape(input, shape[:d] + self.unflattened_size + shape[d + 1:])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
