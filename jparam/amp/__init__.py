"""Mixed precision, torch's way: :class:`autocast` (``torch.autocast``) and :class:`GradScaler`
(``torch.amp.GradScaler``). See ``docs/amp.md`` for the torch → jparam table.

Example:
    >>> model = nn.Linear(4, 2)
    >>> with jparam.amp.autocast("cpu", dtype=jnp.bfloat16):
    ...     y = model(jnp.ones((3, 4)))
    >>> y.dtype
    dtype(bfloat16)
"""
from jparam.amp._autocast import (autocast, cast_for_matmul, cast_to_float32, get_autocast_dtype,
                                  is_autocast_enabled)
from jparam.amp.grad_scaler import GradScaler

__all__ = ["autocast", "GradScaler", "is_autocast_enabled", "get_autocast_dtype",
           "cast_for_matmul", "cast_to_float32"]
