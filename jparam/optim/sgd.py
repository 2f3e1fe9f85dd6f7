"""SGD: torch's update rule as an optax transform (:func:`sgd`) and torch's class (:class:`SGD`).

Momentum, dampening, Nesterov, weight decay and maximize, step for step equal to torch.

Example:
    >>> opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> loss, model = jparam.backward(loss_fn, model, x, y)
    >>> model, opt = opt.step(model)
    >>> sorted(opt.state_dict()["state"][0])  # torch's state names
    ['momentum_buffer']
"""
from __future__ import annotations

from typing import Any, Dict, NamedTuple

import jax.numpy as jnp
import numpy as np

from jparam.optim._transform import (
    TorchTransform, _f32, _keep, _none_like, _per_leaf, _tmap, _tree_from, _unzip)
from jparam.optim._txoptimizer import TxOptimizer

__all__ = ["SGD", "SGDState", "sgd"]


# ---------------------------------------------------------------------------- SGD
class SGDState(NamedTuple):
    momentum_buffer: Any  # zeros until the first step (None when there is no buffer)
    started: Any  # bool scalar: torch's first step sets the buffer to g (b = g)


def sgd(lr: Any = 1e-3, momentum: Any = 0.0, dampening: Any = 0.0, weight_decay: Any = 0.0, *,
        has_momentum: bool = False, nesterov: bool = False, maximize: bool = False,
        has_dampening: bool = True, has_weight_decay: bool = True,
        momentum_active: bool = True) -> TorchTransform:
    r"""torch.optim.SGD.

    ``g = -grad if maximize``; ``g += wd p``; first step ``b = g``, later
    ``b = mu b + (1 - dampening) g``; ``g = g + mu b`` (nesterov) else ``b``; ``p -= lr g``.
    Static structure (decided from Python values, so the compiled update carries no
    per-element selects for them): ``has_momentum`` is torch's ``momentum != 0`` at
    construction (a buffer exists); ``momentum_active`` whether momentum is non-zero now
    (torch keeps but ignores the buffer at 0); ``has_dampening`` / ``has_weight_decay``
    whether those terms are present. Without dampening the buffer starts at zero, so
    ``mu * 0 + g = g`` is torch's first step without a select.

    Example:
        >>> tx = sgd(0.1, 0.9, has_momentum=True, nesterov=True)
        >>> p, g = [jnp.array([1.0, -2.0])], [jnp.array([0.5, -3.0])]
        >>> u, state = tx.update(g, tx.init(p), p)
        >>> print(np.asarray(u[0]).round(4))  # first step: b = g, then -lr (g + mu b) = -0.19 g
        [-0.095  0.57 ]
    """

    def init(params):
        if not has_momentum:
            return SGDState(None, jnp.zeros((), bool))
        return SGDState(_tmap(jnp.zeros_like, params), jnp.zeros((), bool))

    # group-level scalars, computed once per transform (the optimizer builds one per group
    # per step and calls ``update`` once per parameter)
    neg_lr, mu, wd = -_f32(lr), _f32(momentum), _f32(weight_decay)
    one_minus_damp = 1 - _f32(dampening) if has_dampening else None
    use_buffer = has_momentum and momentum_active

    def update(grads, state, params):
        def one(g, p, b, started):
            g = -g if maximize else g
            if has_weight_decay:
                g = g + wd * p
            if use_buffer:
                if has_dampening:
                    new = jnp.where(started, b * mu + one_minus_damp * g, g)
                else:
                    new = b * mu + g
                b = new.astype(b.dtype)
                g = g + mu * b if nesterov else b
            return neg_lr * g, b

        buf = state.momentum_buffer if has_momentum else _none_like(params)
        each = _per_leaf(state.started, grads) if use_buffer and has_dampening else _none_like(params)
        u, b = _unzip(_tmap(one, grads, params, buf, each), 2)
        # one flag for the whole group (the optimizer shares a 0-d scalar field among the
        # group's parameters instead of splitting a vector of equal entries)
        # (computed from the old flag, not a constant: an input the step never reads is
        # pruned from the compiled program, so a donated flag would not be donated)
        started = jnp.logical_or(state.started, True) if use_buffer else state.started
        return u, _keep(SGDState(b if has_momentum else None, started), state)

    def to_torch_state(state):
        if not has_momentum or not bool(np.asarray(state.started)):
            return {}
        return {"momentum_buffer": state.momentum_buffer}

    def from_torch_state(d, params):
        if not has_momentum or not d or d.get("momentum_buffer") is None:
            return init(params)
        return SGDState(_tree_from(d, "momentum_buffer", params), jnp.ones((), bool))

    return TorchTransform(init, update, to_torch_state, from_torch_state, ("momentum_buffer",))


class SGD(TxOptimizer):
    """torch.optim.SGD: same signature, defaults and numbers.

    Example:
        >>> opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> _, stepped = jparam.backward(loss_fn, model, x, y)
        >>> g = np.asarray(stepped.weight.grad)
        >>> stepped, opt = opt.step(stepped)
        >>> np.allclose(stepped.weight, model.weight - 0.1 * g)  # first step: b = g, p -= lr b
        True
    """

    _static_keys = ("nesterov", "maximize")

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: Any = None, differentiable: bool = False, fused: Any = None) -> None:
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                                      foreach=foreach, differentiable=differentiable, fused=fused))

    def _group_struct(self, group: Dict[str, Any]) -> tuple:
        # (has buffer, has dampening, has weight decay, momentum non-zero now): static, so the
        # compiled update has no selects for them (see _transforms.sgd)
        return (group["momentum"] != 0, group["dampening"] != 0, group["weight_decay"] != 0,
                group["momentum"] != 0)

    def _next_struct(self, group: Dict[str, Any], old: tuple) -> tuple:
        # a host-side edit widens the first three, never narrows them (torch keeps its buffer)
        new = self._group_struct(group)
        return tuple(a or b for a, b in zip(old[:3], new[:3])) + new[3:]

    def _convert_state(self, group, old, new, state, init):
        if new[0] and not old[0]:
            return init()  # momentum switched on: a new buffer
        return state  # the buffer and its `started` flag carry over unchanged

    def _make(self, group, struct) -> TorchTransform:
        return sgd(group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
                     has_momentum=struct[0], nesterov=group["nesterov"], maximize=group["maximize"],
                     has_dampening=struct[1], has_weight_decay=struct[2], momentum_active=struct[3])
