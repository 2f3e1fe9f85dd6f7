"""SGD with torch's momentum, dampening, Nesterov, weight decay and maximize."""
from __future__ import annotations

from typing import Any, Dict

from jparam.optim import _transforms as T
from jparam.optim._txoptimizer import TxOptimizer

__all__ = ["SGD"]


class SGD(TxOptimizer):
    """torch.optim.SGD: same signature, defaults and numbers.

    Example:
        >>> opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> model, opt = opt.step(model)
    """

    _static_keys = ("nesterov", "maximize")

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: Any = None, differentiable: bool = False, fused: Any = None) -> None:
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                                      foreach=foreach, differentiable=differentiable, fused=fused))

    def _group_struct(self, group: Dict[str, Any]) -> tuple:
        # (has buffer, has dampening, has weight decay, momentum non-zero now): static, so the
        # compiled update has no selects for them (see _transforms.sgd)
        return (group["momentum"] != 0, group["dampening"] != 0, group["weight_decay"] != 0,
                group["momentum"] != 0)

    def _next_struct(self, group: Dict[str, Any], old: tuple) -> tuple:
        # a host-side edit widens the first three, never narrows them (torch keeps its buffer)
        new = self._group_struct(group)
        return tuple(a or b for a, b in zip(old[:3], new[:3])) + new[3:]

    def _convert_state(self, group, old, new, state, like):
        if new[0] and not old[0]:
            return self._transform(group, new).init(like)  # momentum switched on: a new buffer
        return state  # the buffer and its `started` flag carry over unchanged

    def _make(self, group, struct) -> T.TorchTransform:
        return T.sgd(group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
                     has_momentum=struct[0], nesterov=group["nesterov"], maximize=group["maximize"],
                     has_dampening=struct[1], has_weight_decay=struct[2], momentum_active=struct[3])
