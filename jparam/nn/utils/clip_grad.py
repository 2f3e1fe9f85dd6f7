"""Gradient clipping with torch's formulas (in place on ``p.grad``, usable inside jit)."""
from __future__ import annotations

import math
from typing import Iterable, Union

import jax
import jax.numpy as jnp

from jparam._module import Module
from jparam._parameter import Parameter

__all__ = ["clip_grad_norm_", "clip_grad_value_"]

_Params = Union[Parameter, Iterable[Parameter], Module]


def _params(parameters: _Params) -> list:
    if isinstance(parameters, Module):
        return list(parameters.parameters())
    if isinstance(parameters, Parameter):
        return [parameters]
    return list(parameters)


def clip_grad_norm_(parameters: _Params, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach=None) -> jax.Array:
    r"""Scale grads so their total norm is at most ``max_norm``; returns the pre-clip norm.

    .. math:: t = \lVert(\lVert g_i\rVert_p)_i\rVert_p,\quad
              g_i \leftarrow g_i \cdot \min\!\left(\frac{\text{max\_norm}}{t + 10^{-6}}, 1\right)

    torch's formula (note the ``1e-6``; ``optax.clip_by_global_norm`` has none).
    ``error_if_nonfinite`` raises only outside jit, where the norm is concrete.

    Example:
        >>> loss, model = jparam.backward(loss_fn, model, x, y)
        >>> total = nn.utils.clip_grad_norm_(model.parameters(), 0.01)
        >>> bool(total > 0.01)                   # the norm before clipping
        True
        >>> round(float(jnp.sqrt(sum(jnp.sum(p.grad ** 2) for p in model.parameters()))), 6)
        0.01
    """
    params = [p for p in _params(parameters) if p.grad is not None]
    if not params:
        return jnp.zeros((), jnp.float32)
    norm_type = float(norm_type)
    grads = [p.grad for p in params]
    if math.isinf(norm_type):
        norms = [jnp.max(jnp.abs(g)).astype(jnp.float32) for g in grads]
        total = jnp.max(jnp.stack(norms))
    else:
        norms = [jnp.linalg.norm(g.reshape(-1).astype(jnp.float32), norm_type) for g in grads]
        total = jnp.linalg.norm(jnp.stack(norms), norm_type)
    if error_if_nonfinite and not isinstance(total, jax.core.Tracer) and not bool(jnp.isfinite(total)):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it "
            "cannot be clipped. To disable this error and scale the gradients by the non-finite norm "
            "anyway, set `error_if_nonfinite=False`")
    coef = jnp.minimum(max_norm / (total + 1e-6), 1.0)
    for p in params:
        p.grad = (p.grad * coef).astype(p.grad.dtype)
    return total


def clip_grad_value_(parameters: _Params, clip_value: float, foreach=None) -> None:
    """Clamp every grad elementwise to ``[-clip_value, clip_value]`` in place (torch's)."""
    for p in _params(parameters):
        if p.grad is not None:
            p.grad = jnp.clip(p.grad, -clip_value, clip_value)
