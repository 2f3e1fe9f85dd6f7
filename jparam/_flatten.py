"""How a module tree becomes one pytree node with a flat list of array leaves, and back.

A model is flattened *as a whole*: the root module's flatten walks its submodules once,
de-duplicating modules and parameters by object identity (so tied weights stay one leaf),
and returns

    leaves = [parameter data ...] + [gradients present ...] + [buffers and plain arrays ...]
    aux    = _Aux(blueprint, tokens)

The blueprint is a hashable, interned description of everything static: module classes,
attribute names and kinds, static attribute values, ``requires_grad`` and "has a grad"
flags, and which attribute points at which leaf or submodule.  ``tokens`` are the
parameters' identities (used by optimizers to recognise their parameters after ``jax.jit``
rebuilt the objects); they are carried along but not compared, so two models of the same
architecture have equal tree structures.

Unflattening is lazy: it returns an instance of the root class holding ``(aux, leaves)``.
A model that goes out of one jitted step and into the next is never rebuilt, so the per
call cost is one Python call each way, like a plain tuple of arrays.  The object tree is
built on first attribute access.  See ``docs/design.md``.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any

import jax
import numpy as np

from jparam._parameter import Parameter
from jparam._tracing import trace_state_clean

__all__ = ["flatten_module", "unflatten_module", "materialize", "Blueprint", "Aux"]

_ARRAY_TYPES = (jax.Array, np.ndarray)


def _thash(x: Any) -> int:
    """A hash that tolerates unhashable static values (lists, dicts, sets)."""
    try:
        return hash(x)
    except TypeError:
        if isinstance(x, (list, tuple)):
            return hash(("L", tuple(_thash(e) for e in x)))
        if isinstance(x, dict):
            return hash(("D", tuple((_thash(k), _thash(v)) for k, v in x.items())))
        if isinstance(x, (set, frozenset)):
            return hash(("S", len(x)))
        return hash(type(x))


class Blueprint:
    """The static part of a flattened module tree (interned: equal blueprints are one object).

    mods:    tuple of ``(cls, entries)`` in pre-order; entries in attribute order:
             ``('p', name, pidx)``, ``('m', name, midx)``, ``('b', name, oidx, persistent)``,
             ``('a', name, treedef_or_None, oidx, n)``, ``('s', name, value)``
    params:  tuple of ``(requires_grad, has_grad)`` per unique parameter
    n_other: number of buffer / plain-array leaves
    """

    __slots__ = ("mods", "params", "n_other", "_hash", "cache", "__weakref__")

    def __init__(self, mods, params, n_other):
        self.mods, self.params, self.n_other = mods, params, n_other
        h = [len(params), n_other, params]
        for cls, entries in mods:
            h.append(cls)
            for e in entries:
                h.append(_thash(e) if e[0] == "s" else hash(e))
        self._hash = hash(tuple(h))
        self.cache: dict = {}

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        if not isinstance(other, Blueprint) or self._hash != other._hash:
            return False
        try:
            return bool(self.params == other.params and self.n_other == other.n_other
                        and self.mods == other.mods)
        except Exception:  # a static value whose == is not a bool
            return False

    @property
    def n_params(self) -> int:
        return len(self.params)

    @property
    def n_grads(self) -> int:
        c = self.cache.get("n_grads")
        if c is None:
            c = self.cache["n_grads"] = sum(1 for _, g in self.params if g)
        return c

    def with_grads(self, has_grad) -> "Blueprint":
        return intern(Blueprint(self.mods, tuple((rg, bool(h)) for (rg, _), h in zip(self.params, has_grad)),
                                self.n_other))

    def leaf_names(self) -> tuple:
        """Dotted names of every leaf (first path for shared objects), for key paths and errors."""
        names = self.cache.get("names")
        if names is not None:
            return names
        pnames: list = [None] * len(self.params)
        onames: list = [None] * self.n_other
        seen = set()

        def visit(i, prefix):
            if i in seen:
                return
            seen.add(i)
            for e in self.mods[i][1]:
                k, name = e[0], prefix + e[1]
                if k == "p" and e[2] is not None and pnames[e[2]] is None:
                    pnames[e[2]] = name
                elif k == "b" and e[2] is not None:
                    onames[e[2]] = name
                elif k == "a":
                    if e[2] is None:
                        onames[e[3]] = name
                    else:
                        paths = jax.tree_util.tree_flatten_with_path(
                            jax.tree_util.tree_unflatten(e[2], [0] * e[4]))[0]
                        for j, (path, _) in enumerate(paths):
                            onames[e[3] + j] = name + jax.tree_util.keystr(path)
                elif k == "m" and e[2] is not None:
                    visit(e[2], name + ".")

        visit(0, "")
        gnames = [n + ".grad" for n, (_, g) in zip(pnames, self.params) if g]
        names = self.cache["names"] = tuple(pnames) + tuple(gnames) + tuple(onames)
        return names


_interned: dict = {}


def intern(bp: Blueprint) -> Blueprint:
    found = _interned.get(bp)
    if found is not None:
        return found
    if len(_interned) > 20000:  # bound the table; correctness never depends on interning
        _interned.clear()
    _interned[bp] = bp
    return bp


class Aux:
    """Pytree aux data of a module: the blueprint plus (uncompared) parameter tokens."""

    __slots__ = ("bp", "tokens")

    def __init__(self, bp: Blueprint, tokens: tuple):
        self.bp, self.tokens = bp, tokens

    def __hash__(self) -> int:
        return self.bp._hash

    def __eq__(self, other) -> bool:
        return isinstance(other, Aux) and (self.bp is other.bp or self.bp == other.bp)

    def __repr__(self) -> str:
        return f"{self.bp.mods[0][0].__name__}(params={len(self.bp.params)}, others={self.bp.n_other})"


def _is_array_tree(v) -> bool:
    leaves = jax.tree_util.tree_leaves(v)
    return bool(leaves) and all(isinstance(x, _ARRAY_TYPES) for x in leaves)


def flatten_module(root, collect: list = None) -> tuple:
    """``(leaves, aux)`` of a module tree; O(1) for a module fresh out of ``unflatten``.

    ``collect``: a list that receives the unique Parameter objects in leaf order (forces a walk).
    """
    lazy = root.__dict__.get("_jp_lazy")
    if lazy is not None:
        if collect is None:
            return lazy[1], lazy[0]
        materialize(root)
    mod_index: dict = {}
    mspecs: list = []
    param_index: dict = {}
    pdata: list = []
    grads: list = []
    pspecs: list = []
    tokens: list = []
    others: list = []

    def visit_param(p):
        j = param_index.get(id(p))
        if j is None:
            j = param_index[id(p)] = len(pspecs)
            g = p._grad
            pspecs.append((p.requires_grad, g is not None))
            pdata.append(p._data)
            tokens.append(p._jp_id)
            if g is not None:
                grads.append(g)
            if collect is not None:
                collect.append(p)
        return j

    def visit(m):
        i = mod_index.get(id(m))
        if i is not None:
            return i
        d = m.__dict__
        if "_jp_lazy" in d:
            materialize(m)
        i = mod_index[id(m)] = len(mspecs)
        mspecs.append(None)
        reg = d.get("_jp_reg") or {}
        entries = []
        for name, v in d.items():
            if name.startswith("_jp_"):
                continue
            kind = reg.get(name)
            if kind is None:
                if isinstance(v, _ARRAY_TYPES):
                    entries.append(("a", name, None, len(others), 1))
                    others.append(v)
                elif isinstance(v, (list, tuple, dict)) and v and _is_array_tree(v):
                    ls, td = jax.tree_util.tree_flatten(v)
                    entries.append(("a", name, td, len(others), len(ls)))
                    others.extend(ls)
                else:
                    entries.append(("s", name, v))
            elif kind == "p":
                entries.append(("p", name, None if v is None else visit_param(v)))
            elif kind == "m":
                entries.append(("m", name, None if v is None else visit(v)))
            else:
                if v is None:
                    entries.append(("b", name, None, kind == "b"))
                else:
                    entries.append(("b", name, len(others), kind == "b"))
                    others.append(v)
        mspecs[i] = (type(m), tuple(entries))
        return i

    visit(root)
    bp = intern(Blueprint(tuple(mspecs), tuple(pspecs), len(others)))
    return pdata + grads + others, Aux(bp, tuple(tokens))


def flatten_with_keys(root):
    leaves, aux = flatten_module(root)
    names = aux.bp.leaf_names()
    return [(jax.tree_util.GetAttrKey(n), v) for n, v in zip(names, leaves)], aux


def unflatten_module(aux: Aux, leaves) -> Any:
    """A lazy instance of the root class; the object tree is built on first access."""
    obj = object.__new__(aux.bp.mods[0][0])
    d = obj.__dict__
    d["_jp_lazy"] = (aux, leaves)
    d["_jp_outer"] = trace_state_clean()
    return obj


_build_lock = threading.RLock()


def materialize(root) -> None:
    """Build the module objects of a lazy root in place (no-op if already built).

    Thread-safe: the root stays marked lazy (``_jp_lazy``) until every attribute is in
    place, so a reader in another thread either waits on the lock and then sees the built
    module, or sees it whole; it never sees a module marked built but still empty. The
    root's attributes are assembled in a separate dict and published with one ``update``.
    """
    d = root.__dict__
    if "_jp_lazy" not in d:
        return
    with _build_lock:
        lazy = d.get("_jp_lazy")
        if lazy is None:  # built by another thread meanwhile
            return
        _build(root, lazy, d.get("_jp_outer", True))
        d.pop("_jp_lazy", None)


def _build(root, lazy, outer) -> None:
    aux, leaves = lazy
    bp, tokens = aux.bp, aux.tokens
    P = len(bp.params)
    params = []
    gi = P
    for j, (rg, hg) in enumerate(bp.params):
        g = None
        if hg:
            g = leaves[gi]
            gi += 1
        params.append(Parameter._make(leaves[j], g, rg, tokens[j], outer))
    base = gi
    mods = [root] + [object.__new__(cls) for cls, _ in bp.mods[1:]]
    root_dict: dict = {}
    for m, (_, entries) in zip(mods, bp.mods):
        md = root_dict if m is root else m.__dict__
        reg = {}
        me = weakref.ref(m)
        for e in entries:
            k, name = e[0], e[1]
            if k == "p":
                if e[2] is None:
                    md[name] = None
                else:
                    md[name] = p = params[e[2]]
                    p._jp_owner = me
                reg[name] = "p"
            elif k == "m":
                if e[2] is None:
                    md[name] = None
                else:
                    md[name] = c = mods[e[2]]
                    c.__dict__["_jp_parent"] = me
                reg[name] = "m"
            elif k == "b":
                md[name] = None if e[2] is None else leaves[base + e[2]]
                reg[name] = "b" if e[3] else "bn"
            elif k == "a":
                s = base + e[3]
                md[name] = leaves[s] if e[2] is None else jax.tree_util.tree_unflatten(e[2], leaves[s:s + e[4]])
            else:
                md[name] = e[2]
        md["_jp_reg"] = reg
        md["_jp_outer"] = outer
    root.__dict__.update(root_dict)


def rebuild(aux: Aux, leaves) -> Any:
    """Alias of :func:`unflatten_module` for internal callers that edit flat leaves."""
    return unflatten_module(aux, leaves)


def split_leaves(bp: Blueprint, leaves) -> tuple:
    """``(param_data, grads, others)`` slices of a flat leaf list."""
    P, G = len(bp.params), bp.n_grads
    return list(leaves[:P]), list(leaves[P:P + G]), list(leaves[P + G:])


def grads_by_param(bp: Blueprint, grads) -> list:
    """Gradient per parameter index (``None`` where absent)."""
    out, it = [], iter(grads)
    for _, hg in bp.params:
        out.append(next(it) if hg else None)
    return out


def assemble(bp: Blueprint, tokens, pdata, grads_per_param, others):
    """A lazy module from per-parameter data and grads (``None`` = no grad) and other leaves."""
    has = tuple(g is not None for g in grads_per_param)
    if has != tuple(h for _, h in bp.params):
        bp = bp.with_grads(has)
    leaves = list(pdata) + [g for g in grads_per_param if g is not None] + list(others)
    return unflatten_module(Aux(bp, tuple(tokens)), leaves)
