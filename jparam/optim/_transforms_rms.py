"""torch.optim's RMSprop, Adagrad and Adadelta as optax transforms (see ``_transforms``).

Example:
    >>> from jparam.optim._transforms import rmsprop
    >>> tx = rmsprop(1e-2, alpha=0.99, centered=True, has_momentum=True, momentum=0.1)
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from jparam.optim import _transforms as _t

__all__ = ["rmsprop", "adagrad", "adadelta", "RMSpropState", "AdagradState", "AdadeltaState"]

_tmap, _f32, _unzip = _t._tmap, _t._f32, _t._unzip


# ---------------------------------------------------------------------------- RMSprop
class RMSpropState(NamedTuple):
    step: Any
    square_avg: Any
    momentum_buffer: Any  # None unless has_momentum
    grad_avg: Any  # None unless centered


def rmsprop(lr: Any = 1e-2, alpha: Any = 0.99, eps: Any = 1e-8, weight_decay: Any = 0.0,
            momentum: Any = 0.0, *, centered: bool = False, has_momentum: bool = False,
            maximize: bool = False) -> _t.TorchTransform:
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
    """

    def init(params):
        z = lambda: _tmap(jnp.zeros_like, params)  # noqa: E731
        return RMSpropState(jnp.zeros((), jnp.float32), z(), z() if has_momentum else None,
                            z() if centered else None)

    def update(grads, state, params):
        lr_, a, eps_, wd, mu = _f32(lr), _f32(alpha), _f32(eps), _f32(weight_decay), _f32(momentum)
        neg_lr, one_a, lerp = -lr_, 1 - a, _t._Lerp(1 - a)  # group-level scalars

        def one(g, p, sq, buf, ga):
            g = -g if maximize else g
            g = g + wd * p
            sq = _t._addcmul(sq * a, g, g, one_a)
            if centered:
                ga = lerp(ga, g)
                avg = jnp.sqrt(_t._addcmul(sq, ga, ga, -1))
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

        none = _t._none_like(params)
        buf = state.momentum_buffer if has_momentum else none
        ga = state.grad_avg if centered else none
        u, sq, buf, ga = _unzip(_tmap(one, grads, params, state.square_avg, buf, ga), 4)
        new = RMSpropState(state.step + 1, sq, buf if has_momentum else None, ga if centered else None)
        return u, _t._keep(new, state)

    to_t, from_t = _t._moments_torch(("square_avg", "momentum_buffer", "grad_avg"), RMSpropState, init)
    return _t.TorchTransform(init, update, to_t, from_t)


# ---------------------------------------------------------------------------- Adagrad
class AdagradState(NamedTuple):
    step: Any
    sum: Any


def adagrad(lr: Any = 1e-2, lr_decay: Any = 0.0, weight_decay: Any = 0.0,
            initial_accumulator_value: Any = 0.0, eps: Any = 1e-10, *,
            maximize: bool = False) -> _t.TorchTransform:
    r"""torch.optim.Adagrad: ``clr = lr / (1 + (t-1) lr_decay)``; ``s += g^2``;
    ``p -= clr g / (sqrt(s) + eps)`` (optax's ``adagrad`` puts eps inside the sqrt and has no
    ``lr_decay``). torch creates this state at construction, so ``to_torch_state`` returns it
    at step 0 too.

    Example:
        >>> tx = adagrad(1e-2, lr_decay=0.5, initial_accumulator_value=0.1)
    """

    def init(params):
        iav = _f32(initial_accumulator_value)
        return AdagradState(jnp.zeros((), jnp.float32),
                            _tmap(lambda p: jnp.full_like(p, iav), params))

    def update(grads, state, params):
        lr_, decay, wd, eps_ = _f32(lr), _f32(lr_decay), _f32(weight_decay), _f32(eps)
        t = state.step + 1
        coef = _t._per_leaf(-(lr_ / (1 + (t - 1) * decay)), grads)

        def one(g, p, s, neg_clr):
            g = -g if maximize else g
            g = g + wd * p
            s = _t._addcmul(s, g, g, 1)
            std = jnp.sqrt(s) + eps_
            return neg_clr * (g / std), s

        u, s = _unzip(_tmap(one, grads, params, state.sum, coef), 2)
        return u, _t._keep(AdagradState(t, s), state)

    def to_torch_state(state):
        return {"step": state.step, "sum": state.sum}

    def from_torch_state(d, params):
        if not d:
            return init(params)
        return AdagradState(_t._step_from(d), _t._tree_from(d, "sum", params))

    return _t.TorchTransform(init, update, to_torch_state, from_torch_state)


# ---------------------------------------------------------------------------- Adadelta
class AdadeltaState(NamedTuple):
    step: Any
    square_avg: Any
    acc_delta: Any


def adadelta(lr: Any = 1.0, rho: Any = 0.9, eps: Any = 1e-6, weight_decay: Any = 0.0, *,
             maximize: bool = False) -> _t.TorchTransform:
    r"""torch.optim.Adadelta: ``v = rho v + (1-rho) g^2``;
    ``d = sqrt(acc + eps)/sqrt(v + eps) g``; ``acc = rho acc + (1-rho) d^2``; ``p -= lr d``.

    Example:
        >>> tx = adadelta()  # lr=1.0, rho=0.9, eps=1e-6 as torch
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
            sq = _t._addcmul(sq * r, g, g, one_r)
            std = jnp.sqrt(sq + eps_)
            delta = jnp.sqrt(acc + eps_)
            delta = (delta / std) * g
            acc = _t._addcmul(acc * r, delta, delta, one_r)
            return neg_lr * delta, sq, acc

        u, sq, acc = _unzip(_tmap(one, grads, params, state.square_avg, state.acc_delta), 3)
        return u, _t._keep(AdadeltaState(state.step + 1, sq, acc), state)

    to_t, from_t = _t._moments_torch(("square_avg", "acc_delta"), AdadeltaState, init)
    return _t.TorchTransform(init, update, to_t, from_t)

