"""``jparam.optim.lr_scheduler``: torch's learning-rate schedulers, epoch by epoch and inside jit.

Two ways to use a scheduler:

* **Per epoch, outside jit (torch's way).** ``sched.step()`` after ``opt.step(...)`` writes the
  next lr into ``optimizer.param_groups[i]["lr"]`` with torch's own (recursive) formulas, in
  Python floats, so ``get_last_lr()`` equals torch's to the last bit. Numeric group values
  are data to a jitted step, so this never recompiles.
* **Per step, inside jit.** ``sched.lr_at(step)`` is a pure closed form in ``jax.numpy``
  (``step`` may be a traced integer): ``lr_at(k)[i]`` is the lr torch's scheduler gives
  group ``i`` for optimizer step ``k`` (``k`` scheduler steps after construction).

A scheduler talks to its optimizer only through ``optimizer.param_groups`` (a list of
dicts with ``"lr"``, ``"initial_lr"``, ``"momentum"``/``"betas"``, ...), so it drives a
:class:`jparam.optim.Optimizer` or any object with such a list.

Example:
    >>> opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    >>> sched = lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
    >>> for epoch in range(90):
    ...     # ... the epoch's training steps: model, opt = train_step(model, opt, x, y)
    ...     sched.step()
    >>> sched.get_last_lr()      # torch's value: 0.5 * 0.1 ** 3 by its recursion, in float64
    [0.0005000000000000001]
"""
from jparam.optim.lr_scheduler._base import EPOCH_DEPRECATION_WARNING, LRScheduler
from jparam.optim.lr_scheduler._one_cycle import OneCycleLR
from jparam.optim.lr_scheduler._plateau import ReduceLROnPlateau
from jparam.optim.lr_scheduler._schedules import (
    ConstantLR, CosineAnnealingLR, ExponentialLR, LambdaLR, LinearLR, MultiplicativeLR, MultiStepLR, PolynomialLR,
    StepLR)
from jparam.optim.lr_scheduler._sequential import SequentialLR

__all__ = ["LRScheduler", "LambdaLR", "MultiplicativeLR", "PolynomialLR", "StepLR", "MultiStepLR", "ConstantLR",
           "LinearLR", "ExponentialLR", "CosineAnnealingLR", "SequentialLR", "OneCycleLR", "ReduceLROnPlateau",
           "EPOCH_DEPRECATION_WARNING"]
