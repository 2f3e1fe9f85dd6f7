"""Detecting JAX tracers that would escape into objects living outside their trace."""
from __future__ import annotations

from typing import Any

import jax

try:  # JAX's own notion of "no trace is active"; private, so guarded.
    from jax._src.core import trace_state_clean as _clean
except Exception:  # pragma: no cover - older/newer JAX without it
    def _clean() -> bool:
        return True

__all__ = ["trace_state_clean", "check_no_leak", "TracerLeakError"]

_Tracer = jax.core.Tracer


def trace_state_clean() -> bool:
    """True when no JAX transformation (jit, grad, vmap, ...) is being traced."""
    return _clean()


class TracerLeakError(TypeError):
    """A traced value was about to be stored in a module or parameter created outside the trace."""


def _has_tracer(value: Any) -> bool:
    if isinstance(value, _Tracer):
        return True
    if isinstance(value, jax.Array) or value is None:
        return False
    if isinstance(value, (list, tuple, dict)):
        return any(isinstance(leaf, _Tracer) for leaf in jax.tree_util.tree_leaves(value))
    data = getattr(value, "_data", None)  # Parameter
    return isinstance(data, _Tracer)


def check_no_leak(value: Any, where: str) -> None:
    """Raise if ``value`` holds a tracer; called when mutating an object created outside any trace."""
    if _has_tracer(value):
        raise TracerLeakError(
            f"cannot store a traced value in {where}: this module/parameter was created outside "
            "the jax transformation being traced, so the value would leak out of its trace. "
            "Pass the model as an argument of the jitted function and return the new model "
            "(e.g. `out, model = jparam.call(model, x)` or `loss, model = jparam.backward(...)`) "
            "instead of mutating a model captured from outside.")
