"""Adagrad: torch's update rule as an optax transform (:func:`adagrad`) and torch's
class (:class:`Adagrad`): torch.optim.Adagrad (lr_decay, initial_accumulator_value, eps outside the sqrt).

Example:
    >>> opt = optim.Adagrad(model.parameters(), lr=1e-2, lr_decay=1e-4)
    >>> loss, model = jparam.backward(loss_fn, model, x, y)
    >>> model, opt = opt.step(model)
    >>> sorted(opt.state_dict()["state"][0])  # torch's state names
    ['step', 'sum']
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax.numpy as jnp

from jparam.optim._transform import (
    TorchTransform, _addcmul, _f32, _keep, _per_leaf,
    _step_from, _tmap, _tree_from, _unzip)
from jparam.optim._txoptimizer import TxOptimizer, check_hparams

__all__ = ["Adagrad", "AdagradState", "adagrad"]


# ---------------------------------------------------------------------------- Adagrad
class AdagradState(NamedTuple):
    step: Any
    sum: Any


def adagrad(lr: Any = 1e-2, lr_decay: Any = 0.0, weight_decay: Any = 0.0,
            initial_accumulator_value: Any = 0.0, eps: Any = 1e-10, *,
            maximize: bool = False) -> TorchTransform:
    r"""torch.optim.Adagrad: ``clr = lr / (1 + (t-1) lr_decay)``; ``s += g^2``;
    ``p -= clr g / (sqrt(s) + eps)`` (optax's ``adagrad`` puts eps inside the sqrt and has no
    ``lr_decay``). torch creates this state at construction, so ``to_torch_state`` returns it
    at step 0 too.

    Example:
        >>> tx = adagrad(0.1, lr_decay=0.5)
        >>> p, g = [jnp.array([1.0, -2.0])], [jnp.array([0.5, -3.0])]
        >>> u, state = tx.update(g, tx.init(p), p)
        >>> print(np.asarray(u[0]).round(4))  # t = 1: clr = lr, s = g^2, so -lr sign(g)
        [-0.1  0.1]
    """

    def init(params):
        iav = _f32(initial_accumulator_value)
        return AdagradState(jnp.zeros((), jnp.float32),
                            _tmap(lambda p: jnp.full_like(p, iav), params))

    def update(grads, state, params):
        lr_, decay, wd, eps_ = _f32(lr), _f32(lr_decay), _f32(weight_decay), _f32(eps)
        t = state.step + 1
        coef = _per_leaf(-(lr_ / (1 + (t - 1) * decay)), grads)

        def one(g, p, s, neg_clr):
            g = -g if maximize else g
            g = g + wd * p
            s = _addcmul(s, g, g, 1)
            std = jnp.sqrt(s) + eps_
            return neg_clr * (g / std), s

        u, s = _unzip(_tmap(one, grads, params, state.sum, coef), 2)
        return u, _keep(AdagradState(t, s), state)

    def to_torch_state(state):
        return {"step": state.step, "sum": state.sum}

    def from_torch_state(d, params):
        if not d:
            return init(params)
        return AdagradState(_step_from(d), _tree_from(d, "sum", params))

    return TorchTransform(init, update, to_torch_state, from_torch_state, ("step", "sum"))


class Adagrad(TxOptimizer):
    """torch.optim.Adagrad. State (created at construction, as torch): ``step``, ``sum``.

    Example:
        >>> opt = optim.Adagrad(model.parameters(), lr=1e-2, initial_accumulator_value=0.1)
        >>> _, stepped = jparam.backward(loss_fn, model, x, y)
        >>> g = np.asarray(stepped.weight.grad)
        >>> stepped, opt = opt.step(stepped)
        >>> np.allclose(opt.state_dict()["state"][0]["sum"], 0.1 + g ** 2)  # s = 0.1 + g^2
        True
    """

    _static_keys = ("maximize",)

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, foreach: Optional[bool] = None,
                 *, maximize: bool = False, differentiable: bool = False, fused: Optional[bool] = None) -> None:
        check_hparams(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                      initial_accumulator_value=initial_accumulator_value, eps=eps)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable, fused=fused))

    def _make(self, group, struct):
        return adagrad(group["lr"], group["lr_decay"], group["weight_decay"],
                         group["initial_accumulator_value"], group["eps"], maximize=bool(group["maximize"]))
