"""Adadelta: torch's update rule as an optax transform (:func:`adadelta`) and torch's
class (:class:`Adadelta`): torch.optim.Adadelta (lr default 1.0).

Example:
    >>> opt = optim.Adadelta(model.parameters(), rho=0.9)
    >>> loss, model = jparam.backward(loss_fn, model, x, y)
    >>> model, opt = opt.step(model)
    >>> sorted(opt.state_dict()["state"][0])  # torch's state names
    ['acc_delta', 'square_avg', 'step']
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax.numpy as jnp

from jparam.optim._transform import (
    TorchTransform, _addcmul, _f32, _keep, _moments_torch, _tmap, _unzip)
from jparam.optim._txoptimizer import TxOptimizer, check_hparams

__all__ = ["Adadelta", "AdadeltaState", "adadelta"]


# ---------------------------------------------------------------------------- Adadelta
class AdadeltaState(NamedTuple):
    step: Any
    square_avg: Any
    acc_delta: Any


def adadelta(lr: Any = 1.0, rho: Any = 0.9, eps: Any = 1e-6, weight_decay: Any = 0.0, *,
             maximize: bool = False) -> TorchTransform:
    r"""torch.optim.Adadelta: ``v = rho v + (1-rho) g^2``;
    ``d = sqrt(acc + eps)/sqrt(v + eps) g``; ``acc = rho acc + (1-rho) d^2``; ``p -= lr d``.

    Example:
        >>> tx = adadelta()  # lr=1.0, rho=0.9, eps=1e-6 as torch
        >>> p, g = [jnp.array([1.0, -2.0])], [jnp.array([0.5, -3.0])]
        >>> u, state = tx.update(g, tx.init(p), p)
        >>> print(np.asarray(u[0]).round(4))  # first step: -sqrt(eps / (1-rho)) sign(g) when g^2 >> eps
        [-0.0032  0.0032]
    """

    def init(params):
        return AdadeltaState(jnp.zeros((), jnp.float32), _tmap(jnp.zeros_like, params),
                             _tmap(jnp.zeros_like, params))

    def update(grads, state, params):
        lr_, r, eps_, wd = _f32(lr), _f32(rho), _f32(eps), _f32(weight_decay)
        neg_lr, one_r = -lr_, 1 - r  # group-level scalars

        def one(g, p, sq, acc):
            g = -g if maximize else g
            g = g + wd * p
            sq = _addcmul(sq * r, g, g, one_r)
            std = jnp.sqrt(sq + eps_)
            delta = jnp.sqrt(acc + eps_)
            delta = (delta / std) * g
            acc = _addcmul(acc * r, delta, delta, one_r)
            return neg_lr * delta, sq, acc

        u, sq, acc = _unzip(_tmap(one, grads, params, state.square_avg, state.acc_delta), 3)
        return u, _keep(AdadeltaState(state.step + 1, sq, acc), state)

    to_t, from_t = _moments_torch(("square_avg", "acc_delta"), AdadeltaState, init)
    return TorchTransform(init, update, to_t, from_t, ("step", "square_avg", "acc_delta"))


class Adadelta(TxOptimizer):
    """torch.optim.Adadelta. State: ``step``, ``square_avg``, ``acc_delta``.

    Example:
        >>> opt = optim.Adadelta(model.parameters(), lr=1.0, rho=0.9, eps=1e-6)
        >>> _, stepped = jparam.backward(loss_fn, model, x, y)
        >>> stepped, opt = opt.step(stepped)
        >>> moved = np.abs(np.asarray(stepped.weight - model.weight))
        >>> print(moved.round(4).min(), moved.round(4).max())  # lr sqrt(eps / (1-rho)), see :func:`adadelta`
        0.0032 0.0032
    """

    _static_keys = ("maximize",)

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, foreach: Optional[bool] = None, *, capturable: bool = False,
                 maximize: bool = False, differentiable: bool = False) -> None:
        check_hparams(lr=lr)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        check_hparams(eps=eps, weight_decay=weight_decay)
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                                      capturable=capturable, foreach=foreach, differentiable=differentiable))

    def _make(self, group, struct):
        return adadelta(group["lr"], group["rho"], group["eps"], group["weight_decay"],
                          maximize=bool(group["maximize"]))
