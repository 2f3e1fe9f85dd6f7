"""What every torch-exact transform shares: the :class:`TorchTransform` type and numeric helpers.

The contract, in one sentence: a transform is an ``optax.GradientTransformation``
(``init(params) -> state``, ``update(grads, state, params) -> (updates, state)``, updates
ADDED to the parameters) whose ``params`` may be a list of arrays and whose scalar state
fields (``step``, ...) may be scalars or vectors with one entry per listed array.

Each family of algorithms (``sgd.py``, ``adam.py``, ``rmsprop.py``, ``adagrad.py``,
``adadelta.py``) holds its update rule (a factory returning a :class:`TorchTransform`) next
to its torch-API class, as torch's ``optim/adam.py`` does; ``jparam.optim.transforms``
re-exports the factories. Rules every factory follows:

* Every numeric hyperparameter, ``lr`` included, may be a Python float or a traced jax
  scalar: there is no Python ``if`` on a numeric value, so a jitted step whose
  hyperparameters are pytree leaves never recompiles when they change. Structural options
  (``nesterov``, ``amsgrad``, "has a momentum buffer", ...) are static keyword arguments,
  and the state's structure depends only on them.
* Scalar state fields (``step``, ``started``, ``mu_product``) are a scalar (one count for
  the whole tree) or a vector with one entry per leaf of ``params``. The optimizer keeps
  torch's per-parameter step counts as such a vector per param group, so step-dependent
  coefficients (bias corrections, ...) are computed once per group, not once per parameter.
  A vector field may come back as a scalar when every entry is equal (SGD's ``started``).
* The arithmetic follows torch's single-tensor (CPU) kernels operation by operation
  (torch's two-sided ``lerp``, ``addcmul``/``addcdiv`` operand order), so float32 runs agree
  with torch to a few ulps per step. Bias corrections ``1 - beta**t`` are computed as
  ``-expm1(t * log1p(beta - 1))`` (exact where the naive form loses up to 1e-4). Where torch
  changes the parameter in two steps (decoupled weight decay, NAdam's two ``addcdiv``), the
  new parameter is computed as torch does and the update returned as ``new - p``.

Example:
    >>> from jparam.optim.transforms import adam
    >>> p = jnp.ones(3); tx = adam(1e-3, amsgrad=True)
    >>> u, state = tx.update(jnp.full(3, 0.5), tx.init(p), p)
    >>> list(tx.to_torch_state(state))
    ['step', 'exp_avg', 'exp_avg_sq', 'max_exp_avg_sq']
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jparam._convert import to_jax_as

__all__ = ["TorchTransform"]

_tmap = jax.tree_util.tree_map


class TorchTransform(optax.GradientTransformation):
    """An ``optax.GradientTransformation`` that also converts its state to/from torch's.

    ``to_torch_state(state) -> dict``: one parameter's state under torch's keys, in torch's
    order (``{}`` before the first step where torch creates its state lazily).
    ``from_torch_state(d, params) -> state``: the inverse; ``d`` may hold torch tensors,
    NumPy or jax arrays; an empty ``d`` gives ``init(params)``.
    ``state_keys``: the keys of a non-empty torch state entry of this configuration (a
    ``load_state_dict`` refuses an entry with other keys: another optimizer's state).

    Example:
        >>> from jparam.optim.transforms import sgd
        >>> tx = sgd(0.1, momentum=0.9, has_momentum=True)
        >>> tx.state_keys
        ('momentum_buffer',)
    """

    def __new__(cls, init: Callable, update: Callable, to_torch_state: Callable,
                from_torch_state: Callable, state_keys: Sequence[str] = ()) -> "TorchTransform":
        self = super().__new__(cls, init, update)
        self.to_torch_state = to_torch_state
        self.from_torch_state = from_torch_state
        self.state_keys = tuple(state_keys)
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
    rounding): ``a + w*d`` when ``|w| < 0.5``, else ``b - (1-w)*d``, as one multiply-add with
    a scalar coefficient computed once per dtype (once per group, not once per parameter).

    ``small`` (static) says which side applies; None decides it from ``w`` when ``w`` is
    concrete, and with a per-element select when it is traced. Optimizers pass it from the
    group's Python value (``beta1_above_half``), so the compiled update carries no select.

    Example:
        >>> lerp = _Lerp(1 - 0.9); float(lerp(jnp.float32(0), jnp.float32(1)))
        0.10000000149011612
    """

    def __init__(self, w: Any, small: Optional[bool] = None) -> None:
        if small is None and not isinstance(w, jax.core.Tracer):
            small = bool(abs(float(np.asarray(w))) < 0.5)
        self.w, self.small, self._coef = w, small, {}

    def __call__(self, a: jax.Array, b: jax.Array) -> jax.Array:
        coef = self._coef.get(a.dtype)
        if coef is None:
            w = jnp.asarray(self.w).astype(a.dtype)
            if self.small is None:
                small = jnp.abs(w) < 0.5
                coef = (small, jnp.where(small, w, -(1 - w)))
            else:
                coef = (self.small, w if self.small else -(1 - w))
            self._coef[a.dtype] = coef
        small, c = coef
        if small is True:
            return a + c * (b - a)
        if small is False:
            return b + c * (b - a)
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
    """A torch state value (tensor, array or number) as a jax array, cast to ``like``'s dtype
    as torch's ``load_state_dict`` casts a floating state to its parameter's."""
    what = f"torch optimizer state['{key}']"
    if v is None:
        raise ValueError(f"{what} is None; expected an array"
                         + (f" of shape {tuple(like.shape)}" if like is not None else ""))
    a = to_jax_as(v, None if like is None else like.dtype, what)
    if like is not None and a.shape != like.shape:
        raise ValueError(f"{what} has shape {tuple(a.shape)}, expected {tuple(like.shape)} "
                         "(the parameter's shape)")
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
