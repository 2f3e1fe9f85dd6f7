"""Closed-form schedulers: LambdaLR, MultiplicativeLR, PolynomialLR, StepLR, MultiStepLR,
ConstantLR, LinearLR, ExponentialLR, CosineAnnealingLR (torch's recursive rule per epoch,
``lr_at`` in ``jax.numpy`` inside jit)."""
from __future__ import annotations

import math
import types
from bisect import bisect_right
from collections import Counter
from typing import Any, Callable, Dict, Iterable, List, Sequence, Union

import jax.numpy as jnp
import numpy as np

from jparam.optim.lr_scheduler._base import LRScheduler, _check_optimizer, _f32

__all__ = ["LambdaLR", "MultiplicativeLR", "PolynomialLR", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR",
           "ExponentialLR", "CosineAnnealingLR"]


# ---------------------------------------------------------------------------- simple schedulers
def _per_group(optimizer: Any, lr_lambda: Union[Callable, Sequence[Callable]]) -> List[Callable]:
    """One function per parameter group: ``lr_lambda`` repeated, or a list of one per group."""
    if not isinstance(lr_lambda, (list, tuple)):
        return [lr_lambda] * len(optimizer.param_groups)
    if len(lr_lambda) != len(optimizer.param_groups):
        raise ValueError(f"Expected {len(optimizer.param_groups)} lr_lambdas, but got {len(lr_lambda)}")
    return list(lr_lambda)


class LambdaLR(LRScheduler):
    """``lr = base_lr * lr_lambda(epoch)``; ``lr_at`` works when ``lr_lambda`` uses jnp-compatible ops.

    Example:
        >>> sched = lr_scheduler.LambdaLR(opt, lambda e: 0.95 ** e)
        >>> for epoch in range(3):
        ...     sched.step()
        >>> sched.get_last_lr()  # torch's value (0.1 * 0.95 ** 3)
        [0.0857375]
    """

    def __init__(self, optimizer: Any, lr_lambda: Union[Callable, Sequence[Callable]],
                 last_epoch: int = -1) -> None:
        self.optimizer = optimizer
        _check_optimizer(optimizer)
        self.lr_lambdas = _per_group(optimizer, lr_lambda)
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> Dict[str, Any]:
        sd = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}
        sd["lr_lambdas"] = [None if isinstance(fn, types.FunctionType) else fn.__dict__.copy()
                            for fn in self.lr_lambdas]
        return sd

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        lambdas = state_dict.pop("lr_lambdas")
        self.__dict__.update(state_dict)
        for idx, fn in enumerate(lambdas):
            if fn is not None:
                self.lr_lambdas[idx].__dict__.update(fn)

    def get_lr(self) -> List[float]:
        return [base * lmbda(self.last_epoch) for lmbda, base in zip(self.lr_lambdas, self.base_lrs)]

    def lr_at(self, step):
        return [_f32(base) * lmbda(step) for lmbda, base in zip(self.lr_lambdas, self.base_lrs)]


class MultiplicativeLR(LRScheduler):
    """``lr *= lr_lambda(epoch)`` each epoch (recursive only: no ``lr_at``).

    Example:
        >>> sched = lr_scheduler.MultiplicativeLR(opt, lambda e: 0.95)
        >>> for epoch in range(3):
        ...     sched.step()
        >>> sched.get_last_lr()  # torch's value (0.1 * 0.95 * 0.95 * 0.95)
        [0.0857375]
    """

    def __init__(self, optimizer: Any, lr_lambda: Union[Callable, Sequence[Callable]],
                 last_epoch: int = -1) -> None:
        self.optimizer = optimizer
        _check_optimizer(optimizer)
        self.lr_lambdas = _per_group(optimizer, lr_lambda)
        for fn in self.lr_lambdas:
            if not callable(fn):
                raise TypeError(f"lr_lambda should be a function, but got {type(fn).__name__}")
        super().__init__(optimizer, last_epoch)

    state_dict = LambdaLR.state_dict
    load_state_dict = LambdaLR.load_state_dict

    def get_lr(self) -> List[float]:
        lrs = self._group_lrs()
        if self._is_initial:
            return lrs
        return [lr * fn(self.last_epoch) for fn, lr in zip(self.lr_lambdas, lrs)]


class PolynomialLR(LRScheduler):
    """``lr = base_lr * (1 - min(epoch, total_iters) / total_iters) ** power``.

    Example:
        >>> sched = lr_scheduler.PolynomialLR(opt, total_iters=50, power=0.9)
        >>> for epoch in range(10):
        ...     sched.step()
        >>> sched.get_last_lr()  # torch's value (by its recursion)
        [0.08180521460508584]
    """

    def __init__(self, optimizer: Any, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1) -> None:
        self.total_iters = total_iters
        self.power = power
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        lrs = self._group_lrs()
        if self._is_initial or self.last_epoch > self.total_iters:
            return lrs
        f = ((1.0 - self.last_epoch / self.total_iters)
             / (1.0 - (self.last_epoch - 1) / self.total_iters)) ** self.power
        return [lr * f for lr in lrs]

    def _get_closed_form_lr(self) -> List[float]:
        return [base * (1.0 - min(self.total_iters, self.last_epoch) / self.total_iters) ** self.power
                for base in self.base_lrs]

    def lr_at(self, step):
        e = jnp.minimum(jnp.asarray(step), self.total_iters).astype(jnp.float32)
        f = jnp.power(jnp.maximum((self.total_iters - e) / self.total_iters, 0.0), jnp.float32(self.power))
        return [_f32(base) * f for base in self.base_lrs]


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)``.

    Example:
        >>> sched = lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
        >>> for epoch in range(30):
        ...     sched.step()
        >>> sched.get_last_lr()  # torch's value (0.1 * 0.1 in float64)
        [0.010000000000000002]
    """

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        lrs = self._group_lrs()
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lrs
        return [lr * self.gamma for lr in lrs]

    def _get_closed_form_lr(self) -> List[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]

    def lr_at(self, step):
        k = (jnp.asarray(step) // self.step_size).astype(jnp.float32)
        return [_f32(base) * jnp.power(_f32(self.gamma), k) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """``lr = base_lr * gamma ** bisect_right(milestones, epoch)``.

    Example:
        >>> sched = lr_scheduler.MultiStepLR(opt, milestones=[30, 80], gamma=0.1)
        >>> for epoch in range(80):
        ...     sched.step()
        >>> sched.get_last_lr()  # torch's value (two decays)
        [0.0010000000000000002]
    """

    def __init__(self, optimizer: Any, milestones: Iterable[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        lrs = self._group_lrs()
        if self.last_epoch not in self.milestones:
            return lrs
        return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in lrs]

    def _get_closed_form_lr(self) -> List[float]:
        ms = sorted(self.milestones.elements())
        return [base * self.gamma ** bisect_right(ms, self.last_epoch) for base in self.base_lrs]

    def lr_at(self, step):
        ms = jnp.asarray(sorted(self.milestones.elements()) or [np.iinfo(np.int32).max], jnp.int32)
        k = jnp.searchsorted(ms, jnp.asarray(step, jnp.int32), side="right").astype(jnp.float32)
        if not self.milestones:
            k = k * 0
        return [_f32(base) * jnp.power(_f32(self.gamma), k) for base in self.base_lrs]


class ConstantLR(LRScheduler):
    """``lr = base_lr * factor`` until ``total_iters``, then ``base_lr``.

    Example:
        >>> sched = lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=4)
        >>> for epoch in range(3):
        ...     sched.step()
        >>> sched.get_last_lr()  # torch's value (still 0.5 * lr before epoch 4)
        [0.05]
    """

    def __init__(self, optimizer: Any, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1) -> None:
        if factor > 1.0 or factor < 0:
            raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")
        self.factor = factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        lrs = self._group_lrs()
        if self.last_epoch == 0:
            return [lr * self.factor for lr in lrs]
        if self.last_epoch != self.total_iters:
            return lrs
        return [lr * (1.0 / self.factor) for lr in lrs]

    def _get_closed_form_lr(self) -> List[float]:
        return [base * (self.factor + (self.last_epoch >= self.total_iters) * (1 - self.factor))
                for base in self.base_lrs]

    def lr_at(self, step):
        done = (jnp.asarray(step) >= self.total_iters).astype(jnp.float32)
        return [_f32(base) * (self.factor + done * (1 - self.factor)) for base in self.base_lrs]


class LinearLR(LRScheduler):
    """``lr = base_lr * (start + (end - start) * min(epoch, total_iters) / total_iters)``.

    Example:
        >>> sched = lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=10)  # warm-up
        >>> for epoch in range(5):
        ...     sched.step()
        >>> sched.get_last_lr()  # torch's value (halfway from 0.01 to 0.1)
        [0.055000000000000014]
    """

    def __init__(self, optimizer: Any, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError("Starting multiplicative factor expected to be greater than 0 and less or equal to 1.")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        lrs = self._group_lrs()
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in lrs]
        if self._is_initial or self.last_epoch > self.total_iters:
            return lrs
        d = self.end_factor - self.start_factor
        return [lr * (1.0 + d / (self.total_iters * self.start_factor + (self.last_epoch - 1) * d))
                for lr in lrs]

    def _get_closed_form_lr(self) -> List[float]:
        return [base * (self.start_factor + (self.end_factor - self.start_factor)
                        * min(self.total_iters, self.last_epoch) / self.total_iters)
                for base in self.base_lrs]

    def lr_at(self, step):
        e = jnp.minimum(jnp.asarray(step), self.total_iters).astype(jnp.float32)
        f = self.start_factor + (self.end_factor - self.start_factor) * e / self.total_iters
        return [_f32(base) * f for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** epoch``.

    Example:
        >>> sched = lr_scheduler.ExponentialLR(opt, gamma=0.95)
        >>> for epoch in range(3):
        ...     sched.step()
        >>> sched.get_last_lr()  # torch's value (0.1 * 0.95 ** 3)
        [0.0857375]
    """

    def __init__(self, optimizer: Any, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        lrs = self._group_lrs()
        if self._is_initial:
            return lrs
        return [lr * self.gamma for lr in lrs]

    def _get_closed_form_lr(self) -> List[float]:
        return [base * self.gamma ** self.last_epoch for base in self.base_lrs]

    def lr_at(self, step):
        e = jnp.asarray(step).astype(jnp.float32)
        return [_f32(base) * jnp.power(_f32(self.gamma), e) for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """``eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2``, by torch's recursion.

    Past ``T_max`` the lr rises again (period ``2 T_max``) as torch's does; optax's
    ``cosine_decay_schedule`` stays flat instead.

    Example:
        >>> sched = lr_scheduler.CosineAnnealingLR(opt, T_max=100, eta_min=1e-5)
        >>> for epoch in range(50):
        ...     sched.step()
        >>> sched.get_last_lr()  # torch's value (halfway: (0.1 + 1e-5) / 2)
        [0.05000500000000003]
    """

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        lrs = self._group_lrs()
        e, T, lo = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return lrs
        if self._step_count == 1 and e > 0:
            return [lo + (base - lo) * (1 + math.cos(e * math.pi / T)) / 2 for base in self.base_lrs]
        if (e - 1 - T) % (2 * T) == 0:
            return [lr + (base - lo) * (1 - math.cos(math.pi / T)) / 2
                    for base, lr in zip(self.base_lrs, lrs)]
        return [(1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T)) * (lr - lo) + lo
                for lr in lrs]

    def _get_closed_form_lr(self) -> List[float]:
        return [self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
                for base in self.base_lrs]

    def lr_at(self, step):
        T = self.T_max
        # reduce modulo the period 2T first so float32 keeps its precision for large steps
        e = jnp.mod(jnp.asarray(step, jnp.int32), 2 * T).astype(jnp.float32)
        c = (1 + jnp.cos(jnp.float32(math.pi) * (e / T))) / 2
        return [_f32(self.eta_min) + _f32(base - self.eta_min) * c for base in self.base_lrs]


