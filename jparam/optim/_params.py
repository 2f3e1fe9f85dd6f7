"""How an optimizer finds its parameters: by their position in the model's leaf order.

``jax.jit`` rebuilds every object it returns, so an optimizer cannot hold on to Parameter
objects. At construction it follows each parameter's owner/parent back-pointers to the top
module and records where the parameters sit in that model's flattened leaves. Positions are
deterministic for an architecture, so they survive ``jax.jit`` and a jit cache hit by another
model of the same architecture, and a fresh model + optimizer reuses a compiled step. Every
parameter's shape and dtype (the ``layout``) is recorded too, so ``step`` refuses a model
whose parameters changed since.

Parameters that belong to no module are recognised by their identity token instead
(``Parameter._jp_id``, carried through ``jit`` by the model's pytree aux).

Example:
    >>> model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    >>> bind(list(model[1].parameters()))[0]
    [2, 3]
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from jparam import _flatten as fl
from jparam._parameter import Parameter

__all__ = ["bind", "root_of", "layout_of", "positions_in", "check_model"]


def root_of(p: Parameter) -> Any:
    """The top module reached from a parameter's owner through parent pointers (or None)."""
    ref = p._jp_owner
    m = ref() if ref is not None else None
    seen = set()
    while m is not None and id(m) not in seen:
        seen.add(id(m))
        pr = m.__dict__.get("_jp_parent")
        parent = pr() if pr is not None else None
        if parent is None:
            return m
        m = parent
    return m


def layout_of(objs: Sequence[Any]) -> Tuple[Tuple[Tuple[int, ...], str], ...]:
    """Every object's ``(shape, dtype)``."""
    return tuple((tuple(o.shape), str(o.dtype)) for o in objs)


def bind(params: List[Parameter]) -> Tuple[Optional[list], Any, Optional[tuple]]:
    """``(positions, root, layout)`` of ``params`` in their model's leaf order.

    Returns ``(None, None, None)`` for parameters outside any module; raises if they live
    in several separate models.
    """
    roots = {}
    for p in params:
        r = root_of(p)
        if r is None:
            return None, None, None
        roots[id(r)] = r
    names = []
    for r in roots.values():
        objs: list = []
        fl.flatten_module(r, collect=objs)
        where = {id(o): i for i, o in enumerate(objs)}
        if all(id(p) in where for p in params):
            return [where[id(p)] for p in params], r, layout_of(objs)
        names.append(type(r).__name__)
    raise ValueError(
        "an optimizer's parameters must belong to one model, but these belong to "
        f"{len(roots)} separate ones ({', '.join(names)}); opt.step(model) updates one model: "
        "put them in one nn.Module (e.g. nn.ModuleDict({'g': g, 'd': d})) or use one optimizer per model")


def positions_in(root: Any, token_groups: Sequence[Sequence[int]]) -> List[List[int]]:
    """The positions in ``root`` of the parameters with the given identity tokens, per group."""
    objs: list = []
    fl.flatten_module(root, collect=objs)
    where = {o._jp_id: i for i, o in enumerate(objs)}
    out = []
    for ts in token_groups:
        if not all(t in where for t in ts):
            raise ValueError("add_param_group: the optimizer's earlier parameters are no longer in "
                             f"the model {type(root).__name__} (an optimizer pickled or deep-copied without "
                             "its model knows them only by position: pickle or copy the model and the "
                             "optimizer together, pickle.dumps((model, opt)))")
        out.append([where[t] for t in ts])
    return out


def check_model(bp: Any, pdata: list, layout: Optional[tuple], groups: Sequence[Tuple[tuple, tuple]]) -> None:
    """Refuse a model whose parameters are not those the optimizer was built for.

    ``groups``: per param group, ``(positions, ((shape, dtype), ...))``.
    """
    if layout is not None:
        got = layout_of(pdata)
        if got != layout:
            names = bp.leaf_names()
            k = next((i for i, (a, b) in enumerate(zip(got, layout)) if a != b), min(len(got), len(layout)))
            where = (f"parameter #{k} ('{names[k]}') is {got[k]}, was {layout[k]}" if k < min(len(got), len(layout))
                     else f"it has {len(got)} parameters, had {len(layout)}")
            raise ValueError(
                "opt.step(model): the model's parameters differ from those of the model this optimizer "
                f"was built from ({where}). Build the optimizer after the model is complete "
                "(model.parameters()), and pass that same model, not a wrapper or a part of it.")
    names = None
    for positions, sigs in groups:
        for i, (shape, dtype) in zip(positions, sigs):
            if i < len(pdata) and tuple(pdata[i].shape) == shape and str(pdata[i].dtype) == dtype:
                continue
            names = names or bp.leaf_names()
            got = (f"'{names[i]}' with shape {tuple(pdata[i].shape)} and dtype {pdata[i].dtype}"
                   if i < len(pdata) else f"only {len(pdata)} parameters")
            raise ValueError(
                f"opt.step(model): this optimizer was built for a model whose parameter #{i} has "
                f"shape {shape} and dtype {dtype}, but the model passed has {got}. Pass the same "
                "model the optimizer was built from (model.parameters()), not a wrapper or a part of it.")
