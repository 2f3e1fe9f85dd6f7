"""``TxOptimizer``: the base of the torch-exact optimizers (SGD, Adam, ...).

A subclass implements ``_make(group, struct) -> TorchTransform`` from a param group's values
(float32 leaves, tracers or Python numbers) and the static ``struct`` of
:meth:`Optimizer._group_struct`. A group's state is ONE state of that transform over the
list of the group's parameters: array fields hold one array per parameter (a list), scalar
fields (``step``, ...) one vector entry per parameter (torch keeps a step count per
parameter, and skips a parameter without a grad), so one ``update`` serves the whole group.

Example:
    >>> opt = optim.Adam(model.parameters(), lr=1e-3)
    >>> opt.param_groups[0]["lr"], type(jax.tree_util.tree_leaves(opt)[0]).__name__
    (0.001, 'ArrayImpl')
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jparam.optim import _pytree as pt
from jparam.optim._transform import TorchTransform
from jparam.optim.optimizer import Optimizer

__all__ = ["TxOptimizer", "check_hparams"]


def check_hparams(lr: Any = 0.0, eps: Any = 0.0, weight_decay: Any = 0.0, betas: Any = None,
                  **others: Any) -> None:
    """torch's argument checks and messages (``Invalid learning rate: -1``, ...).

    Example:
        >>> check_hparams(lr=-1.0)
        Traceback (most recent call last):
        ValueError: Invalid learning rate: -1.0
    """
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if betas is not None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a tuple of two floats, got {betas!r}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    for name, v in others.items():
        if not 0.0 <= v:
            raise ValueError(f"Invalid {name} value: {v}")


def _is_vector_field(v: Any) -> bool:
    return isinstance(v, (jax.Array, np.ndarray)) and v.ndim <= 1


def _per_parameter(v: Any, n: int, placement: Any) -> Any:
    """A scalar state field (``step``, ...) as one entry per parameter, on the hyperparameters'
    devices."""
    if isinstance(v, jax.core.Tracer):
        return jnp.broadcast_to(v, (n,))
    return pt.put_replicated(np.full((n,), np.asarray(v)), placement)


class TxOptimizer(Optimizer):
    """An :class:`Optimizer` whose group update is one :class:`TorchTransform` call."""

    def _make(self, group: Dict[str, Any], struct: tuple) -> TorchTransform:
        raise NotImplementedError

    def _transform(self, group, struct):
        return self._make(group, struct)

    def _init_state(self, tx, likes, placement):
        state = tx.init(list(likes))
        n = len(likes)
        return type(state)(*(_per_parameter(v, n, placement) if _is_vector_field(v) else v for v in state))

    def _update_group(self, tx, grads, state, params) -> Tuple[list, Any]:
        us, new = tx.update(list(grads), state, list(params))
        return list(us), new

    def _take(self, state, js):
        idx = np.asarray(js)
        return type(state)(*(None if v is None else [v[j] for j in js] if isinstance(v, list) else v[idx]
                             for v in state))

    def _put(self, state, js: Optional[list], new):
        out = []
        for old, v in zip(state, new):
            if v is None or isinstance(v, list) and js is None:
                out.append(v)
            elif isinstance(v, list):
                merged = list(old)
                for j, x in zip(js, v):
                    merged[j] = x
                out.append(merged)
            elif js is None:  # a vector, or a scalar shared by the whole group (SGD's flag)
                out.append(v if v.shape == old.shape else jnp.broadcast_to(v, old.shape))
            else:
                out.append(old.at[np.asarray(js)].set(v))
        return type(state)(*out)

    @staticmethod
    def _view(state, j: int):
        """Parameter ``j``'s state as the transform's state of one array."""
        return type(state)(*(None if v is None else v[j] for v in state))

    def _state_to_torch(self, tx, state, j) -> Dict[str, Any]:
        return dict(tx.to_torch_state(self._view(state, j)))

    def _states_from_torch(self, tx, entries, likes, state, where):
        fresh = self._init_state(tx, likes, self._placement())
        per = []
        for j, (e, like) in enumerate(zip(entries, likes)):
            one = tx.from_torch_state(e, like) if e else self._view(fresh, j)
            per.append(one)
        fields = []
        for k, v in enumerate(fresh):
            if v is None:
                fields.append(None)
            elif isinstance(v, list):
                fields.append([jnp.asarray(p[k], like.dtype) for p, like in zip(per, likes)])
            else:
                vals = np.stack([np.asarray(p[k], v.dtype).reshape(()) for p in per])
                fields.append(pt.put_replicated(vals, self._placement()))
        return type(fresh)(*fields)
