"""Detecting JAX tracers that would escape into objects living outside their trace."""
from __future__ import annotations

from typing import Any

import jax

try:  # JAX's own notion of "no trace is active"; private, so guarded.
    from jax._src.core import trace_state_clean as _clean
except Exception:  # pragma: no cover - older/newer JAX without it
    def _clean() -> bool:
        return True

try:  # the current trace (private, so guarded: without it the escape check is skipped)
    from jax._src.core import trace_ctx as _trace_ctx
except Exception:  # pragma: no cover
    _trace_ctx = None

__all__ = ["trace_state_clean", "check_no_leak", "check_no_escape", "TracerLeakError"]

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


def _live_traces(inputs: list) -> set:
    """ids of the current trace, its ancestors, and the traces of ``inputs``' tracers."""
    live = set()
    t = _trace_ctx.trace
    while t is not None:
        live.add(id(t))
        t = getattr(t, "parent_trace", None)
    for x in inputs:
        if isinstance(x, _Tracer):
            live.add(id(x._trace))
    return live


def check_no_escape(inputs: list, leaves: list, names: Any, where: str) -> None:
    """Raise if a module leaf after a forward is a tracer of a nested transformation that the
    forward ran and finished (``jax.checkpoint`` / ``vmap`` / ``scan`` around a stateful
    submodule): neither the current trace, an enclosing one, nor one of the inputs'.

    ``names``: the leaves' names, or a function returning them (called only on error)."""
    if _trace_ctx is None or not any(isinstance(x, _Tracer) for x in leaves):
        return
    try:
        live = _live_traces(inputs)
        bad = [i for i, x in enumerate(leaves) if isinstance(x, _Tracer) and id(x._trace) not in live]
    except Exception:  # pragma: no cover - private JAX attributes changed: skip the check
        return
    if bad:
        name = (names() if callable(names) else names)[bad[0]]
        raise TracerLeakError(
            f"{where}: '{name}' holds a value traced inside a nested JAX transformation "
            "(jax.checkpoint, jax.vmap, a jax.lax.scan body, ...) that the forward ran, so it "
            "leaked out of its trace. Run a stateful module inside such a transformation "
            "functionally (pass it in and return it: "
            "jax.checkpoint(lambda m, x: jparam.call(m, x))(module, x)), or use "
            "jparam.utils.checkpoint.checkpoint(module, x) for rematerialisation.")
