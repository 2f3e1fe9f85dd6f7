"""SequentialLR, OneCycleLR and ReduceLROnPlateau (re-exported by ``jparam.optim.lr_scheduler``).

Example:
    >>> from jparam.optim.lr_scheduler import OneCycleLR
    >>> sched = OneCycleLR(opt, max_lr=0.1, total_steps=1000)
"""
from __future__ import annotations

import math
from bisect import bisect_right
from math import inf
from typing import Any, Dict, List, Optional, Sequence, Union

import jax.numpy as jnp

from jparam.optim.lr_scheduler import (
    EPOCH_DEPRECATION_WARNING, LRScheduler, _check_optimizer, _format_param, _pyfloat)

__all__ = ["SequentialLR", "OneCycleLR", "ReduceLROnPlateau"]


class SequentialLR(LRScheduler):
    """Runs ``schedulers[i]`` between ``milestones[i-1]`` and ``milestones[i]``; each restarts at
    its own epoch 0 (torch's semantics, including the reset of every group's lr to ``initial_lr``).

    Example:
        >>> warm = lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=5)
        >>> cos = lr_scheduler.CosineAnnealingLR(opt, T_max=95)
        >>> sched = lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[5])
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


class OneCycleLR(LRScheduler):
    """The 1cycle policy with torch's phases (peak at step ``pct_start*T - 1``, end at ``T - 1``).

    ``anneal_strategy`` 'cos' or 'linear'; ``three_phase``; ``cycle_momentum`` cycles
    ``momentum`` (or ``betas[0]``) between ``max_momentum`` and ``base_momentum``. Stepping past
    ``total_steps`` raises torch's ``ValueError``; ``lr_at`` (which cannot raise under jit) gives
    NaN there.

    Example:
        >>> sched = lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=1000)
        >>> lr = sched.lr_at(jnp.int32(500))[0]     # step may be traced, inside jit
        >>> round(float(lr), 6)
        0.080999
    """

    def __init__(self, optimizer: Any, max_lr: Union[float, List[float]], total_steps: Optional[int] = None,
                 epochs: Optional[int] = None, steps_per_epoch: Optional[int] = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: Union[float, List[float]] = 0.85, max_momentum: Union[float, List[float]] = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if total_steps is not None:
            if not isinstance(total_steps, int) or total_steps <= 0:
                raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            if not isinstance(epochs, int) or epochs <= 0:
                raise ValueError(f"Expected positive integer epochs, but got {epochs}")
            if not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0:
                raise ValueError(f"Expected positive integer steps_per_epoch, but got {steps_per_epoch}")
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        T = self.total_steps
        if three_phase:
            self._schedule_phases = [
                {"end_step": float(pct_start * T) - 1, "start_lr": "initial_lr", "end_lr": "max_lr",
                 "start_momentum": "max_momentum", "end_momentum": "base_momentum"},
                {"end_step": float(2 * pct_start * T) - 2, "start_lr": "max_lr", "end_lr": "initial_lr",
                 "start_momentum": "base_momentum", "end_momentum": "max_momentum"},
                {"end_step": T - 1, "start_lr": "initial_lr", "end_lr": "min_lr",
                 "start_momentum": "max_momentum", "end_momentum": "max_momentum"},
            ]
        else:
            self._schedule_phases = [
                {"end_step": float(pct_start * T) - 1, "start_lr": "initial_lr", "end_lr": "max_lr",
                 "start_momentum": "max_momentum", "end_momentum": "base_momentum"},
                {"end_step": T - 1, "start_lr": "max_lr", "end_lr": "min_lr",
                 "start_momentum": "base_momentum", "end_momentum": "max_momentum"},
            ]
        if pct_start < 0 or pct_start > 1 or not isinstance(pct_start, float):
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}")
        self._anneal_func_type = anneal_strategy
        max_lrs = _format_param("max_lr", optimizer, max_lr)
        if last_epoch == -1:
            for idx, group in enumerate(optimizer.param_groups):
                group["initial_lr"] = max_lrs[idx] / div_factor
                group["max_lr"] = max_lrs[idx]
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            defaults = getattr(optimizer, "defaults", None) or optimizer.param_groups[0]
            if "momentum" not in defaults and "betas" not in defaults:
                raise ValueError("optimizer must support momentum or beta1 with `cycle_momentum` option enabled")
            self.use_beta1 = "betas" in defaults
            max_ms = _format_param("max_momentum", optimizer, max_momentum)
            base_ms = _format_param("base_momentum", optimizer, base_momentum)
            if last_epoch == -1:
                for m_m, b_m, group in zip(max_ms, base_ms, optimizer.param_groups):
                    if self.use_beta1:
                        group["betas"] = (m_m, *group["betas"][1:])
                    else:
                        group["momentum"] = m_m
                    group["max_momentum"] = m_m
                    group["base_momentum"] = b_m
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _annealing_cos(start, end, pct):
        cos_out = math.cos(math.pi * pct) + 1
        return end + (start - end) / 2.0 * cos_out

    @staticmethod
    def _annealing_linear(start, end, pct):
        return (end - start) * pct + start

    def _anneal_func(self, *args):
        if self._anneal_func_type == "cos":
            return self._annealing_cos(*args)
        return self._annealing_linear(*args)

    def _phase_values(self, group: Dict[str, Any], step_num: float):
        start_step = 0.0
        n = len(self._schedule_phases)
        for i, phase in enumerate(self._schedule_phases):
            end_step = phase["end_step"]
            if step_num <= end_step or i == n - 1:
                pct = (step_num - start_step) / (end_step - start_step)
                lr = self._anneal_func(_pyfloat(group[phase["start_lr"]]), _pyfloat(group[phase["end_lr"]]), pct)
                mom = None
                if self.cycle_momentum:
                    mom = self._anneal_func(_pyfloat(group[phase["start_momentum"]]),
                                            _pyfloat(group[phase["end_momentum"]]), pct)
                return lr, mom
            start_step = phase["end_step"]

    def get_lr(self) -> List[float]:
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(f"Tried to step {step_num} times. The specified number of total steps is "
                             f"{self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            lr, mom = self._phase_values(group, step_num)
            lrs.append(lr)
            if self.cycle_momentum:
                if self.use_beta1:
                    group["betas"] = (mom, *group["betas"][1:])
                else:
                    group["momentum"] = mom
        return lrs

    def _closed(self, step, which: str):
        s = jnp.asarray(step).astype(jnp.float32)
        anneal = ((lambda a, b, p: b + (a - b) / 2.0 * (jnp.cos(jnp.float32(math.pi) * p) + 1))
                  if self._anneal_func_type == "cos" else (lambda a, b, p: (b - a) * p + a))
        out = []
        for group in self.optimizer.param_groups:
            val, start = None, 0.0
            vals, conds = [], []
            for phase in self._schedule_phases:
                end = phase["end_step"]
                pct = (s - start) / (end - start)
                vals.append(anneal(_pyfloat(group[phase["start_" + which]]), _pyfloat(group[phase["end_" + which]]), pct))
                conds.append(s <= end)
                start = end
            val = vals[-1]
            for v, c in zip(vals[-2::-1], conds[-2::-1]):
                val = jnp.where(c, v, val)
            out.append(jnp.where(s > self.total_steps, jnp.nan, val).astype(jnp.float32))
        return out

    def lr_at(self, step):
        return self._closed(step, "lr")

    def momentum_at(self, step) -> Optional[List[Any]]:
        """The cycled momentum (or beta1) of every group at ``step``; None without cycle_momentum."""
        return self._closed(step, "momentum") if self.cycle_momentum else None


class ReduceLROnPlateau(LRScheduler):
    """Multiply the lr by ``factor`` once ``step(metric)`` has not improved for ``patience`` epochs.

    Driven by a metric (outside jit), so it has no ``lr_at``.

    Example:
        >>> opt = optim.SGD(model.parameters(), lr=0.5)
        >>> sched = lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=5)
        >>> for val_loss in [1.0] * 7:           # no improvement after the first epoch
        ...     sched.step(val_loss)
        >>> sched.get_last_lr()
        [0.05]
    """

    def __init__(self, optimizer: Any, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: Union[List[float], float] = 0, eps: float = 1e-8) -> None:
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        self.factor = factor
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != len(optimizer.param_groups):
                raise ValueError(f"expected {len(optimizer.param_groups)} min_lrs, got {len(min_lr)}")
            self.default_min_lr = None
            self.min_lrs = list(min_lr)
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self._last_lr = [_pyfloat(g["lr"]) for g in optimizer.param_groups]
        self._init_is_better(mode=mode, threshold=threshold, threshold_mode=threshold_mode)
        self._reset()

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def step(self, metrics: Any, epoch: Optional[int] = None) -> None:  # type: ignore[override]
        """Record ``metrics`` (a number or 0-d array) for one epoch; maybe reduce the lrs."""
        import warnings

        current = float(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        self.last_epoch = epoch
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr(epoch)
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._group_lrs()

    def _reduce_lr(self, epoch: int) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(f"The number of param groups in the `optimizer` ({len(groups)}) differs "
                                   f"from when `ReduceLROnPlateau` was initialized ({len(self.min_lrs)}), "
                                   "usually due to a new param group being added to the optimizer. Please "
                                   "modify the `min_lrs` field to match the length of the `optimizer` param groups.")
            self.min_lrs = [self.default_min_lr] * len(groups)
        current = self._group_lrs()
        for i, group in enumerate(groups):
            old_lr = current[i]
            new_lr = max(old_lr * self.factor, self.min_lrs[i])
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr
                current[i] = new_lr
        self._last_lr = current

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min" and self.threshold_mode == "abs":
            return a < best - self.threshold
        if self.mode == "max" and self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def _init_is_better(self, mode: str, threshold: float, threshold_mode: str) -> None:
        if mode not in {"min", "max"}:
            raise ValueError("mode " + mode + " is unknown!")
        if threshold_mode not in {"rel", "abs"}:
            raise ValueError("threshold mode " + threshold_mode + " is unknown!")
        self.mode_worse = inf if mode == "min" else -inf
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.__dict__.update(state_dict)
        self._init_is_better(mode=self.mode, threshold=self.threshold, threshold_mode=self.threshold_mode)
