"""RMSprop: torch's update rule as an optax transform (:func:`rmsprop`) and torch's
class (:class:`RMSprop`): torch.optim.RMSprop (eps outside the sqrt, centered, momentum applied before lr).

Example:
    >>> opt = optim.RMSprop(model.parameters(), lr=1e-2, momentum=0.9, centered=True)
    >>> loss, model = jparam.backward(loss_fn, model, x, y)
    >>> model, opt = opt.step(model)
    >>> sorted(opt.state_dict()["state"][0])  # torch's state names
    ['grad_avg', 'momentum_buffer', 'square_avg', 'step']
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax.numpy as jnp

from jparam.optim._transform import (
    TorchTransform, _addcmul, _f32, _keep, _Lerp, _moments_torch, _none_like, _tmap, _unzip)
from jparam.optim._txoptimizer import TxOptimizer, check_hparams

__all__ = ["RMSprop", "RMSpropState", "rmsprop"]


# ---------------------------------------------------------------------------- RMSprop
class RMSpropState(NamedTuple):
    step: Any
    square_avg: Any
    momentum_buffer: Any  # None unless has_momentum
    grad_avg: Any  # None unless centered


def rmsprop(lr: Any = 1e-2, alpha: Any = 0.99, eps: Any = 1e-8, weight_decay: Any = 0.0,
            momentum: Any = 0.0, *, centered: bool = False, has_momentum: bool = False,
            maximize: bool = False) -> TorchTransform:
    r"""torch.optim.RMSprop.

    ``v = alpha v + (1-alpha) g^2``; ``avg = sqrt(v - gbar^2)`` (centered, ``gbar =
    lerp(gbar, g, 1-alpha)``) else ``sqrt(v)``, then ``+ eps`` (outside the sqrt: optax's
    default puts it inside); with a momentum buffer ``b = mu b + g/avg; p -= lr b`` (lr
    applied AFTER the buffer, as torch; optax's ``rmsprop`` traces the lr-scaled update,
    which differs once lr changes), else ``p -= lr g/avg``. ``has_momentum`` (static) is
    torch's ``momentum > 0`` when the state is created; while ``momentum`` is 0 the buffer
    is left as it is, like torch.

    Example:
        >>> tx = rmsprop(1e-2, momentum=0.9, has_momentum=True)
        >>> p, g = [jnp.array([1.0, -2.0])], [jnp.array([0.5, -3.0])]
        >>> u, state = tx.update(g, tx.init(p), p)
        >>> print(np.asarray(u[0]).round(4))  # first step: b = g / sqrt((1-alpha) g^2) = 10 sign(g)
        [-0.1  0.1]
    """

    def init(params):
        z = lambda: _tmap(jnp.zeros_like, params)  # noqa: E731
        return RMSpropState(jnp.zeros((), jnp.float32), z(), z() if has_momentum else None,
                            z() if centered else None)

    def update(grads, state, params):
        lr_, a, eps_, wd, mu = _f32(lr), _f32(alpha), _f32(eps), _f32(weight_decay), _f32(momentum)
        neg_lr, one_a, lerp = -lr_, 1 - a, _Lerp(1 - a)  # group-level scalars

        def one(g, p, sq, buf, ga):
            g = -g if maximize else g
            g = g + wd * p
            sq = _addcmul(sq * a, g, g, one_a)
            if centered:
                ga = lerp(ga, g)
                avg = jnp.sqrt(_addcmul(sq, ga, ga, -1))
            else:
                avg = jnp.sqrt(sq)
            avg = avg + eps_
            if has_momentum:
                new = buf * mu + g / avg
                u = jnp.where(mu > 0, neg_lr * new, neg_lr * (g / avg))
                buf = jnp.where(mu > 0, new, buf)
            else:
                u = neg_lr * (g / avg)
            return u, sq, buf, ga

        none = _none_like(params)
        buf = state.momentum_buffer if has_momentum else none
        ga = state.grad_avg if centered else none
        u, sq, buf, ga = _unzip(_tmap(one, grads, params, state.square_avg, buf, ga), 4)
        new = RMSpropState(state.step + 1, sq, buf if has_momentum else None, ga if centered else None)
        return u, _keep(new, state)

    to_t, from_t = _moments_torch(("square_avg", "momentum_buffer", "grad_avg"), RMSpropState, init)
    keys = ("step", "square_avg") + (("momentum_buffer",) if has_momentum else ()) + (("grad_avg",) if centered else ())
    return TorchTransform(init, update, to_t, from_t, keys)


class RMSprop(TxOptimizer):
    """torch.optim.RMSprop. State: ``step``, ``square_avg`` (+ ``momentum_buffer`` when the group
    is created with ``momentum > 0``, + ``grad_avg`` when ``centered``).

    Example:
        >>> opt = optim.RMSprop(model.parameters(), lr=1e-2, alpha=0.99)
        >>> _, stepped = jparam.backward(loss_fn, model, x, y)
        >>> stepped, opt = opt.step(stepped)
        >>> moved = np.abs(np.asarray(stepped.weight - model.weight))
        >>> print(moved.round(4).min(), moved.round(4).max())  # lr g / sqrt((1-alpha) g^2) = 10 lr
        0.1 0.1
    """

    _static_keys = ("centered", "maximize")

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False, foreach: Optional[bool] = None, maximize: bool = False,
                 differentiable: bool = False) -> None:
        check_hparams(lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                                      weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable))

    def _group_struct(self, group) -> tuple:
        return (group["momentum"] > 0,)

    def _make(self, group, struct):
        return rmsprop(group["lr"], group["alpha"], group["eps"], group["weight_decay"], group["momentum"],
                         centered=bool(group["centered"]), has_momentum=struct[0],
                         maximize=bool(group["maximize"]))
