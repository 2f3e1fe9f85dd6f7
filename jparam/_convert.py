"""Array conversion between torch, NumPy and JAX (torch imported lazily)."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["torch_to_numpy", "torch_to_jax", "to_jax_array"]


def torch_to_numpy(t: Any) -> np.ndarray:
    """A torch tensor as a NumPy array, dtype preserved (bfloat16 via ml_dtypes)."""
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(jnp.bfloat16)
    return t.numpy()


def torch_to_jax(t: Any) -> jax.Array:
    return jnp.asarray(torch_to_numpy(t))


def to_jax_array(value: Any, what: str = "value") -> jax.Array:
    """Convert a jax/NumPy array, torch tensor or Parameter to a jax array, or raise TypeError."""
    if isinstance(value, jax.Array):
        return value
    data = getattr(value, "_data", None)
    if isinstance(data, jax.Array):  # Parameter
        return data
    if type(value).__module__.startswith("torch"):
        return torch_to_jax(value)
    if isinstance(value, (np.ndarray, np.generic, int, float, bool, complex)):
        return jnp.asarray(value)
    raise TypeError(
        f"{what}: expected an array (jax.Array, numpy.ndarray or torch.Tensor), "
        f"got {type(value).__module__}.{type(value).__qualname__}")
