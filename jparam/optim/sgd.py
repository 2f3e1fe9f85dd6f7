"""SGD with torch's momentum, dampening, Nesterov, weight decay and maximize."""
from __future__ import annotations

from typing import Any, Dict, NamedTuple

import jax.numpy as jnp
import optax

from jparam.optim.optimizer import Optimizer

__all__ = ["SGD"]


class SGDState(NamedTuple):
    momentum_buffer: Any  # zeros until the first step
    started: Any  # bool scalar: has the buffer been initialised (torch's first-step b = g)


class SGDBuffer(NamedTuple):
    momentum_buffer: Any  # with dampening == 0, b_1 = mu*0 + g = g: no flag needed


def sgd_transform(lr, momentum, dampening, weight_decay, *, has_momentum: bool, nesterov: bool,
                  maximize: bool, has_dampening: bool = True,
                  has_weight_decay: bool = True,
                  momentum_active: bool = True) -> optax.GradientTransformation:
    r"""torch.optim.SGD as an optax transformation (numeric arguments may be traced).

    .. math::
        g \leftarrow \pm g + \lambda p;\quad
        b_1 = g,\; b_t = \mu b_{t-1} + (1-\tau) g;\quad
        d = g + \mu b_t \text{ (nesterov) else } b_t;\quad p \leftarrow p - \eta d
    """

    def init(p):
        if not has_momentum:
            return optax.EmptyState()
        if not has_dampening:
            return SGDBuffer(jnp.zeros_like(p))
        return SGDState(jnp.zeros_like(p), jnp.zeros((), bool))

    # group-level scalars, computed once per group rather than once per parameter
    neg_lr = -lr
    damp = 1 - dampening if has_dampening else None

    def update(g, state, p):
        if maximize:
            g = -g
        if has_weight_decay:
            g = g + weight_decay * p
        if has_momentum and momentum_active:
            # (a host edit setting momentum to 0 restructures to momentum_active=False: torch
            # then ignores but keeps the buffer; no per-element select is needed either way)
            old = state.momentum_buffer
            if has_dampening:
                buf = jnp.where(state.started, momentum * old + damp * g, g)
            else:
                buf = momentum * old + g  # b_1 = g, as torch's first-step clone
            buf = buf.astype(old.dtype)
            g = g + momentum * buf if nesterov else buf
            state = (SGDState(buf, jnp.ones((), bool)) if has_dampening else SGDBuffer(buf))
        return neg_lr * g, state

    return optax.GradientTransformation(init, update)


class SGD(Optimizer):
    """torch.optim.SGD: same signature, defaults and numbers.

    Example:
        >>> opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> model, opt = opt.step(model)
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
        # static: the state's structure depends on these. Decided from the initial values and
        # widened (never narrowed, torch keeps its buffers) when a host-side edit turns one on.
        old = getattr(self, "_jp_struct_hint", (False, False, False, False))
        wd = group["weight_decay"] != 0 or (old[2] if len(old) > 2 else False)
        return (group["momentum"] != 0 or old[0], group["dampening"] != 0 or old[1], wd,
                group["momentum"] != 0)

    def _restructure(self, pg) -> None:
        g = next((i for i, q in enumerate(self._groups or []) if q is pg), None)
        if g is None:
            return
        self._jp_struct_hint = self._structs[g]
        try:
            super()._restructure(pg)
        finally:
            del self._jp_struct_hint

    def _convert_state(self, group, old, new, state, like):
        fresh = self._transform(group, new).init(like)
        if old[:2] == new[:2]:
            return state  # only weight decay switched on: the state is unchanged
        if not old[0]:
            return fresh  # momentum switched on: a new buffer (torch's first step clones g)
        buf = state.momentum_buffer
        if new[1] and not old[1]:  # dampening switched on: keep the buffer, mark it started
            return SGDState(buf, jnp.any(buf != 0))
        return state

    def _transform(self, group, struct) -> optax.GradientTransformation:
        return sgd_transform(group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
                             has_momentum=struct[0], nesterov=group["nesterov"], maximize=group["maximize"],
                             has_dampening=struct[1], has_weight_decay=struct[2],
                             momentum_active=struct[3])

    def _state_to_torch(self, group, struct, state) -> Dict[str, Any]:
        if not struct[0]:
            return {}  # torch keeps no state without momentum
        if isinstance(state, SGDState) and not bool(state.started):
            return {}
        if isinstance(state, SGDBuffer) and not bool(jnp.any(state.momentum_buffer != 0)):
            return {}  # not stepped yet (an all-zero buffer acts exactly like no buffer here)
        return {"momentum_buffer": state.momentum_buffer}

    def _state_from_torch(self, group, struct, entry, like):
        if not struct[0] or not entry or entry.get("momentum_buffer") is None:
            return like
        buf = jnp.asarray(entry["momentum_buffer"], like.momentum_buffer.dtype)
        return SGDState(buf, jnp.ones((), bool)) if isinstance(like, SGDState) else SGDBuffer(buf)
