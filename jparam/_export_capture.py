"""Capture a torch model with ``torch.export`` and turn it into the torch-free :class:`Graph`.

Runs once, at conversion time (torch is imported here and nowhere else in the converter).
The program is exported with ``torch.export.export`` (non-strict) and functionalised with
``run_decompositions({})``: no operator is decomposed further (``linear``, ``conv2d``,
``layer_norm``, ``scaled_dot_product_attention`` stay whole), in-place updates become
outputs (BatchNorm's running statistics arrive as buffer mutations), and every operator is
checked against the table in :mod:`jparam._export_ops` before anything runs.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from jparam._export_graph import DType, Graph, Node, Ref, Spec
from jparam._export_ops import OPS

__all__ = ["capture", "layout_of"]

_DROP_KWARGS = {"device", "pin_memory", "layout", "memory_format", "non_blocking"}


def _torch_dir() -> str:
    import torch

    return os.path.dirname(torch.__file__) + os.sep


def _where(node: Any) -> str:
    """The user's source line behind a graph node: the innermost frame outside torch."""
    trace = node.meta.get("stack_trace") or ""
    frames, cur = [], None
    for line in trace.splitlines():
        s = line.strip()
        if s.startswith("File "):
            cur = [s]
            frames.append(cur)
        elif cur is not None and s:
            cur.append(s)
    if not frames:
        return ""
    tdir = _torch_dir()
    user = [f for f in frames if tdir not in f[0]]
    return " | ".join((user or frames)[-1])


def _module_path(node: Any) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path, cls = list(stack.values())[-1][:2]
    cls = cls if isinstance(cls, str) else getattr(cls, "__qualname__", str(cls))
    return f"{path or '<root>'} ({cls})"


def _op_name(target: Any) -> str:
    import torch

    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    mod = getattr(target, "__module__", "") or ""
    name = getattr(target, "__name__", repr(target))
    if target is __import__("operator").getitem:
        return "getitem"
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    if mod.startswith("torch") and name.startswith("sym_"):
        return f"torch.{name}"
    if mod == "math":
        return f"math.{name}"
    return f"{mod}.{name}"


def _arg(a: Any, where: str) -> Any:
    import torch

    if isinstance(a, torch.fx.Node):
        return Ref(a.name)
    if isinstance(a, (list, tuple)):
        out = [_arg(e, where) for e in a]
        return tuple(out) if isinstance(a, tuple) else out
    if isinstance(a, torch.dtype):
        return DType(str(a).removeprefix("torch."))
    if isinstance(a, (torch.device, torch.layout, torch.memory_format)):
        return None
    if a is None or isinstance(a, (bool, int, float, str)):
        return a
    raise NotImplementedError(f"jparam.from_torch: {where}: argument {a!r} of type "
                              f"{type(a).__name__} cannot be converted")


def _spec(s: Any, where: str) -> Spec:
    """torch's pytree ``TreeSpec`` without torch."""
    if s.is_leaf():
        return Spec("leaf")
    typ, ctx = s.type, s.context
    kids = tuple(_spec(c, where) for c in s.children())
    if typ is type(None):
        return Spec("none")
    if typ is tuple:
        return Spec("tuple", kids)
    if typ is list:
        return Spec("list", kids)
    if isinstance(typ, type) and issubclass(typ, tuple) and hasattr(typ, "_fields"):
        return Spec("namedtuple", kids, tuple(typ._fields), typ.__name__)
    if typ is dict or (isinstance(typ, type) and issubclass(typ, dict) and
                       typ.__module__ == "collections"):
        return Spec("dict", kids, tuple(ctx))
    if isinstance(ctx, (list, tuple)) and len(ctx) == len(kids) and all(isinstance(k, str) for k in ctx):
        return Spec("mapping", kids, tuple(ctx), getattr(typ, "__qualname__", str(typ)))
    raise NotImplementedError(f"jparam.from_torch: the model's {where} contain a "
                              f"{getattr(typ, '__qualname__', typ)}, which cannot be rebuilt "
                              "without torch; return tuples, lists, dicts or dataclass-like "
                              "mappings of tensors")


def _bound(v: Any) -> Optional[int]:
    """A range bound as an int, None when infinite (sympy's ``oo``, torch's ``int_oo``)."""
    try:
        return int(v)
    except Exception:
        return None


def _dim_meta(d: Any, ranges: dict) -> Any:
    """A static dim as its int; a dynamic one as ``(min, max)`` from the export's range
    constraints (a bound None when unbounded), or None when it is an expression."""
    if isinstance(d, int):
        return d
    vr = ranges.get(d.node.expr)
    return None if vr is None else (_bound(vr.lower), _bound(vr.upper))


def _user_meta(node: Any, ranges: dict) -> tuple:
    """(shape, dtype kind) of a user input placeholder; see :func:`_dim_meta` for the dims."""
    import torch

    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        return None
    shape = tuple(_dim_meta(d, ranges) for d in val.shape)
    kind = "b" if val.dtype == torch.bool else ("f" if val.is_floating_point() else
                                              ("c" if val.is_complex() else "i"))
    return (shape, kind)


def capture(tmodel: Any, args: tuple, kwargs: Optional[dict], dynamic_shapes: Any) -> Graph:
    """Export ``tmodel`` in its current mode and convert the graph (no torch left in it)."""
    import torch
    from torch.export import graph_signature as gs

    try:
        ep = torch.export.export(tmodel, tuple(args), kwargs, dynamic_shapes=dynamic_shapes,
                                 strict=False)
    except Exception as e:
        raise RuntimeError(f"jparam.from_torch: torch.export could not capture "
                           f"{type(tmodel).__qualname__} ({type(e).__name__}: {e})") from e
    ep = ep.run_decompositions({})
    sig = ep.graph_signature
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
    inputs, user_consts, user_meta = [], [], []
    n_user = 0
    for spec, ph in zip(sig.input_specs, placeholders):
        kind = spec.kind
        if kind == gs.InputKind.PARAMETER:
            inputs.append((ph.name, "parameter", spec.target))
        elif kind == gs.InputKind.BUFFER:
            inputs.append((ph.name, "buffer", spec.target))
        elif kind == gs.InputKind.CONSTANT_TENSOR:
            inputs.append((ph.name, "constant", spec.target))
        elif kind == gs.InputKind.USER_INPUT:
            if isinstance(spec.arg, gs.ConstantArgument):
                user_consts.append((n_user, spec.arg.value))
            inputs.append((ph.name, "user", n_user))
            user_meta.append(_user_meta(ph, ep.range_constraints))
            n_user += 1
        else:
            raise NotImplementedError(f"jparam.from_torch: graph input {ph.name} of kind "
                                      f"{kind.name} is not supported")
    from jparam._convert import torch_to_numpy

    constants = {}
    for name, kind, target in inputs:
        if kind == "constant":
            c = ep.constants[target]
            if not isinstance(c, torch.Tensor):
                raise NotImplementedError(f"jparam.from_torch: constant {target} is a "
                                          f"{type(c).__name__}, not a tensor")
            constants[target] = torch_to_numpy(c)

    nodes, outputs, mutations = [], [], []
    unknown = []
    for n in ep.graph.nodes:
        if n.op == "placeholder":
            continue
        where, module = _where(n), _module_path(n)
        if n.op == "call_function":
            op = _op_name(n.target)
            if op not in OPS:
                unknown.append(f"  {op} (graph node {n.name!r}, called from {module or '?'}; "
                               f"{where or 'no source line recorded'})")
                continue
            label = f"{op} at node {n.name!r}"
            kw = tuple((k, _arg(v, label)) for k, v in n.kwargs.items() if k not in _DROP_KWARGS)
            nodes.append(Node(n.name, op, _arg(n.args, label), kw, where, module))
        elif n.op == "output":
            outs = n.args[0]
            for ospec, val in zip(sig.output_specs, outs):
                if ospec.kind == gs.OutputKind.USER_OUTPUT:
                    outputs.append(_arg(val, "output"))
                elif ospec.kind == gs.OutputKind.BUFFER_MUTATION:
                    mutations.append((ospec.target, _arg(val, "output")))
                elif ospec.kind == gs.OutputKind.USER_INPUT_MUTATION:
                    raise NotImplementedError(
                        f"jparam.from_torch: the model writes into its input "
                        f"{ospec.target!r} in place; JAX arrays are immutable: return the "
                        "new value instead")
                else:
                    raise NotImplementedError(f"jparam.from_torch: graph output of kind "
                                              f"{ospec.kind.name} is not supported")
        else:  # get_attr / call_module: control-flow sub-graphs (torch.cond, map)
            unknown.append(f"  {n.op} {n.target} (graph node {n.name!r}; {where or '?'}): "
                           "control-flow sub-graphs are not supported")
    if unknown:
        raise NotImplementedError(
            "jparam.from_torch: the exported graph of "
            f"{type(tmodel).__qualname__} uses operators jparam does not implement yet:\n"
            + "\n".join(unknown)
            + "\nSee docs/from_torch_ops.md for the supported table; the hand port "
            "(docs/porting.md) always works.")
    call_spec = ep.call_spec
    return Graph(inputs=tuple(inputs), nodes=tuple(nodes), outputs=tuple(outputs),
                 mutations=tuple(mutations), in_spec=_spec(call_spec.in_spec, "inputs"),
                 out_spec=_spec(call_spec.out_spec, "outputs"), constants=constants,
                 user_constants=tuple(user_consts), user_meta=tuple(user_meta))


def layout_of(tmodel: Any) -> list:
    """The module tree of ``tmodel`` as JSON-able entries (no tensors), torch's order.

    One entry per module, pre-order, shared modules once: ``{"path", "cls", "training",
    "items"}`` with items ``["p", name, shape, dtype, requires_grad]``,
    ``["b", name, shape, dtype, persistent]``, ``["m", name]`` in torch's registration order
    (parameters, buffers, children), ``None`` entries as ``["p"/"b"/"m", name, None...]``,
    and ``["tie", kind, name, first path]`` where a parameter, buffer or module object was
    already placed at ``first path``.
    """
    seen: dict = {}
    out: list = []

    def dt(t: Any) -> str:
        return str(t.dtype).removeprefix("torch.")

    def visit(m: Any, path: str) -> None:
        seen[id(m)] = path
        items: list = []
        entry = {"path": path, "cls": f"{type(m).__module__}.{type(m).__qualname__}",
                 "training": bool(m.training), "items": items}
        out.append(entry)
        pre = path + "." if path else ""
        for name, p in m._parameters.items():
            if p is None:
                items.append(["p", name, None])
            elif id(p) in seen:
                items.append(["tie", "p", name, seen[id(p)]])
            else:
                seen[id(p)] = pre + name
                items.append(["p", name, list(p.shape), dt(p), bool(p.requires_grad)])
        for name, b in m._buffers.items():
            if b is None:
                items.append(["b", name, None])
            elif id(b) in seen:
                items.append(["tie", "b", name, seen[id(b)]])
            else:
                seen[id(b)] = pre + name
                items.append(["b", name, list(b.shape), dt(b),
                              name not in m._non_persistent_buffers_set])
        for name, c in m._modules.items():
            if c is None:
                items.append(["m", name, None])
            elif id(c) in seen:
                items.append(["tie", "m", name, seen[id(c)]])
            else:
                items.append(["m", name])
                visit(c, pre + name)

    visit(tmodel, "")
    return out
