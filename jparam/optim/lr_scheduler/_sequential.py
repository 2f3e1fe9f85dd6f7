"""SequentialLR: schedulers one after another at milestones."""
from __future__ import annotations

from bisect import bisect_right
from typing import Any, Dict, Sequence

import jax.numpy as jnp

from jparam.optim.lr_scheduler._base import LRScheduler, _check_optimizer, _pyfloat
from jparam.optim.lr_scheduler._plateau import ReduceLROnPlateau

__all__ = ["SequentialLR"]


class SequentialLR(LRScheduler):
    """Runs ``schedulers[i]`` between ``milestones[i-1]`` and ``milestones[i]``; each restarts at
    its own epoch 0 (torch's semantics, including the reset of every group's lr to ``initial_lr``).

    Example:
        >>> warm = lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=5)
        >>> cos = lr_scheduler.CosineAnnealingLR(opt, T_max=95)
        >>> sched = lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[5])
        >>> lrs = []
        >>> for epoch in range(6):
        ...     lrs.append(sched.get_last_lr()[0])
        ...     sched.step()
        >>> lrs  # torch's values: linear warm-up to 0.1, then the cosine starts
        [0.010000000000000002, 0.028000000000000004, 0.046000000000000006, 0.064, 0.082, 0.1]
    """

    def __init__(self, optimizer: Any, schedulers: Sequence[LRScheduler], milestones: Sequence[int],
                 last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        if len(schedulers) < 1:
            raise ValueError(f"{type(self).__name__} expects at least one scheduler, but got no scheduler.")
        for i, s in enumerate(schedulers):
            if not hasattr(s, "optimizer"):
                raise TypeError(f"{type(self).__name__} at index {i} should have `optimizer` as its attribute.")
            if isinstance(s, ReduceLROnPlateau):
                raise ValueError(f"{type(self).__name__} does not support `ReduceLROnPlateau` scheduler as it "
                                 "requires additional kwargs to be specified when calling `step`, but got "
                                 f"one at index {i} in the given schedulers sequence.")
            if optimizer is not s.optimizer and optimizer != s.optimizer:
                raise ValueError(f"{type(self).__name__} expects all schedulers to belong to the same "
                                 f"optimizer, but got scheduler {type(s).__name__} at index {i} with a "
                                 "different optimizer.")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError("Sequential Schedulers expects number of schedulers provided to be one more than "
                             f"the number of milestone points, but got number of schedulers {len(schedulers)} "
                             f"and the number of milestones to be equal to {len(milestones)}")
        self._schedulers = list(schedulers)
        self._milestones = list(milestones)
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        initial = [_pyfloat(g["initial_lr"]) for g in optimizer.param_groups]
        for group, lr in zip(optimizer.param_groups, initial):
            group["lr"] = lr
        for s in self._schedulers:  # the groups now hold initial_lr again (full precision)
            s._last_lr = list(initial)
        self.recursive_undo()
        idx = bisect_right(self._milestones, 0)
        self._schedulers[idx]._initial_step()
        self._last_lr = self._schedulers[idx].get_last_lr()

    def recursive_undo(self, sched: Any = None) -> None:
        scheds = self if sched is None else sched
        if hasattr(scheds, "_schedulers"):
            for s in scheds._schedulers:
                self.recursive_undo(s)
        elif hasattr(scheds, "last_epoch"):
            scheds.last_epoch -= 1

    def step(self) -> None:  # type: ignore[override]
        self.last_epoch += 1
        idx = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[idx]
        if idx > 0 and self._milestones[idx - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> Dict[str, Any]:
        sd = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "_schedulers")}
        sd["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return sd

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        subs = state_dict.pop("_schedulers")
        self.__dict__.update(state_dict)
        for s, sd in zip(self._schedulers, subs):
            s.load_state_dict(sd)

    def lr_at(self, step):
        step = jnp.asarray(step, jnp.int32)
        ms = jnp.asarray(self._milestones or [0], jnp.int32)
        idx = jnp.searchsorted(ms, step, side="right") if self._milestones else jnp.zeros((), jnp.int32)
        starts = [0] + list(self._milestones)
        per = [s.lr_at(step - start) for s, start in zip(self._schedulers, starts)]
        out = []
        for g in range(len(per[0])):
            v = per[-1][g]
            for i in range(len(per) - 2, -1, -1):
                v = jnp.where(idx == i, per[i][g], v)
            out.append(v)
        return out
