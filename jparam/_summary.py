"""``jparam.summary``: a torchinfo-style table of a model, output shapes by ``jax.eval_shape``.

No FLOPs are computed and nothing is executed: the forward is traced abstractly, with
temporary forward hooks recording every submodule's output shape (they are removed again,
even when the forward fails).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

__all__ = ["summary", "ModelSummary", "SummaryRow"]


@dataclass
class SummaryRow:
    """One module of the table."""

    name: str                 # dotted path ("" for the root)
    type: str                 # class name
    depth: int
    output_shape: Any = None  # tuple, or a pytree of tuples, or None (not called)
    calls: int = 0            # how many times the forward called it
    params: int = 0           # parameters in its subtree (tied ones once)
    trainable: int = 0        # of which requires_grad


@dataclass
class ModelSummary:
    """What :func:`summary` returns; ``print`` it (``str``) for the table."""

    rows: list[SummaryRow]
    total_params: int
    trainable_params: int
    param_bytes: int
    buffer_count: int
    buffer_bytes: int
    input_bytes: int = 0
    output_bytes: int = 0
    output: Any = field(default=None, repr=False)  # the model's output, as ShapeDtypeStructs

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    def __str__(self) -> str:
        return _render(self)

    def _repr_pretty_(self, p, cycle):  # IPython
        p.text(str(self))


def _nbytes(x: Any) -> int:
    return int(np.prod(x.shape, dtype=np.int64)) * np.dtype(x.dtype).itemsize


def _shape_tree(out: Any) -> Any:
    leaves, td = jax.tree_util.tree_flatten(out)
    shapes = [tuple(x.shape) if hasattr(x, "shape") else None for x in leaves]
    if td == jax.tree_util.tree_structure(0):  # a single array
        return shapes[0]
    return jax.tree_util.tree_unflatten(td, shapes)


def _fmt_shape(s: Any) -> str:
    if s is None:
        return "--"
    if isinstance(s, tuple) and all(isinstance(d, (int, np.integer)) for d in s):
        return "[" + ", ".join(str(int(d)) for d in s) + "]"
    if isinstance(s, (list, tuple)):
        inner = ", ".join(_fmt_shape(e) for e in s)
        return f"({inner})" if isinstance(s, tuple) else f"[{inner}]"
    if isinstance(s, dict):
        return "{" + ", ".join(f"{k}: {_fmt_shape(v)}" for k, v in s.items()) + "}"
    return str(s)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def _render(s: ModelSummary) -> str:
    head = ("Layer (type)", "Output Shape", "Param #", "Trainable")
    body = []
    for r in s.rows:
        label = r.type if r.depth == 0 else "  " * (r.depth - 1) + f"└─{r.name.rsplit('.', 1)[-1]} ({r.type})"
        shape = _fmt_shape(r.output_shape)
        if r.calls > 1:
            shape += f" x{r.calls} calls"
        train = "--" if r.params == 0 else ("True" if r.trainable == r.params else
                                            "False" if r.trainable == 0 else "Partial")
        body.append((label, shape, f"{r.params:,}", train))
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) for i in range(4)]
    width = sum(widths) + 3 * 3
    line = lambda cells: "   ".join(c.ljust(w) if i == 0 else c.rjust(w) if i == 2 else c.ljust(w)
                                    for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = ["=" * width, line(head), "=" * width]
    out += [line(b) for b in body]
    out += ["=" * width,
            f"Total params: {s.total_params:,}",
            f"Trainable params: {s.trainable_params:,}",
            f"Non-trainable params: {s.non_trainable_params:,}",
            f"Buffers: {s.buffer_count:,} ({_mb(s.buffer_bytes)} MB)",
            "=" * width,
            f"Input size (MB): {_mb(s.input_bytes)}",
            f"Output size (MB): {_mb(s.output_bytes)}",
            f"Params size (MB): {_mb(s.param_bytes)}",
            f"Estimated total size (MB): {_mb(s.input_bytes + s.output_bytes + s.param_bytes + s.buffer_bytes)}",
            "=" * width]
    return "\n".join(out)


def summary(model: Any, *example_inputs: Any, **example_kwargs: Any) -> ModelSummary:
    """A torchinfo-style summary: module tree, output shapes, parameter counts, sizes.

    ``example_inputs`` may be arrays or ``jax.ShapeDtypeStruct``s: the forward is traced with
    ``jax.eval_shape``, so nothing is computed and no memory is allocated for activations.
    Without inputs, output shapes are left out.  Tied parameters are counted once; frozen
    parameters (``requires_grad=False``) count as non-trainable.  The model is not modified
    (buffer updates made by the forward, e.g. BatchNorm statistics, are discarded).

    Example:
        >>> print(jparam.summary(model, jax.ShapeDtypeStruct((32, 4), jnp.float32)))
        =================================================
        Layer (type)   Output Shape   Param #   Trainable
        =================================================
        Linear         [32, 2]             10   True
        =================================================
        Total params: 10
        Trainable params: 10
        Non-trainable params: 0
        Buffers: 0 (0.00 MB)
        =================================================
        Input size (MB): 0.00
        Output size (MB): 0.00
        Params size (MB): 0.00
        Estimated total size (MB): 0.00
        =================================================
    """
    from jparam._autodiff import call
    from jparam._module import Module

    if not isinstance(model, Module):
        raise TypeError(f"jparam.summary expects a jparam.nn.Module, got {type(model).__name__}")
    mods = list(model.named_modules())
    rows: dict[str, SummaryRow] = {}
    for name, m in mods:
        rows[name] = SummaryRow(name=name, type=type(m).__name__,
                                depth=0 if name == "" else name.count(".") + 1)
        seen = {id(p): p for _, p in m.named_parameters()}
        rows[name].params = sum(int(np.prod(p.shape, dtype=np.int64)) for p in seen.values())
        rows[name].trainable = sum(int(np.prod(p.shape, dtype=np.int64))
                                   for p in seen.values() if p.requires_grad)

    output = None
    in_bytes = out_bytes = 0
    if example_inputs or example_kwargs:
        records: dict[str, list] = {name: [] for name, _ in mods}
        handles = []

        def hook_for(name):
            def hook(mod, args, out):
                records[name].append(_shape_tree(out))
            return hook

        missing = object()
        # hooks are static attributes: restore each module's exact previous value (not even
        # an empty entry may stay behind, or the tree structure changes and jit retraces)
        saved = [(m.__dict__, m.__dict__.get("_forward_hooks", missing)) for _, m in mods]
        try:
            for name, m in mods:
                handles.append(m.register_forward_hook(hook_for(name)))
            output = jax.eval_shape(lambda mdl, a, k: call(mdl, *a, **k)[0],
                                    model, example_inputs, example_kwargs)
        finally:
            for d, old in saved:
                if old is missing:
                    d.pop("_forward_hooks", None)
                else:
                    d["_forward_hooks"] = old
        for name, recs in records.items():
            rows[name].calls = len(recs)
            rows[name].output_shape = recs[0] if recs else None
        in_bytes = sum(_nbytes(x) for x in jax.tree_util.tree_leaves((example_inputs, example_kwargs))
                       if hasattr(x, "shape"))
        out_bytes = sum(_nbytes(x) for x in jax.tree_util.tree_leaves(output) if hasattr(x, "shape"))

    params = [p for _, p in model.named_parameters()]
    buffers = [b for _, b in model.named_buffers()]
    return ModelSummary(
        rows=list(rows.values()),
        total_params=rows[""].params,
        trainable_params=rows[""].trainable,
        param_bytes=sum(_nbytes(p) for p in params),
        buffer_count=len(buffers),
        buffer_bytes=sum(_nbytes(b) for b in buffers),
        input_bytes=in_bytes,
        output_bytes=out_bytes,
        output=output,
    )
