"""torch.optim.Adadelta (lr default 1.0).

Example:
    >>> opt = optim.Adadelta(model.parameters(), rho=0.9)
"""
from __future__ import annotations

from typing import Optional

from jparam.optim import _transforms as T
from jparam.optim._txoptimizer import TxOptimizer, check_hparams

__all__ = ["Adadelta"]


class Adadelta(TxOptimizer):
    """torch.optim.Adadelta. State: ``step``, ``square_avg``, ``acc_delta``.

    Example:
        >>> opt = optim.Adadelta(model.parameters(), lr=1.0, rho=0.9, eps=1e-6)
        >>> model, opt = opt.step(model)
    """

    _static_keys = ("maximize",)

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, foreach: Optional[bool] = None, *, capturable: bool = False,
                 maximize: bool = False, differentiable: bool = False) -> None:
        check_hparams(lr=lr)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        check_hparams(eps=eps, weight_decay=weight_decay)
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                                      capturable=capturable, foreach=foreach, differentiable=differentiable))

    def _make(self, group, struct):
        return T.adadelta(group["lr"], group["rho"], group["eps"], group["weight_decay"],
                          maximize=bool(group["maximize"]))
