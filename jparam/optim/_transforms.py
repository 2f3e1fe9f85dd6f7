"""torch.optim's update rules as optax ``GradientTransformation`` s, step for step equal to torch.

Every factory here returns a :class:`TorchTransform`: an ``optax.GradientTransformation``
(``init(params)`` / ``update(grads, state, params) -> (updates, state)``, updates to be
ADDED to the parameters) with two extra functions that convert ONE parameter's state to and
from torch's per-parameter optimizer state (``step``, ``exp_avg``, ``exp_avg_sq``, ...).

Contract used by :class:`jparam.optim.Optimizer`:

* ``params`` may be any pytree. The state's scalar fields (``step``, ``started``,
  ``mu_product``) are either scalars, one count for the whole tree, or vectors with one
  entry per leaf of ``params``. :class:`jparam.optim.Optimizer` uses the second form: it
  updates a param group as one list of parameters with their per-parameter counts (torch
  keeps a step per parameter) stacked, so each step-dependent coefficient (bias
  corrections, ...) is computed once per group, on a vector, instead of once per parameter.
  A vector field may come back as a scalar when every entry is equal (SGD's ``started``
  after a step): the optimizer then shares it among the group's parameters.
* Every numeric hyperparameter, ``lr`` included, may be a Python float or a traced jax
  scalar: there is no Python ``if`` on a numeric value, so a jitted step built from
  hyperparameters that are pytree leaves never recompiles when they change.
  Structural options (``nesterov``, ``amsgrad``, ``centered``, ``maximize``, "has a
  momentum buffer", decoupled weight decay) are static keyword arguments.
* The state's structure depends only on the static options.

The arithmetic follows torch's single-tensor (CPU default) kernels operation by
operation (``lerp`` with torch's two-sided formula, ``addcmul``/``addcdiv`` operand
order), so float32 runs agree with torch to a few ulps per step. Bias corrections
``1 - beta**t`` are computed as ``-expm1(t * log1p(beta - 1))``, which is accurate in
float32 where the naive form loses up to 1e-4 relative to cancellation. Where torch
changes the parameter in two steps (decoupled weight decay, NAdam's two ``addcdiv``),
the new parameter is computed exactly as torch does and the update is returned as
``new - p`` (exact by Sterbenz's lemma whenever the step is less than half of ``|p|``).

Example:
    >>> tx = adam(1e-3, betas=(0.9, 0.999), weight_decay=0.1, amsgrad=True)
    >>> p, g = jnp.ones(3), jnp.full(3, 0.5)
    >>> state = tx.init(p)
    >>> u, state = tx.update(g, state, p); p = p + u
    >>> tx.to_torch_state(state).keys()
    dict_keys(['step', 'exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'])
"""
from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "TorchTransform", "sgd", "adam", "adamw", "adamax", "nadam", "radam",
    "SGDState", "AdamState", "AdamaxState", "NAdamState", "RAdamState",
]

_tmap = jax.tree_util.tree_map


class TorchTransform(optax.GradientTransformation):
    """An ``optax.GradientTransformation`` that also converts its state to/from torch's.

    ``to_torch_state(state) -> dict``: one parameter's state under torch's keys, in torch's
    order (``{}`` before the first step where torch creates its state lazily).
    ``from_torch_state(d, params) -> state``: the inverse; ``d`` may hold torch tensors,
    NumPy or jax arrays; an empty ``d`` gives ``init(params)``.

    Example:
        >>> tx = sgd(0.1, momentum=0.9, has_momentum=True)
        >>> s = tx.from_torch_state({"momentum_buffer": torch.ones(3)}, jnp.zeros(3))
        >>> tx.to_torch_state(s)
        {'momentum_buffer': Array([1., 1., 1.], dtype=float32)}
    """

    def __new__(cls, init: Callable, update: Callable, to_torch_state: Callable,
                from_torch_state: Callable) -> "TorchTransform":
        self = super().__new__(cls, init, update)
        self.to_torch_state = to_torch_state
        self.from_torch_state = from_torch_state
        return self


# ---------------------------------------------------------------------------- helpers
def _f32(x: Any) -> jax.Array:
    """A hyperparameter as a float32 scalar (Python number, NumPy, jax array or tracer)."""
    return jnp.asarray(x, jnp.float32)


def _bias_correction(beta: jax.Array, t: jax.Array) -> jax.Array:
    """``1 - beta**t`` without float32 cancellation (``beta - 1`` is exact in float32)."""
    return -jnp.expm1(t * jnp.log1p(beta - 1))


def _entries(vec: Any) -> list:
    """The entries of a vector as scalars. Traced: one ``split`` and a squeeze per entry,
    half the trace (and lowering) work of ``list(vec)``, which slices each entry apart.

    Example:
        >>> _entries(jnp.arange(3.))
        [Array(0., dtype=float32), Array(1., dtype=float32), Array(2., dtype=float32)]
    """
    if isinstance(vec, jax.core.Tracer) and vec.ndim == 1 and vec.shape[0] > 1:
        return [jax.lax.squeeze(x, (0,)) for x in jax.lax.split(vec, (1,) * vec.shape[0])]
    return list(vec)


def _per_leaf(c: Any, tree: Any) -> Any:
    """The scalar coefficients ``c`` (a pytree of arrays) for each leaf of ``tree``.

    A scalar in ``c`` serves every leaf; a vector (computed from per-leaf scalar state, see
    the module docstring) gives leaf ``k`` its entry ``k``.

    Example:
        >>> [tuple(map(float, c)) for c in _per_leaf((jnp.float32(2), jnp.arange(2.)), [x, y])]
        [(2.0, 0.0), (2.0, 1.0)]
    """
    leaves, td = jax.tree_util.tree_flatten(tree)
    n = len(leaves)
    cs, ctd = jax.tree_util.tree_flatten(c)
    for x in cs:
        if jnp.ndim(x) not in (0, 1) or (jnp.ndim(x) == 1 and x.shape[0] != n):
            raise ValueError(f"optimizer state scalar of shape {tuple(jnp.shape(x))}: expected a scalar "
                             f"or one entry per parameter leaf, shape ({n},)")
    cols = [[x] * n if jnp.ndim(x) == 0 else _entries(x) for x in cs]
    return jax.tree_util.tree_unflatten(
        td, [jax.tree_util.tree_unflatten(ctd, [col[k] for col in cols]) for k in range(n)])


class _Lerp:
    """torch's ``a.lerp_(b, w)`` for one weight ``w`` (same two-sided formula, so the same
    rounding): ``a + w*d`` or ``b - (1-w)*d``, as one multiply-add with a scalar coefficient.
    The weight's coefficient is computed once per dtype, i.e. once per group, not once per
    parameter.

    Example:
        >>> lerp = _Lerp(1 - 0.9)
        >>> float(lerp(jnp.float32(0), jnp.float32(1)))     # torch.lerp(0., 1., 0.1)
        0.10000000149011612
    """

    def __init__(self, w: Any) -> None:
        self.w, self._coef = w, {}

    def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
        coef = self._coef.get(a.dtype)
        if coef is None:
            w = jnp.asarray(self.w).astype(a.dtype)
            small = jnp.abs(w) < 0.5
            coef = self._coef[a.dtype] = (small, jnp.where(small, w, -(1 - w)))
        small, c = coef
        return jnp.where(small, a, b) + c * (b - a)


def _none_like(params):
    """A placeholder tree for an absent state field (its leaves are ignored)."""
    return _tmap(lambda p: 0, params)


def _unzip(out, n):
    is_t = lambda o: isinstance(o, tuple)  # noqa: E731
    return tuple(_tmap(lambda o: o[i], out, is_leaf=is_t) for i in range(n))


def _addcmul(a, t1, t2, value):
    """torch's ``a.addcmul(t1, t2, value=value)``: ``a + value * t1 * t2``."""
    return a + value * t1 * t2


def _to_array(v: Any, key: str, like: Optional[jax.Array] = None) -> jax.Array:
    if v is None:
        raise ValueError(f"torch optimizer state['{key}'] is None; expected an array"
                         + (f" of shape {tuple(like.shape)}" if like is not None else ""))
    if hasattr(v, "detach"):  # a torch tensor
        v = v.detach().cpu().numpy()
    a = jnp.asarray(np.asarray(v) if not isinstance(v, jax.Array) else v)
    if like is not None:
        if a.shape != like.shape:
            raise ValueError(f"torch optimizer state['{key}'] has shape {tuple(a.shape)}, "
                             f"expected {tuple(like.shape)} (the parameter's shape)")
        a = a.astype(like.dtype)
    return a


def _tree_from(d: Dict[str, Any], key: str, params: Any) -> Any:
    if key not in d:
        raise KeyError(f"torch optimizer state has no '{key}' (keys: {sorted(d)}); "
                       "it was saved by an optimizer with different options")
    v = d[key]
    leaves, td = jax.tree_util.tree_flatten(params)
    if len(leaves) == 1 and not isinstance(v, dict):
        return jax.tree_util.tree_unflatten(td, [_to_array(v, key, leaves[0])])
    return _tmap(lambda x, p: _to_array(x, key, p), v, params)


def _step_from(d: Dict[str, Any]) -> jax.Array:
    if "step" not in d:
        raise KeyError(f"torch optimizer state has no 'step' (keys: {sorted(d)})")
    return jnp.asarray(float(np.asarray(_to_array(d["step"], "step"))), jnp.float32)


def _started(step: Any) -> bool:
    return float(np.asarray(step)) > 0


def _keep(new_state: Any, old_state: Any) -> Any:
    """``new_state`` with every array in the dtype it had in ``old_state`` (bf16 params keep
    bf16 state although the float32 hyperparameters promote the arithmetic)."""
    return _tmap(lambda n, o: n if n.dtype == o.dtype else n.astype(o.dtype), new_state, old_state)


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
    started_now = jnp.ones((), bool) if use_buffer else None

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
        started = started_now if use_buffer else state.started
        return u, _keep(SGDState(b if has_momentum else None, started), state)

    def to_torch_state(state):
        if not has_momentum or not bool(np.asarray(state.started)):
            return {}
        return {"momentum_buffer": state.momentum_buffer}

    def from_torch_state(d, params):
        if not has_momentum or not d or d.get("momentum_buffer") is None:
            return init(params)
        return SGDState(_tree_from(d, "momentum_buffer", params), jnp.ones((), bool))

    return TorchTransform(init, update, to_torch_state, from_torch_state)


# ---------------------------------------------------------------------------- Adam / AdamW
class AdamState(NamedTuple):
    step: Any
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any  # None unless amsgrad


def _moments_torch(names: Sequence[str], cls, init):
    """to/from torch for states that are ``cls(step, *per-param arrays)``."""

    def to_torch_state(state):
        if not _started(state.step):
            return {}
        out = {"step": state.step}
        for n in names:
            v = getattr(state, n)
            if v is not None:
                out[n] = v
        return out

    def from_torch_state(d, params):
        if not d:
            return init(params)
        like = init(params)
        vals = {n: (None if getattr(like, n) is None else _tree_from(d, n, params)) for n in names}
        return cls(step=_step_from(d), **vals)

    return to_torch_state, from_torch_state


def adam(lr: Any = 1e-3, betas: Sequence[Any] = (0.9, 0.999), eps: Any = 1e-8,
         weight_decay: Any = 0.0, *, amsgrad: bool = False, maximize: bool = False,
         decoupled_weight_decay: bool = False) -> TorchTransform:
    r"""torch.optim.Adam (``decoupled_weight_decay=True``: torch.optim.AdamW).

    ``g += wd p`` (L2; decoupled: ``p *= 1 - lr wd`` first); ``m = lerp(m, g, 1-b1)``;
    ``v = b2 v + (1-b2) g^2``; amsgrad: ``vmax = max(vmax, v)`` on the RAW ``v`` (optax's
    ``amsgrad`` maxes the bias-corrected one); ``p -= lr/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps)``.

    Example:
        >>> tx = adam(1e-3, (0.9, 0.999), amsgrad=True)
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
        lerp, one_b2, decay = _Lerp(1 - b1), 1 - b2, 1 - lr_ * wd  # group-level scalars

        def one(g, p, m, v, vmax, c):
            neg_step_size, inv_bc2_sqrt = c
            g = -g if maximize else g
            if decoupled_weight_decay:
                p1 = p * decay
            else:
                g = g + wd * p
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
    return TorchTransform(init, update, to_t, from_t)


def adamw(lr: Any = 1e-3, betas: Sequence[Any] = (0.9, 0.999), eps: Any = 1e-8,
          weight_decay: Any = 1e-2, *, amsgrad: bool = False, maximize: bool = False) -> TorchTransform:
    r"""torch.optim.AdamW: ``p *= 1 - lr wd``, then the Adam update (torch's default wd 1e-2).

    Example:
        >>> tx = adamw(1e-3, weight_decay=0.01)
    """
    return adam(lr, betas, eps, weight_decay, amsgrad=amsgrad, maximize=maximize,
                decoupled_weight_decay=True)


# ---------------------------------------------------------------------------- Adamax
class AdamaxState(NamedTuple):
    step: Any
    exp_avg: Any
    exp_inf: Any


def adamax(lr: Any = 2e-3, betas: Sequence[Any] = (0.9, 0.999), eps: Any = 1e-8,
           weight_decay: Any = 0.0, *, maximize: bool = False) -> TorchTransform:
    r"""torch.optim.Adamax: ``m = lerp(m, g, 1-b1)``; ``u = max(b2 u, |g| + eps)``;
    ``p -= lr/(1-b1^t) m/u`` (eps is added to ``|g|``, not to the denominator as in optax).

    Example:
        >>> tx = adamax(2e-3)
    """

    def init(params):
        return AdamaxState(jnp.zeros((), jnp.float32), _tmap(jnp.zeros_like, params),
                           _tmap(jnp.zeros_like, params))

    def update(grads, state, params):
        lr_, b1, b2, eps_, wd = _f32(lr), _f32(betas[0]), _f32(betas[1]), _f32(eps), _f32(weight_decay)
        t = state.step + 1
        coef = _per_leaf(-(lr_ / _bias_correction(b1, t)), grads)
        lerp = _Lerp(1 - b1)

        def one(g, p, m, ui, neg_clr):
            g = -g if maximize else g
            g = g + wd * p
            m = lerp(m, g)
            ui = jnp.maximum(ui * b2, jnp.abs(g) + eps_)
            return neg_clr * (m / ui), m, ui

        u, m, ui = _unzip(_tmap(one, grads, params, state.exp_avg, state.exp_inf, coef), 3)
        return u, _keep(AdamaxState(t, m, ui), state)

    to_t, from_t = _moments_torch(("exp_avg", "exp_inf"), AdamaxState, init)
    return TorchTransform(init, update, to_t, from_t)


# ---------------------------------------------------------------------------- NAdam
class NAdamState(NamedTuple):
    step: Any
    mu_product: Any  # float32 scalar, starts at 1
    exp_avg: Any
    exp_avg_sq: Any


def nadam(lr: Any = 2e-3, betas: Sequence[Any] = (0.9, 0.999), eps: Any = 1e-8,
          weight_decay: Any = 0.0, momentum_decay: Any = 4e-3, *, maximize: bool = False,
          decoupled_weight_decay: bool = False) -> TorchTransform:
    r"""torch.optim.NAdam with torch's momentum schedule and ``mu_product``.

    ``mu_t = b1 (1 - 0.5 * 0.96^(t psi))``; ``mu_product *= mu_t``;
    ``p -= lr (1-mu_t)/(1-mu_product) g/d + lr mu_{t+1}/(1 - mu_product mu_{t+1}) m/d`` with
    ``d = sqrt(v/(1-b2^t)) + eps`` (two ``addcdiv`` in torch's order).

    Example:
        >>> tx = nadam(2e-3, momentum_decay=4e-3)
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
        lerp, one_b2, decay = _Lerp(1 - b1), 1 - b2, 1 - lr_ * wd  # group-level scalars

        def one(g, p, m, v, c):
            inv_bc2, c_grad, c_avg = c
            g = -g if maximize else g
            p1 = p
            if decoupled_weight_decay:
                p1 = p * decay
            else:
                g = g + wd * p
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

    return TorchTransform(init, update, to_torch_state, from_torch_state)


# ---------------------------------------------------------------------------- RAdam
class RAdamState(NamedTuple):
    step: Any
    exp_avg: Any
    exp_avg_sq: Any


def radam(lr: Any = 1e-3, betas: Sequence[Any] = (0.9, 0.999), eps: Any = 1e-8,
          weight_decay: Any = 0.0, *, maximize: bool = False,
          decoupled_weight_decay: bool = False) -> TorchTransform:
    r"""torch.optim.RAdam: rectified Adam with torch's threshold ``rho_t > 5``.

    ``rho_inf = 2/(1-b2) - 1``; ``rho_t = rho_inf - 2 t b2^t/(1-b2^t)``; if ``rho_t > 5``:
    ``p -= m/(1-b1^t) lr sqrt(1-b2^t)/(sqrt(v)+eps) r_t`` with torch's rectifier ``r_t``,
    else ``p -= m/(1-b1^t) lr`` (a ``jnp.where``, so a traced ``betas`` works).

    Example:
        >>> tx = radam(1e-3, decoupled_weight_decay=True, weight_decay=0.1)
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
        lerp, one_b2, decay = _Lerp(1 - b1), 1 - b2, 1 - lr_ * wd  # group-level scalars

        def one(g, p, m, v, c):
            inv_bc1, bc2_sqrt, rectify, rect = c
            g = -g if maximize else g
            p1 = p
            if decoupled_weight_decay:
                p1 = p * decay
            else:
                g = g + wd * p
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
    return TorchTransform(init, update, to_t, from_t)


from jparam.optim._transforms_rms import (  # noqa: E402,F401  (re-exported)
    AdadeltaState, AdagradState, RMSpropState, adadelta, adagrad, rmsprop)

__all__ += ["rmsprop", "adagrad", "adadelta", "RMSpropState", "AdagradState", "AdadeltaState"]
