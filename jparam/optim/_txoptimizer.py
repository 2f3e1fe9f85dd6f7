"""Shared plumbing for optimizers built on the torch-exact transforms of ``_transforms``.

A subclass implements ``_make(group, struct) -> TorchTransform`` from a param group's values
(float32 scalars or tracers) and the static ``struct`` of :meth:`Optimizer._group_struct`;
state conversion to torch's per-parameter entries comes with the transform.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

from jparam.optim._transforms import TorchTransform
from jparam.optim.optimizer import Optimizer, _pack_scalars, _unpack_scalars

__all__ = ["TxOptimizer", "check_hparams"]

_SCALAR_FIELDS = ("step", "started", "mu_product")


def check_hparams(lr: Any = 0.0, eps: Any = 0.0, weight_decay: Any = 0.0, betas: Any = None,
                  **others: Any) -> None:
    """torch's argument checks and messages (``Invalid learning rate: -1``, ...)."""
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


def _param_like(state: Any) -> Any:
    """A per-parameter array of ``state`` (its shape and dtype are the parameter's)."""
    for name in getattr(state, "_fields", ()):
        v = getattr(state, name)
        if name not in _SCALAR_FIELDS and v is not None:
            return v
    raise TypeError(f"cannot find a per-parameter array in optimizer state {type(state).__name__}")


class TxOptimizer(Optimizer):
    """An :class:`Optimizer` whose per-parameter update is a :class:`TorchTransform`."""

    def _make(self, group: Dict[str, Any], struct: tuple) -> TorchTransform:
        raise NotImplementedError

    def _transform(self, group, struct):
        return self._make(group, struct)

    def _update_group(self, tx, grads, states, params) -> Tuple[list, list]:
        """One ``tx.update`` for the whole group: the parameters' scalar state (``step``, ...)
        stacked into one vector per field, the per-parameter arrays as lists (see
        :mod:`jparam.optim._transforms`). Step-dependent coefficients such as Adam's bias
        corrections are then computed once per group, not once per parameter: same numbers,
        a smaller compiled step."""
        if len(params) < 2:
            return super()._update_group(tx, grads, states, params)
        cls = type(states[0])

        def gather(name):
            vals = [getattr(s, name) for s in states]
            if vals[0] is None:
                return None
            return _pack_scalars(vals) if name in _SCALAR_FIELDS else vals

        us, new = tx.update(list(grads), cls(*(gather(f) for f in cls._fields)), list(params))
        n = len(params)
        fields = [None if v is None else v if f not in _SCALAR_FIELDS
                  else [v] * n if v.ndim == 0 else _unpack_scalars(v)  # 0-d: one value for all
                  for f, v in zip(cls._fields, new)]
        return list(us), [cls(*(None if v is None else v[k] for v in fields)) for k in range(n)]

    def _state_to_torch(self, group, struct, state) -> Dict[str, Any]:
        return dict(self._make(group, struct).to_torch_state(state))

    def _state_from_torch(self, group, struct, entry, like):
        if not entry:
            return like
        return self._make(group, struct).from_torch_state(entry, _param_like(like))
