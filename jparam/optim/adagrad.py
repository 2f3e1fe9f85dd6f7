"""torch.optim.Adagrad (lr_decay, initial_accumulator_value, eps outside the sqrt).

Example:
    >>> opt = optim.Adagrad(model.parameters(), lr=1e-2, lr_decay=1e-4)
"""
from __future__ import annotations

from typing import Optional

from jparam.optim import _transforms as T
from jparam.optim._txoptimizer import TxOptimizer, check_hparams

__all__ = ["Adagrad"]


class Adagrad(TxOptimizer):
    """torch.optim.Adagrad. State (created at construction, as torch): ``step``, ``sum``.

    Example:
        >>> opt = optim.Adagrad(model.parameters(), lr=1e-2, initial_accumulator_value=0.1)
        >>> model, opt = opt.step(model)
    """

    _static_keys = ("maximize",)

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, foreach: Optional[bool] = None,
                 *, maximize: bool = False, differentiable: bool = False, fused: Optional[bool] = None) -> None:
        check_hparams(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                      initial_accumulator_value=initial_accumulator_value, eps=eps)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable, fused=fused))

    def _make(self, group, struct):
        return T.adagrad(group["lr"], group["lr_decay"], group["weight_decay"],
                         group["initial_accumulator_value"], group["eps"], maximize=bool(group["maximize"]))
