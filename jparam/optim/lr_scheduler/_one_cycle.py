"""OneCycleLR: torch's 1cycle policy (lr and momentum/beta1)."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Union

import jax.numpy as jnp

from jparam.optim.lr_scheduler._base import (
    LRScheduler, _check_optimizer, _format_param, _pyfloat)

__all__ = ["OneCycleLR"]


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
