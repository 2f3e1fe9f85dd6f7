"""The Adam family: Adam, AdamW, Adamax, NAdam, RAdam (torch's signatures, defaults, numbers).

Example:
    >>> opt = optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    >>> model, opt = opt.step(model)
"""
from __future__ import annotations

from typing import Optional, Tuple

from jparam.optim import _transforms as T
from jparam.optim._txoptimizer import TxOptimizer, check_hparams

__all__ = ["Adam", "AdamW", "Adamax", "NAdam", "RAdam"]


class Adam(TxOptimizer):
    """torch.optim.Adam: L2 ``weight_decay``; ``amsgrad`` maxes the raw second moment as torch.

    ``decoupled_weight_decay=True`` makes it AdamW. State per parameter: ``step``,
    ``exp_avg``, ``exp_avg_sq`` (+ ``max_exp_avg_sq``).

    Example:
        >>> opt = optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), amsgrad=True)
        >>> model, opt = opt.step(model)
    """

    _static_keys = ("amsgrad", "maximize", "decoupled_weight_decay")

    def __init__(self, params, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: Optional[bool] = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: Optional[bool] = None,
                 decoupled_weight_decay: bool = False) -> None:
        check_hparams(lr=lr, eps=eps, weight_decay=weight_decay, betas=betas)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                                      capturable=capturable, differentiable=differentiable, fused=fused,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _make(self, group, struct):
        return T.adam(group["lr"], group["betas"], group["eps"], group["weight_decay"],
                      amsgrad=bool(group["amsgrad"]), maximize=bool(group["maximize"]),
                      decoupled_weight_decay=bool(group["decoupled_weight_decay"]))


class AdamW(Adam):
    """torch.optim.AdamW: ``p *= 1 - lr*weight_decay`` then Adam (default ``weight_decay=1e-2``).

    Example:
        >>> opt = optim.AdamW(model.parameters(), lr=1e-3)
    """

    def __init__(self, params, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: Optional[bool] = None, capturable: bool = False,
                 differentiable: bool = False, fused: Optional[bool] = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)


class Adamax(TxOptimizer):
    """torch.optim.Adamax (infinity-norm Adam). State: ``step``, ``exp_avg``, ``exp_inf``.

    Example:
        >>> opt = optim.Adamax(model.parameters(), lr=2e-3)
    """

    _static_keys = ("maximize",)

    def __init__(self, params, lr: float = 2e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, foreach: Optional[bool] = None, *,
                 maximize: bool = False, differentiable: bool = False, capturable: bool = False) -> None:
        check_hparams(lr=lr, eps=eps, weight_decay=weight_decay, betas=betas)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      foreach=foreach, maximize=maximize, differentiable=differentiable,
                                      capturable=capturable))

    def _make(self, group, struct):
        return T.adamax(group["lr"], group["betas"], group["eps"], group["weight_decay"],
                        maximize=bool(group["maximize"]))


class NAdam(TxOptimizer):
    """torch.optim.NAdam with torch's momentum schedule. State: ``step``, ``mu_product``,
    ``exp_avg``, ``exp_avg_sq``.

    Example:
        >>> opt = optim.NAdam(model.parameters(), lr=2e-3, momentum_decay=4e-3)
    """

    _static_keys = ("maximize", "decoupled_weight_decay")

    def __init__(self, params, lr: float = 2e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, foreach: Optional[bool] = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False) -> None:
        check_hparams(lr=lr, eps=eps, weight_decay=weight_decay, betas=betas, momentum_decay=momentum_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                                      foreach=foreach, capturable=capturable, differentiable=differentiable))

    def _make(self, group, struct):
        return T.nadam(group["lr"], group["betas"], group["eps"], group["weight_decay"],
                       group["momentum_decay"], maximize=bool(group["maximize"]),
                       decoupled_weight_decay=bool(group["decoupled_weight_decay"]))


class RAdam(TxOptimizer):
    """torch.optim.RAdam (rectified Adam, threshold ``rho_t > 5``). State: ``step``,
    ``exp_avg``, ``exp_avg_sq``.

    Example:
        >>> opt = optim.RAdam(model.parameters(), lr=1e-3)
    """

    _static_keys = ("maximize", "decoupled_weight_decay")

    def __init__(self, params, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, decoupled_weight_decay: bool = False, *,
                 foreach: Optional[bool] = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False) -> None:
        check_hparams(lr=lr, eps=eps, weight_decay=weight_decay, betas=betas)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      differentiable=differentiable))

    def _make(self, group, struct):
        return T.radam(group["lr"], group["betas"], group["eps"], group["weight_decay"],
                       maximize=bool(group["maximize"]),
                       decoupled_weight_decay=bool(group["decoupled_weight_decay"]))


