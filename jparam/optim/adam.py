"""The Adam family: torch's update rules as optax transforms (:func:`adam`, :func:`adamw`,
:func:`adamax`, :func:`nadam`, :func:`radam`) and torch's classes (Adam, AdamW, Adamax, NAdam,
RAdam), with torch's signatures, defaults and numbers.

Example:
    >>> opt = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    >>> loss, model = jparam.backward(loss_fn, model, x, y)
    >>> model, opt = opt.step(model)
    >>> sorted(opt.state_dict()["state"][0])  # torch's state names
    ['exp_avg', 'exp_avg_sq', 'step']
    >>> model, opt = opt.step(model)
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jparam.optim._transform import (
    TorchTransform, _addcmul, _bias_correction, _f32, _keep, _Lerp, _moments_torch, _none_like, _started,
    _per_leaf, _step_from, _tmap, _to_array, _tree_from, _unzip)
from jparam.optim._txoptimizer import TxOptimizer, check_hparams  # noqa: F401

__all__ = ["Adam", "AdamW", "Adamax", "NAdam", "RAdam", "AdamState", "AdamaxState", "NAdamState",
           "RAdamState", "adam", "adamw", "adamax", "nadam", "radam"]


def _decay(g, p, wd, decay, *, maximize: bool, decoupled: bool):
    """torch's first lines of every Adam-family update: ``g = -g`` when maximizing, then either
    decoupled decay ``p1 = p (1 - lr wd)`` or L2 ``g = g + wd p`` (``p1 = p``). Returns ``(g, p1)``."""
    g = -g if maximize else g
    if decoupled:
        return g, p * decay
    return g + wd * p, p


# ---------------------------------------------------------------------------- Adam / AdamW
class AdamState(NamedTuple):
    step: Any
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any  # None unless amsgrad


def adam(lr: Any = 1e-3, betas: Sequence[Any] = (0.9, 0.999), eps: Any = 1e-8,
         weight_decay: Any = 0.0, *, amsgrad: bool = False, maximize: bool = False,
         decoupled_weight_decay: bool = False, beta1_above_half: Optional[bool] = None) -> TorchTransform:
    r"""torch.optim.Adam (``decoupled_weight_decay=True``: torch.optim.AdamW).

    ``g += wd p`` (L2; decoupled: ``p *= 1 - lr wd`` first); ``m = lerp(m, g, 1-b1)``;
    ``v = b2 v + (1-b2) g^2``; amsgrad: ``vmax = max(vmax, v)`` on the RAW ``v`` (optax's
    ``amsgrad`` maxes the bias-corrected one); ``p -= lr/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps)``.

    Example:
        >>> tx = adam(0.1, (0.9, 0.999), amsgrad=True)
        >>> p, g = [jnp.array([1.0, -2.0])], [jnp.array([0.5, -3.0])]
        >>> u, state = tx.update(g, tx.init(p), p)
        >>> print(np.asarray(u[0]).round(4))  # first step: m/(1-b1) = g, v/(1-b2) = g^2, so the update is -lr sign(g)
        [-0.1  0.1]
    """

    def init(params):
        z = lambda: _tmap(jnp.zeros_like, params)  # noqa: E731
        return AdamState(jnp.zeros((), jnp.float32), z(), z(), z() if amsgrad else None)

    def update(grads, state, params):
        lr_, b1, b2, eps_, wd = _f32(lr), _f32(betas[0]), _f32(betas[1]), _f32(eps), _f32(weight_decay)
        t = state.step + 1
        # a reciprocal, once per group: XLA's CPU backend turns ``x / c`` (c a per-parameter
        # scalar) into ``x * (1/c)`` anyway, with one tiny kernel per parameter for ``1/c``
        coef = _per_leaf((-(lr_ / _bias_correction(b1, t)), 1 / jnp.sqrt(_bias_correction(b2, t))), grads)
        lerp, one_b2, decay = _Lerp(1 - b1, beta1_above_half), 1 - b2, 1 - lr_ * wd  # group-level scalars

        def one(g, p, m, v, vmax, c):
            neg_step_size, inv_bc2_sqrt = c
            g, p1 = _decay(g, p, wd, decay, maximize=maximize, decoupled=decoupled_weight_decay)
            m = lerp(m, g)
            v = _addcmul(v * b2, g, g, one_b2)
            if amsgrad:
                vmax = jnp.maximum(vmax, v)
                denom = jnp.sqrt(vmax) * inv_bc2_sqrt + eps_
            else:
                denom = jnp.sqrt(v) * inv_bc2_sqrt + eps_
            step = neg_step_size * (m / denom)
            u = (p1 + step) - p if decoupled_weight_decay else step
            return u, m, v, vmax

        vmax = state.max_exp_avg_sq if amsgrad else _none_like(params)
        u, m, v, vmax = _unzip(_tmap(one, grads, params, state.exp_avg, state.exp_avg_sq, vmax, coef), 4)
        return u, _keep(AdamState(t, m, v, vmax if amsgrad else None), state)

    to_t, from_t = _moments_torch(("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), AdamState, init)
    keys = ("step", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())
    return TorchTransform(init, update, to_t, from_t, keys)


def adamw(lr: Any = 1e-3, betas: Sequence[Any] = (0.9, 0.999), eps: Any = 1e-8,
          weight_decay: Any = 1e-2, *, amsgrad: bool = False, maximize: bool = False,
          beta1_above_half: Optional[bool] = None) -> TorchTransform:
    r"""torch.optim.AdamW: ``p *= 1 - lr wd``, then the Adam update (torch's default wd 1e-2).

    Example:
        >>> tx = adamw(0.1, weight_decay=0.5)
        >>> p, g = [jnp.array([1.0, -2.0])], [jnp.array([0.5, -3.0])]
        >>> u, state = tx.update(g, tx.init(p), p)
        >>> print(np.asarray(u[0]).round(4))  # -lr*wd*p (p *= 1 - 0.05) plus Adam's first step -lr sign(g)
        [-0.15  0.2 ]
    """
    return adam(lr, betas, eps, weight_decay, amsgrad=amsgrad, maximize=maximize,
                decoupled_weight_decay=True, beta1_above_half=beta1_above_half)


# ---------------------------------------------------------------------------- Adamax
class AdamaxState(NamedTuple):
    step: Any
    exp_avg: Any
    exp_inf: Any


def adamax(lr: Any = 2e-3, betas: Sequence[Any] = (0.9, 0.999), eps: Any = 1e-8,
           weight_decay: Any = 0.0, *, maximize: bool = False,
           beta1_above_half: Optional[bool] = None) -> TorchTransform:
    r"""torch.optim.Adamax: ``m = lerp(m, g, 1-b1)``; ``u = max(b2 u, |g| + eps)``;
    ``p -= lr/(1-b1^t) m/u`` (eps is added to ``|g|``, not to the denominator as in optax).

    Example:
        >>> tx = adamax(0.1)
        >>> p, g = [jnp.array([1.0, -2.0])], [jnp.array([0.5, -3.0])]
        >>> u, state = tx.update(g, tx.init(p), p)
        >>> print(np.asarray(u[0]).round(4))  # first step: lr/(1-b1) * (1-b1) g / max(0, |g| + eps) = lr sign(g)
        [-0.1  0.1]
    """

    def init(params):
        return AdamaxState(jnp.zeros((), jnp.float32), _tmap(jnp.zeros_like, params),
                           _tmap(jnp.zeros_like, params))

    def update(grads, state, params):
        lr_, b1, b2, eps_, wd = _f32(lr), _f32(betas[0]), _f32(betas[1]), _f32(eps), _f32(weight_decay)
        t = state.step + 1
        coef = _per_leaf(-(lr_ / _bias_correction(b1, t)), grads)
        lerp = _Lerp(1 - b1, beta1_above_half)

        def one(g, p, m, ui, neg_clr):
            g = -g if maximize else g
            g = g + wd * p
            m = lerp(m, g)
            ui = jnp.maximum(ui * b2, jnp.abs(g) + eps_)
            return neg_clr * (m / ui), m, ui

        u, m, ui = _unzip(_tmap(one, grads, params, state.exp_avg, state.exp_inf, coef), 3)
        return u, _keep(AdamaxState(t, m, ui), state)

    to_t, from_t = _moments_torch(("exp_avg", "exp_inf"), AdamaxState, init)
    return TorchTransform(init, update, to_t, from_t, ("step", "exp_avg", "exp_inf"))


# ---------------------------------------------------------------------------- NAdam
class NAdamState(NamedTuple):
    step: Any
    mu_product: Any  # float32 scalar, starts at 1
    exp_avg: Any
    exp_avg_sq: Any


def nadam(lr: Any = 2e-3, betas: Sequence[Any] = (0.9, 0.999), eps: Any = 1e-8,
          weight_decay: Any = 0.0, momentum_decay: Any = 4e-3, *, maximize: bool = False,
          decoupled_weight_decay: bool = False, beta1_above_half: Optional[bool] = None) -> TorchTransform:
    r"""torch.optim.NAdam with torch's momentum schedule and ``mu_product``.

    ``mu_t = b1 (1 - 0.5 * 0.96^(t psi))``; ``mu_product *= mu_t``;
    ``p -= lr (1-mu_t)/(1-mu_product) g/d + lr mu_{t+1}/(1 - mu_product mu_{t+1}) m/d`` with
    ``d = sqrt(v/(1-b2^t)) + eps`` (two ``addcdiv`` in torch's order).

    Example:
        >>> tx = nadam(0.1, momentum_decay=4e-3)
        >>> p, g = [jnp.array([1.0, -2.0])], [jnp.array([0.5, -3.0])]
        >>> u, state = tx.update(g, tx.init(p), p)
        >>> print(np.asarray(u[0]).round(4))  # first step: lr sign(g) (1 + (1-b1) mu_2 / (1 - mu_1 mu_2)), mu_t ~ 0.45
        [-0.1056  0.1056]
    """

    def init(params):
        return NAdamState(jnp.zeros((), jnp.float32), jnp.ones((), jnp.float32),
                          _tmap(jnp.zeros_like, params), _tmap(jnp.zeros_like, params))

    def update(grads, state, params):
        lr_, b1, b2, eps_ = _f32(lr), _f32(betas[0]), _f32(betas[1]), _f32(eps)
        wd, psi = _f32(weight_decay), _f32(momentum_decay)
        t = state.step + 1
        bc2 = _bias_correction(b2, t)
        mu = b1 * (1.0 - 0.5 * jnp.power(jnp.float32(0.96), t * psi))
        mu_next = b1 * (1.0 - 0.5 * jnp.power(jnp.float32(0.96), (t + 1) * psi))
        mu_product = state.mu_product * mu
        mu_product_next = mu_product * mu_next
        c_grad = -lr_ * (1.0 - mu) / (1.0 - mu_product)
        c_avg = (-lr_ * mu_next) / (1.0 - mu_product_next)
        coef = _per_leaf((1 / bc2, c_grad, c_avg), grads)
        lerp, one_b2, decay = _Lerp(1 - b1, beta1_above_half), 1 - b2, 1 - lr_ * wd  # group-level scalars

        def one(g, p, m, v, c):
            inv_bc2, c_grad, c_avg = c
            g, p1 = _decay(g, p, wd, decay, maximize=maximize, decoupled=decoupled_weight_decay)
            m = lerp(m, g)
            v = _addcmul(v * b2, g, g, one_b2)
            denom = jnp.sqrt(v * inv_bc2) + eps_
            p1 = p1 + c_grad * (g / denom)
            p1 = p1 + c_avg * (m / denom)
            return p1 - p, m, v

        u, m, v = _unzip(_tmap(one, grads, params, state.exp_avg, state.exp_avg_sq, coef), 3)
        return u, _keep(NAdamState(t, mu_product, m, v), state)

    def to_torch_state(state):
        if not _started(state.step):
            return {}
        return {"step": state.step, "mu_product": state.mu_product, "exp_avg": state.exp_avg,
                "exp_avg_sq": state.exp_avg_sq}

    def from_torch_state(d, params):
        if not d:
            return init(params)
        if "mu_product" not in d:
            raise KeyError(f"torch NAdam state has no 'mu_product' (keys: {sorted(d)})")
        mp = jnp.asarray(float(np.asarray(_to_array(d["mu_product"], "mu_product"))), jnp.float32)
        return NAdamState(_step_from(d), mp, _tree_from(d, "exp_avg", params),
                          _tree_from(d, "exp_avg_sq", params))

    return TorchTransform(init, update, to_torch_state, from_torch_state,
                          ("step", "mu_product", "exp_avg", "exp_avg_sq"))


# ---------------------------------------------------------------------------- RAdam
class RAdamState(NamedTuple):
    step: Any
    exp_avg: Any
    exp_avg_sq: Any


def radam(lr: Any = 1e-3, betas: Sequence[Any] = (0.9, 0.999), eps: Any = 1e-8,
          weight_decay: Any = 0.0, *, maximize: bool = False,
          decoupled_weight_decay: bool = False, beta1_above_half: Optional[bool] = None) -> TorchTransform:
    r"""torch.optim.RAdam: rectified Adam with torch's threshold ``rho_t > 5``.

    ``rho_inf = 2/(1-b2) - 1``; ``rho_t = rho_inf - 2 t b2^t/(1-b2^t)``; if ``rho_t > 5``:
    ``p -= m/(1-b1^t) lr sqrt(1-b2^t)/(sqrt(v)+eps) r_t`` with torch's rectifier ``r_t``,
    else ``p -= m/(1-b1^t) lr`` (a ``jnp.where``, so a traced ``betas`` works).

    Example:
        >>> tx = radam(0.1)
        >>> p, g = [jnp.array([1.0, -2.0])], [jnp.array([0.5, -3.0])]
        >>> u, state = tx.update(g, tx.init(p), p)
        >>> print(np.asarray(u[0]).round(4))  # rho_1 = 1 <= 5: the un-adapted step -lr m/(1-b1) = -lr g
        [-0.05  0.3 ]
    """

    def init(params):
        return RAdamState(jnp.zeros((), jnp.float32), _tmap(jnp.zeros_like, params),
                          _tmap(jnp.zeros_like, params))

    def update(grads, state, params):
        lr_, b1, b2, eps_, wd = _f32(lr), _f32(betas[0]), _f32(betas[1]), _f32(eps), _f32(weight_decay)
        t = state.step + 1
        bc1 = _bias_correction(b1, t)
        bc2 = _bias_correction(b2, t)
        rho_inf = 2 / (1 - b2) - 1
        rho_t = rho_inf - 2 * t * jnp.exp(t * jnp.log(b2)) / bc2
        rectify = rho_t > 5.0
        rho_safe = jnp.where(rectify, rho_t, 10.0)  # keeps the unused branch finite
        rect = jnp.sqrt((rho_safe - 4) * (rho_safe - 2) * rho_inf
                        / ((rho_inf - 4) * (rho_inf - 2) * rho_safe))
        coef = _per_leaf((1 / bc1, jnp.sqrt(bc2), rectify, rect), grads)
        lerp, one_b2, decay = _Lerp(1 - b1, beta1_above_half), 1 - b2, 1 - lr_ * wd  # group-level scalars

        def one(g, p, m, v, c):
            inv_bc1, bc2_sqrt, rectify, rect = c
            g, p1 = _decay(g, p, wd, decay, maximize=maximize, decoupled=decoupled_weight_decay)
            m = lerp(m, g)
            v = _addcmul(v * b2, g, g, one_b2)
            bcm = m * inv_bc1
            adaptive = bc2_sqrt / (jnp.sqrt(v) + eps_)
            step = jnp.where(rectify, bcm * lr_ * adaptive * rect, bcm * lr_)
            u = (p1 - step) - p if decoupled_weight_decay else -step
            return u, m, v

        u, m, v = _unzip(_tmap(one, grads, params, state.exp_avg, state.exp_avg_sq, coef), 3)
        return u, _keep(RAdamState(t, m, v), state)

    to_t, from_t = _moments_torch(("exp_avg", "exp_avg_sq"), RAdamState, init)
    return TorchTransform(init, update, to_t, from_t, ("step", "exp_avg", "exp_avg_sq"))


class _Beta1Family(TxOptimizer):
    """The Adam family's static structure: which side of torch's two-sided ``lerp`` the
    first moment takes (``beta1 > 0.5``), from the group's Python value, so the compiled
    update carries no per-element select (a host-side edit across 0.5 recompiles once)."""

    def _group_struct(self, group):
        b1 = group["betas"][0]
        return (None if isinstance(b1, jax.core.Tracer) else bool(abs(1 - float(np.float32(b1))) < 0.5),)


class Adam(_Beta1Family):
    """torch.optim.Adam: L2 ``weight_decay``; ``amsgrad`` maxes the raw second moment as torch.

    ``decoupled_weight_decay=True`` makes it AdamW. State per parameter: ``step``,
    ``exp_avg``, ``exp_avg_sq`` (+ ``max_exp_avg_sq``).

    Example:
        >>> opt = optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), amsgrad=True)
        >>> _, stepped = jparam.backward(loss_fn, model, x, y)
        >>> stepped, opt = opt.step(stepped)
        >>> moved = np.abs(np.asarray(stepped.weight - model.weight))
        >>> print(moved.round(6).min(), moved.round(6).max())  # Adam's first step moves every weight by lr
        0.001 0.001
    """

    _static_keys = ("amsgrad", "maximize", "decoupled_weight_decay")

    def __init__(self, params, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: Optional[bool] = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: Optional[bool] = None,
                 decoupled_weight_decay: bool = False) -> None:
        check_hparams(lr=lr, eps=eps, weight_decay=weight_decay, betas=betas)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                                      capturable=capturable, differentiable=differentiable, fused=fused,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _make(self, group, struct):
        return adam(group["lr"], group["betas"], group["eps"], group["weight_decay"],
                    amsgrad=bool(group["amsgrad"]), maximize=bool(group["maximize"]),
                    decoupled_weight_decay=bool(group["decoupled_weight_decay"]), beta1_above_half=struct[0])


class AdamW(Adam):
    """torch.optim.AdamW: ``p *= 1 - lr*weight_decay`` then Adam (default ``weight_decay=1e-2``).

    Example:
        >>> opt = optim.AdamW(model.parameters(), lr=1e-3)
        >>> opt.param_groups[0]["weight_decay"]  # torch's default, unlike Adam's 0
        0.01
    """

    def __init__(self, params, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: Optional[bool] = None, capturable: bool = False,
                 differentiable: bool = False, fused: Optional[bool] = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)


class Adamax(_Beta1Family):
    """torch.optim.Adamax (infinity-norm Adam). State: ``step``, ``exp_avg``, ``exp_inf``.

    Example:
        >>> opt = optim.Adamax(model.parameters(), lr=2e-3)
        >>> _, stepped = jparam.backward(loss_fn, model, x, y)
        >>> stepped, opt = opt.step(stepped)
        >>> moved = np.abs(np.asarray(stepped.weight - model.weight))
        >>> print(moved.round(6).min(), moved.round(6).max())  # the first step moves every weight by lr
        0.002 0.002
    """

    _static_keys = ("maximize",)

    def __init__(self, params, lr: float = 2e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, foreach: Optional[bool] = None, *,
                 maximize: bool = False, differentiable: bool = False, capturable: bool = False) -> None:
        check_hparams(lr=lr, eps=eps, weight_decay=weight_decay, betas=betas)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      foreach=foreach, maximize=maximize, differentiable=differentiable,
                                      capturable=capturable))

    def _make(self, group, struct):
        return adamax(group["lr"], group["betas"], group["eps"], group["weight_decay"],
                      maximize=bool(group["maximize"]), beta1_above_half=struct[0])


class NAdam(_Beta1Family):
    """torch.optim.NAdam with torch's momentum schedule. State: ``step``, ``mu_product``,
    ``exp_avg``, ``exp_avg_sq``.

    Example:
        >>> opt = optim.NAdam(model.parameters(), lr=2e-3, momentum_decay=4e-3)
        >>> _, stepped = jparam.backward(loss_fn, model, x, y)
        >>> stepped, opt = opt.step(stepped)
        >>> moved = np.abs(np.asarray(stepped.weight - model.weight))
        >>> print(moved.round(6).min(), moved.round(6).max())  # lr * 1.0565 (see :func:`nadam`)
        0.002113 0.002113
    """

    _static_keys = ("maximize", "decoupled_weight_decay")

    def __init__(self, params, lr: float = 2e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, foreach: Optional[bool] = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False) -> None:
        check_hparams(lr=lr, eps=eps, weight_decay=weight_decay, betas=betas, momentum_decay=momentum_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                                      foreach=foreach, capturable=capturable, differentiable=differentiable))

    def _make(self, group, struct):
        return nadam(group["lr"], group["betas"], group["eps"], group["weight_decay"],
                     group["momentum_decay"], maximize=bool(group["maximize"]),
                     decoupled_weight_decay=bool(group["decoupled_weight_decay"]), beta1_above_half=struct[0])


class RAdam(_Beta1Family):
    """torch.optim.RAdam (rectified Adam, threshold ``rho_t > 5``). State: ``step``,
    ``exp_avg``, ``exp_avg_sq``.

    Example:
        >>> opt = optim.RAdam(model.parameters(), lr=1e-3)
        >>> _, stepped = jparam.backward(loss_fn, model, x, y)
        >>> stepped, opt = opt.step(stepped)
        >>> moved = np.abs(np.asarray(stepped.weight - model.weight))
        >>> _, grads = jparam.backward(loss_fn, model, x, y)
        >>> np.allclose(moved, 1e-3 * np.abs(np.asarray(grads.weight.grad)))  # rho_1 <= 5: SGD-like
        True
    """

    _static_keys = ("maximize", "decoupled_weight_decay")

    def __init__(self, params, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, decoupled_weight_decay: bool = False, *,
                 foreach: Optional[bool] = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:
        check_hparams(lr=lr, eps=eps, weight_decay=weight_decay, betas=betas)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      differentiable=differentiable))

    def _make(self, group, struct):
        return radam(group["lr"], group["betas"], group["eps"], group["weight_decay"],
                     maximize=bool(group["maximize"]),
                     decoupled_weight_decay=bool(group["decoupled_weight_decay"]), beta1_above_half=struct[0])


