"""The scheduler base class (torch's ``LRScheduler``) and the helpers every scheduler shares."""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, Optional

import jax.numpy as jnp
import numpy as np

__all__ = ["LRScheduler", "EPOCH_DEPRECATION_WARNING"]

EPOCH_DEPRECATION_WARNING = (
    "The epoch parameter in `scheduler.step()` was not necessary and is being deprecated where "
    "possible. Please use `scheduler.step()` to step the scheduler. During the deprecation, if "
    "epoch is different from None, the closed form is used instead of the new chainable form, "
    "where available.")


def _pyfloat(v: Any) -> Any:
    """A group value as a Python float (jax/NumPy scalars too); tracers pass through."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    try:
        return float(np.asarray(v))
    except Exception:  # a tracer: keep it
        return v


def _check_optimizer(optimizer: Any) -> None:
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise TypeError(f"{type(optimizer).__name__} is not an Optimizer: expected an object whose "
                        "'param_groups' is a list of dicts")


def _format_param(name: str, optimizer: Any, param: Any) -> list:
    n = len(optimizer.param_groups)
    if isinstance(param, (list, tuple)):
        if len(param) != n:
            raise ValueError(f"{name} must have the same length as optimizer.param_groups. "
                             f"{name} has {len(param)} values, param_groups has {n}.")
        return list(param)
    return [param] * n


def _f32(x: Any):
    return jnp.asarray(x, jnp.float32)


class LRScheduler:
    """Base class (torch's ``LRScheduler``): the constructor sets ``initial_lr`` and steps to epoch 0.

    Subclasses implement ``get_lr`` (torch's recursive rule), ``_get_closed_form_lr`` where torch
    has one, and ``lr_at`` (the closed form in ``jax.numpy``).

    Example:
        >>> sched = lr_scheduler.ExponentialLR(opt, gamma=0.9)
        >>> sched.step(); sched.get_last_lr()
        [0.09000000000000001]
    """

    _get_lr_called_within_step: bool = False
    _is_initial: bool = False

    def __init__(self, optimizer: Any, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                if "initial_lr" not in group:
                    group["initial_lr"] = _pyfloat(group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] when "
                                   "resuming scheduler with last_epoch >= 0.")
        self.base_lrs: List[float] = [_pyfloat(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    # ------------------------------------------------------------------ torch API
    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def state_dict(self) -> Dict[str, Any]:
        """Every attribute except the optimizer (torch's layout; loads into torch's scheduler too)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Load :meth:`state_dict` (ours or torch's)."""
        self.__dict__.update(state_dict)

    def get_last_lr(self) -> List[float]:
        """The lrs the last ``step()`` set, one per param group."""
        return self._last_lr

    def get_lr(self) -> List[float]:
        raise NotImplementedError

    def step(self, epoch: Optional[int] = None) -> None:
        """Advance one epoch (call after the optimizer's step) and write the new lrs."""
        self._step_count += 1
        if epoch is not None:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self._update_lr(epoch)

    def _update_lr(self, epoch: Optional[int] = None) -> None:
        self._get_lr_called_within_step = True
        try:
            if epoch is None:
                self.last_epoch += 1
                values = self.get_lr()
            else:
                self.last_epoch = epoch
                values = (self._get_closed_form_lr() if hasattr(self, "_get_closed_form_lr")
                          else self.get_lr())
        finally:
            self._get_lr_called_within_step = False
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = list(values)

    def _group_lrs(self) -> List[float]:
        """The groups' current lrs as Python floats (a jparam optimizer reads them back
        exactly as set, so the recursion runs in double precision, as torch's does)."""
        return [_pyfloat(g["lr"]) for g in self.optimizer.param_groups]

    # ------------------------------------------------------------------ jit
    def lr_at(self, step: Any) -> List[Any]:
        """The lr of every group at optimizer step ``step`` (closed form, jnp, jit-able)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed form; step it per epoch "
                                  "outside jit")

    def schedule(self, group: int = 0) -> Callable[[Any], Any]:
        """An optax-style schedule ``count -> lr`` for one group (``lr_at(count)[group]``).

        Example:
            >>> sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
            >>> tx = optax.sgd(sched.schedule())
            >>> [float(sched.schedule()(count)) for count in range(5)]  # 0.1 halved every 2 steps
            [0.10000000149011612, 0.10000000149011612, 0.05000000074505806, 0.05000000074505806, 0.02500000037252903]
        """
        return lambda count: self.lr_at(count)[group]


