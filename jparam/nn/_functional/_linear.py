"""Linear maps with torch's weight layouts: ``linear`` and ``bilinear``."""
from __future__ import annotations

import jax.numpy as jnp

from jparam.amp import _autocast as _amp
from . import _explicit

__all__ = ["linear", "bilinear"]


def linear(input, weight, bias=None):
    """``y = x Wᵀ + b`` with torch's weight layout ``(out_features, in_features)``.

    Example:
        >>> F.linear(jnp.ones((2, 3)), jnp.ones((4, 3))).shape
        (2, 4)
    """
    input, weight, bias = _amp.cast_for_matmul(input, weight, bias)
    if input.shape[-1:] != weight.shape[-1:]:
        raise ValueError(
            f"linear: input's last dimension {tuple(input.shape)} does not match weight of shape "
            f"{tuple(weight.shape)} (expected (out_features, {input.shape[-1] if input.ndim else '?'}))")
    mesh = _explicit.explicit_mesh(input, weight) if weight.ndim == 2 else None
    if mesh is not None:  # JAX's explicit sharding: place the operands as FSDP / Megatron do
        y = _explicit.linear(input, weight, mesh)
        return y if bias is None else y + _explicit.like_trailing(bias, y, mesh)
    y = jnp.matmul(input, weight.T) if weight.ndim == 2 else jnp.matmul(input, weight)
    if bias is not None:
        y = y + bias
    return y


def bilinear(input1, input2, weight, bias=None):
    """``y_k = x1ᵀ W_k x2 + b_k`` with weight ``(out, in1, in2)``.

    Example:
        >>> F.bilinear(jnp.ones((2, 3)), jnp.ones((2, 4)), jnp.ones((5, 3, 4))).shape
        (2, 5)
    """
    if weight.ndim != 3 or input1.shape[-1] != weight.shape[1] or input2.shape[-1] != weight.shape[2]:
        raise ValueError(
            f"bilinear: weight of shape {tuple(weight.shape)} must be (out, in1, in2) with "
            f"in1={input1.shape[-1]}, in2={input2.shape[-1]}")
    y = jnp.einsum("...i,oij,...j->...o", input1, weight, input2)
    if bias is not None:
        y = y + bias
    return y
