"""torch.optim.RMSprop (eps outside the sqrt, centered, momentum applied before lr).

Example:
    >>> opt = optim.RMSprop(model.parameters(), lr=1e-2, momentum=0.9, centered=True)
"""
from __future__ import annotations

from typing import Optional

from jparam.optim import _transforms as T
from jparam.optim._txoptimizer import TxOptimizer, check_hparams

__all__ = ["RMSprop"]


class RMSprop(TxOptimizer):
    """torch.optim.RMSprop. State: ``step``, ``square_avg`` (+ ``momentum_buffer`` when the group
    is created with ``momentum > 0``, + ``grad_avg`` when ``centered``).

    Example:
        >>> opt = optim.RMSprop(model.parameters(), lr=1e-2, alpha=0.99)
        >>> model, opt = opt.step(model)
    """

    _static_keys = ("centered", "maximize")

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False, foreach: Optional[bool] = None, maximize: bool = False,
                 differentiable: bool = False) -> None:
        check_hparams(lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                                      weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable))

    def _group_struct(self, group) -> tuple:
        return (group["momentum"] > 0,)

    def _make(self, group, struct):
        return T.rmsprop(group["lr"], group["alpha"], group["eps"], group["weight_decay"], group["momentum"],
                         centered=bool(group["centered"]), has_momentum=struct[0],
                         maximize=bool(group["maximize"]))
