"""``Optimizer``: torch's optimizer API on optax, as a pure, jit-able pytree.

``model, opt = opt.step(model)`` reads each parameter's ``grad`` from the model, applies
the optimizer's optax transformation *per parameter* (so a parameter without a grad is
skipped entirely, with no decay, momentum or step count, as in torch), writes the new
values into a new model and returns a new optimizer. The gradients it consumed are
cleared in the returned model (``set_to_none``), so no gradient memory outlives a step.

Parameters are recognised by identity tokens that survive ``jax.jit`` (see
``docs/design.md``), so ``optim.SGD([{"params": m.base.parameters()}, ...])`` keeps
working on the rebuilt objects. Numeric hyperparameters (``lr``, ``momentum``, ``betas``,
...) are pytree leaves: changing ``opt.param_groups[i]["lr"]`` never recompiles.
"""
from __future__ import annotations

import warnings
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jparam import _flatten as fl
from jparam._module import Module
from jparam._parameter import Parameter
from jparam._tracing import trace_state_clean
from jparam.optim._transforms import _entries

__all__ = ["Optimizer", "ParamGroup", "required"]


class _Required:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()

_ALWAYS_STATIC = ("foreach", "differentiable", "fused", "capturable", "param_names")


def _is_numeric(v: Any) -> bool:
    if isinstance(v, bool) or v is None:
        return False
    if isinstance(v, (int, float, np.integer, np.floating)):
        return True
    if isinstance(v, (jax.Array, np.ndarray)):
        return jnp.ndim(v) == 0
    if isinstance(v, tuple) and v:
        return all(_is_numeric(e) for e in v)
    return False


def _as_hp(v: Any) -> Any:
    """A numeric hyperparameter as a float32 scalar (tuples elementwise); tracers pass.

    Host-side values are NumPy float32 scalars: cheap to read and set between jitted
    steps, and data (not constants) to the compiled step."""
    if isinstance(v, tuple):
        return tuple(_as_hp(e) for e in v)
    if isinstance(v, jax.core.Tracer):
        return v
    return np.float32(v)


def _to_python(v: Any) -> Any:
    if isinstance(v, tuple):
        return tuple(_to_python(e) for e in v)
    if isinstance(v, (jax.Array, np.ndarray, np.generic)) and not isinstance(v, (jax.core.Tracer, bool)):
        return float(str(np.float32(v)))  # shortest decimal that round-trips: 0.1, not 0.10000000149
    return v


def _root_of(p: Parameter):
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


def _layout(objs: list) -> tuple:
    return tuple((tuple(o.shape), str(o.dtype)) for o in objs)


def _bind(params: list):
    """``(positions, root, layout)`` of ``params`` in their model's leaf order.

    Positions are where the parameters sit in the flattened model (deterministic for a given
    architecture), so they survive ``jax.jit`` rebuilding objects and cache hits with another
    model of the same architecture, and a fresh model + optimizer reuses a compiled step.
    ``layout`` (every parameter's shape and dtype) lets ``step`` reject a model whose
    parameters changed since. Returns ``(None, None, None)`` for parameters outside any module.
    Raises if they live in several separate models.
    """
    roots = {}
    for p in params:
        r = _root_of(p)
        if r is None:
            return None, None, None
        roots[id(r)] = r
    names = []
    for r in roots.values():
        objs: list = []
        fl.flatten_module(r, collect=objs)
        where = {id(o): i for i, o in enumerate(objs)}
        if all(id(p) in where for p in params):
            return [where[id(p)] for p in params], r, _layout(objs)
        names.append(type(r).__name__)
    raise ValueError(
        "an optimizer's parameters must belong to one model, but these belong to "
        f"{len(roots)} separate ones ({', '.join(names)}); opt.step(model) updates one model: "
        "put them in one nn.Module (e.g. nn.ModuleDict({'g': g, 'd': d})) or use one optimizer per model")


class _Control:
    """Shared by every incarnation of one optimizer: the newest ones outside jit (weakly).

    A list, newest last, because jax may build a temporary output object on a cache miss
    that dies at once; the newest incarnation still alive is the live one."""

    __slots__ = ("_refs", "__weakref__")

    def __init__(self) -> None:
        self._refs: list = []

    def push(self, obj) -> None:
        refs = self._refs
        refs.append(weakref.ref(obj))
        if len(refs) > 16:
            self._refs = [r for r in refs[-8:] if r() is not None]

    def newest(self):
        for r in reversed(self._refs):
            o = r()
            if o is not None:
                return o
        return None


class ParamGroup(dict):
    """One torch param group: ``{"params": [...], "lr": ..., ...}``.

    Numeric hyperparameters assigned here are stored as float32 scalar arrays, so they are
    data to a jitted step (no recompile when they change).
    """

    __slots__ = ("_owner", "_numeric", "_meta")

    def __setitem__(self, key: str, value: Any) -> None:
        owner = getattr(self, "_owner", None)
        if (key not in self and owner is not None and key not in owner.defaults
                and not isinstance(value, jax.core.Tracer)):
            # a key the optimizer does not use (a scheduler's initial_lr, max_lr, ...): host-side
            # metadata, kept exactly, carried through jit but not part of the tree structure
            self._meta = tuple(getattr(self, "_meta", ())) + (key,)
        if key in getattr(self, "_numeric", ()):
            if not _is_numeric(value) and not isinstance(value, jax.core.Tracer):
                raise TypeError(f"param_groups[...]['{key}'] must be a number, got {type(value).__name__}")
            value = _as_hp(value)
        super().__setitem__(key, value)
        if owner is not None:
            owner._flat = None
            if not isinstance(value, jax.core.Tracer) and owner.__dict__.get("_outer", True):
                owner._restructure(self)


_static_table: dict = {}

# structure -> (control, defaults) of the optimizer last flattened OUTSIDE any trace, i.e.
# the one going into a jitted call. jit rebuilds outputs from the aux cached at trace time,
# which holds the control block of the optimizer that was traced; the output of a later call
# (a cache hit by another optimizer of the same structure) must belong to the optimizer
# that went in, so that its scheduler and param_groups edits reach it.
_entering: dict = {}


def _intern_static(static: tuple) -> tuple:
    found = _static_table.get(static)
    if found is not None:
        return found
    if len(_static_table) > 10000:
        _static_table.clear()
    _static_table[static] = static
    return static


class _OptAux:
    """Pytree aux of an optimizer. ``static`` (interned) is compared; ``tokens`` and
    ``control`` ride along uncompared."""

    __slots__ = ("cls", "static", "tokens", "control", "defaults", "_hash")

    def __init__(self, cls, static, tokens, control, defaults):
        self.cls, self.static, self.tokens, self.control = cls, _intern_static(static), tokens, control
        # (defaults, per-group metadata): numeric defaults only seed new groups and metadata keys
        # (initial_lr, ...) are never used by the update, so neither is part of the structure
        self.defaults = defaults
        self._hash = hash((cls, self.static))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other) -> bool:
        return (isinstance(other, _OptAux) and self.cls is other.cls
                and (self.static is other.static or self.static == other.static))


class Optimizer:
    """Base class of jparam optimizers; wraps any optax transformation as a torch optimizer.

    ``Optimizer(params, tx)`` with an ``optax.GradientTransformation`` gives an optimizer
    whose update is ``tx`` (hyperparameters baked into ``tx``; ``lr`` in ``param_groups`` is
    not used). Subclasses (SGD, Adam, ...) instead build their transformation from each
    group's hyperparameters by overriding :meth:`_transform`.

    Example:
        >>> opt = optim.Optimizer(model.parameters(), optax.lion(1e-4))
        >>> model, opt = opt.step(model)
    """

    _static_keys: Tuple[str, ...] = ()

    def __init__(self, params: Iterable[Any], defaults: Any) -> None:
        if isinstance(defaults, optax.GradientTransformation):
            self._tx = defaults
            defaults = {}
        else:
            self._tx = None
        self.defaults: Dict[str, Any] = dict(defaults)
        self._groups: List[ParamGroup] = []
        self._states: List[list] = []
        self._structs: List[tuple] = []
        self._tokens: List[list] = []
        self._sigs: List[tuple] = []
        self._positional = False
        self._layout = None
        self._flat = None
        self._aux = None
        self._state_leaves = None
        self._control = _Control()
        self._control.push(self)
        self._outer = trace_state_clean()
        if isinstance(params, (Parameter, jax.Array, np.ndarray)) or hasattr(params, "shape"):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Parameters or dicts, but got {_tname(params)}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # ------------------------------------------------------------------ subclass hooks
    def _transform(self, group: Dict[str, Any], struct: tuple) -> optax.GradientTransformation:
        """The per-parameter transformation for ``group`` (values may be traced scalars)."""
        if self._tx is None:
            raise NotImplementedError(f"{type(self).__name__} must implement _transform")
        return self._tx

    def _convert_state(self, group: Dict[str, Any], old: tuple, new: tuple, state: Any, like: Any) -> Any:
        """A parameter's state when the group's structure changes from ``old`` to ``new``
        (e.g. momentum switched on): by default a fresh ``init``."""
        return self._transform(group, new).init(like)

    def _restructure(self, pg: "ParamGroup") -> None:
        """Re-derive a group's static structure after a host-side hyperparameter edit."""
        g = next((i for i, q in enumerate(self._groups or []) if q is pg), None)
        if g is None:
            return
        old = self._structs[g]
        new = self._next_struct({k: _to_python(v) for k, v in pg.items()}, old)
        if new == old:
            return
        self._build_states()
        likes = [jnp.zeros(shape, dtype) for shape, dtype in self._sigs[g]]
        self._states[g] = [self._convert_state(pg, old, new, st, like)
                           for st, like in zip(self._states[g], likes)]
        self._structs[g] = new
        self._state_leaves = None
        self._flat = None

    def _next_struct(self, group: Dict[str, Any], old: tuple) -> tuple:
        """A group's structure after a host-side edit, given the one it had (default: re-derived)."""
        return self._group_struct(group)

    def _group_struct(self, group: Dict[str, Any]) -> tuple:
        """Static structure decided once from a new group's Python values (e.g. momentum != 0)."""
        return ()

    def _state_to_torch(self, group: Dict[str, Any], struct: tuple, state: Any) -> Dict[str, Any]:
        """One parameter's state in torch's names (``{}`` if it has not been stepped)."""
        leaves = jax.tree_util.tree_leaves(state)
        return {f"optax_{i}": v for i, v in enumerate(leaves)}

    def _state_from_torch(self, group: Dict[str, Any], struct: tuple, entry: Dict[str, Any],
                          like: Any) -> Any:
        """Inverse of :meth:`_state_to_torch`; ``like`` is the current state (shapes, dtypes)."""
        leaves, td = jax.tree_util.tree_flatten(like)
        if not entry:
            return like
        return jax.tree_util.tree_unflatten(td, [jnp.asarray(entry[f"optax_{i}"]) for i in range(len(leaves))])

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (torch's semantics and errors)."""
        live = self._live()
        if live is not self:
            return live.add_param_group(param_group)
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {_tname(param_group)}")
        group = dict(param_group)
        params = group.get("params")
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the "
                            "ordering of tensors in sets will change between runs. Please use a list instead.")
        else:
            params = list(params)
        names = None
        if params and isinstance(params[0], tuple):
            names = [n for n, _ in params]
            params = [p for _, p in params]
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError("optimizer can only optimize jparam.nn.Parameter objects, but one of "
                                f"the params is {_tname(p)} (pass model.parameters())")
        seen, uniq = set(), []
        for p in params:
            if id(p) in seen:
                warnings.warn("optimizer contains a parameter group with duplicate parameters; "
                              "the duplicates are ignored", stacklevel=3)
                continue
            seen.add(id(p))
            uniq.append(p)
        for k, default in self.defaults.items():
            if default is required and k not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {k}")
            group.setdefault(k, default)
        existing = {t for ts in self._tokens for t in ts}
        tokens = [p._jp_id for p in uniq]
        if existing.intersection(tokens):
            raise ValueError("some parameters appear in more than one parameter group")
        positions, root, layout = _bind(uniq)
        prev = self.__dict__.get("_root_ref")
        prev_root = prev() if prev is not None else None
        if positions is not None and self._groups and self._positional:
            if prev_root is not None and root is not prev_root:
                raise ValueError("add_param_group: these parameters belong to a different model than "
                                 "the optimizer's other parameters; opt.step(model) updates one model")
            # re-derive every group's positions from live objects (the model may have grown)
            objs: list = []
            fl.flatten_module(root, collect=objs)
            where = {o._jp_id: i for i, o in enumerate(objs)}
            for pg, ts in zip(self._groups, self._tokens):
                if not all(t in where for t in ts):
                    raise ValueError("add_param_group: the optimizer's earlier parameters are no longer in "
                                     f"the model {type(root).__name__}")
                dict.__setitem__(pg, "params", [where[t] for t in ts])
        if positions is None:
            if self._positional and self._groups:  # switch every group to identity tokens
                for pg, ts in zip(self._groups, self._tokens):
                    dict.__setitem__(pg, "params", list(ts))
            self._positional = False
        elif not self._groups:
            self._positional = True
        if self._positional:
            self._root_ref = weakref.ref(root)
            self._layout = layout
        self._tokens.append(tokens)
        self._sigs.append(tuple((tuple(p.shape), str(p.dtype)) for p in uniq))
        pg = ParamGroup()
        pg._owner, pg._numeric = None, ()
        numeric = []
        for k, v in group.items():
            if k == "params":
                continue
            if k not in self._static_keys and k not in _ALWAYS_STATIC and _is_numeric(v):
                numeric.append(k)
        dict.__setitem__(pg, "params", list(positions) if self._positional else tokens)
        for k, v in group.items():
            if k != "params":
                dict.__setitem__(pg, k, _as_hp(v) if k in numeric else v)
        if names is not None:
            dict.__setitem__(pg, "param_names", names)
        pg._numeric = tuple(numeric)
        struct = self._group_struct({k: _to_python(v) for k, v in pg.items()})
        tx = self._transform(pg, struct)
        self._states.append([tx.init(p._data) for p in uniq])
        self._state_leaves = None
        self._structs.append(struct)
        pg._owner = self
        self._groups.append(pg)
        self._flat = None

    @property
    def param_groups(self) -> List[ParamGroup]:
        """torch's param groups; ``params`` holds each parameter's position in the model's
        leaf order (or an identity token when the parameters belong to no module)."""
        live = self._live()
        live._build_groups()
        return live._groups

    @property
    def state(self) -> Dict[int, Dict[str, Any]]:
        """Per-parameter state in torch's names, keyed by the parameter's index."""
        return self.state_dict()["state"]

    def _live(self) -> "Optimizer":
        """The newest incarnation of this optimizer outside jit (torch's 'one mutable object')."""
        if not self.__dict__.get("_outer", True):
            return self
        other = self._control.newest()
        return other if other is not None else self

    # ------------------------------------------------------------------ pytree
    # The pytree form packs, per group, every numeric hyperparameter into ONE float32
    # vector and every scalar state leaf (step counts, flags) into ONE vector per dtype:
    # jit's dispatch cost is per leaf, and torch's per-parameter step counts would
    # otherwise add a leaf per parameter over what hand-written optax carries.
    def _build(self) -> None:
        self._build_groups()
        self._build_states()

    def _build_groups(self) -> None:
        if self._groups is not None:
            return
        aux, leaves = self._aux, self._flat
        G = len(aux.static[0])
        groups = []
        for g, (tokens, numeric, hp_tree, statics) in enumerate(aux.static[0]):
            pg = ParamGroup()
            pg._owner, pg._numeric = None, numeric
            dict.__setitem__(pg, "params", list(tokens))
            for k, v in statics:
                dict.__setitem__(pg, k, list(v) if k == "param_names" else v)
            vec = leaves[g]
            if isinstance(vec, jax.core.Tracer):
                flat_hp = [vec[i] for i in range(hp_tree.num_leaves)]
            else:  # one host transfer; host-side values are NumPy float32 scalars
                flat_hp = [np.float32(x) for x in np.asarray(vec)]
            for k, v in zip(numeric, jax.tree_util.tree_unflatten(hp_tree, flat_hp)):
                dict.__setitem__(pg, k, v)
            metas = aux.defaults[1][g] if g < len(aux.defaults[1]) else ()
            for k, v in metas:
                dict.__setitem__(pg, k, v)
            pg._meta = tuple(k for k, _ in metas)
            pg._owner = self
            groups.append(pg)
        self._groups = groups
        if self._state_leaves is None:
            self._state_leaves = list(leaves[G:])

    def _build_states(self) -> None:
        if self._states is not None:
            return
        self._build_groups()
        rest, pos, states = self._state_leaves, 0, []
        for td, n, nonscalar, scal in self._aux.static[4]:
            k_ns = len(nonscalar)
            packed = rest[pos:pos + k_ns + len(scal)]
            pos += k_ns + len(scal)
            sl = [None] * n
            for j, i in enumerate(nonscalar):
                sl[i] = packed[j]
            for j, (_, idxs) in enumerate(scal):
                for i, x in zip(idxs, _unpack_scalars(packed[k_ns + j])):
                    sl[i] = x
            states.append(list(jax.tree_util.tree_unflatten(td, sl)))
        self._states = states

    def _flatten(self):
        flat, aux = self._flatten_impl()
        if trace_state_clean():
            _entering[aux.static] = (self._control, aux.defaults)
        return flat, aux

    def _flatten_impl(self):
        if self._flat is not None:
            return self._flat, self._aux
        self._build_groups()
        if self._state_leaves is None or self._aux is None:
            self._build_states()
        hp_vecs, gstatic, metas = [], [], []
        for pg in self._groups:
            numeric = pg._numeric
            hp_flat, hp_tree = jax.tree_util.tree_flatten(tuple(pg[k] for k in numeric))
            if any(isinstance(v, jax.core.Tracer) for v in hp_flat):
                hp_vecs.append(jnp.stack([jnp.asarray(v, jnp.float32) for v in hp_flat]))
            else:
                hp_vecs.append(jax.device_put(np.asarray(hp_flat, np.float32).reshape(-1)))
            meta = getattr(pg, "_meta", ())
            statics = tuple((k, _freeze(v)) for k, v in pg.items()
                            if k != "params" and k not in numeric and k not in meta)
            gstatic.append((tuple(pg["params"]), numeric, hp_tree, statics))
            metas.append(tuple((k, pg[k]) for k in meta))
        cached = self._state_leaves
        if cached is not None and self._aux is not None:
            layouts = list(self._aux.static[4])
            states_iter = []
        else:
            cached = None
            layouts = []
            states_iter = self._states
        state_leaves = []
        for g, st in enumerate(states_iter):
            leaves, td = jax.tree_util.tree_flatten(tuple(st))
            nonscalar = tuple(i for i, v in enumerate(leaves) if getattr(v, "ndim", 1) != 0)
            by_dt: dict = {}
            for i, v in enumerate(leaves):
                if getattr(v, "ndim", 1) == 0:
                    by_dt.setdefault(str(jnp.result_type(v)), []).append(i)
            scal = tuple((dt, tuple(idxs)) for dt, idxs in sorted(by_dt.items()))
            layouts.append((td, len(leaves), nonscalar, scal))
            if cached is None:
                state_leaves += [leaves[i] for i in nonscalar]
                state_leaves += [_pack_scalars([leaves[i] for i in idxs]) for _, idxs in scal]
        if cached is not None:
            state_leaves = cached
        self._state_leaves = state_leaves
        static_defaults = tuple((k, _freeze(v)) for k, v in self.defaults.items() if not _is_numeric(v))
        static = (tuple(gstatic), tuple(self._structs), static_defaults, self._tx, tuple(layouts),
                  self._positional, tuple(self._sigs), self._layout)
        self._aux = _OptAux(type(self), static, tuple(tuple(t) for t in self._tokens), self._control,
                            (dict(self.defaults), tuple(metas)))
        self._flat = hp_vecs + list(state_leaves)
        return self._flat, self._aux

    @classmethod
    def _unflatten(cls, aux: _OptAux, leaves) -> "Optimizer":
        # lazy, like Module: only what the next flatten needs; the rest is derived from
        # ``_aux`` on first access (``__getattr__``), so a step's output costs ~1 µs
        obj = object.__new__(aux.cls)
        d = obj.__dict__
        d["_flat"], d["_aux"], d["_groups"], d["_states"], d["_state_leaves"] = leaves, aux, None, None, None
        control = aux.control
        d["_outer"] = outer = trace_state_clean()
        if outer:
            entered = _entering.get(aux.static)
            if entered is not None and (entered[0] is not aux.control or entered[1] is not aux.defaults):
                control, extra = entered
                d["_aux"] = aux = _OptAux(aux.cls, aux.static, aux.tokens, control, extra)
            control.push(obj)
        d["_control"] = control
        return obj

    _DERIVED = {
        "_structs": lambda a: list(a.static[1]),
        "_positional": lambda a: a.static[5],
        "_sigs": lambda a: list(a.static[6]),
        "_layout": lambda a: a.static[7],
        "_tokens": lambda a: [list(t) for t in a.tokens],
        "defaults": lambda a: dict(a.defaults[0]),
        "_tx": lambda a: a.static[3],
    }

    def __getattr__(self, name: str) -> Any:
        make = Optimizer._DERIVED.get(name)
        aux = self.__dict__.get("_aux")
        if make is None or aux is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        value = self.__dict__[name] = make(aux)
        return value

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, lambda o: o._flatten(), cls._unflatten)

    def _replace(self, states: List[list]) -> "Optimizer":
        self._build()
        new = object.__new__(type(self))
        d = new.__dict__
        d["_tx"], d["defaults"], d["_structs"] = self._tx, self.defaults, list(self._structs)
        d["_positional"], d["_sigs"], d["_tokens"] = self._positional, list(self._sigs), list(self._tokens)
        d["_layout"] = self._layout
        d["_control"], d["_flat"], d["_aux"] = self._control, None, None
        d["_outer"] = outer = trace_state_clean()
        groups = []
        for pg in self._groups:
            ng = ParamGroup()
            ng._owner, ng._numeric = None, pg._numeric
            ng._meta = getattr(pg, "_meta", ())
            for k, v in pg.items():
                dict.__setitem__(ng, k, list(v) if k == "params" else v)
            ng._owner = new
            groups.append(ng)
        d["_groups"], d["_states"] = groups, states
        d["_state_leaves"] = None
        if outer:
            self._control.push(new)
        return new

    # ------------------------------------------------------------------ the step
    def step(self, model: Module, closure: Optional[Callable] = None) -> Tuple[Module, "Optimizer"]:
        """Apply one update: ``model, opt = opt.step(model)``. Pure and jit-able.

        Parameters of this optimizer that have a ``grad`` and ``requires_grad`` are updated
        (ties once); their grads are cleared in the returned model. Others are untouched.
        """
        if closure is not None:
            raise TypeError("jparam optimizers take no closure: compute the loss with jparam.backward first")
        if not isinstance(model, Module):
            raise TypeError("opt.step(model): expected the jparam.nn.Module whose parameters carry "
                            f".grad, got {_tname(model)}")
        self._build()
        leaves, aux = fl.flatten_module(model)
        bp, tokens = aux.bp, aux.tokens
        pdata, grads, others = fl.split_leaves(bp, leaves)
        per = fl.grads_by_param(bp, grads)
        if self._positional:
            self._check_positions(bp, pdata)
            where = None
        else:
            where = {t: i for i, t in enumerate(tokens)}
        states = [list(s) for s in self._states]
        found = 0
        for g, pg in enumerate(self._groups):
            todo, seen = [], set()  # (position in the group, in the model) of each parameter to update
            for j, ref in enumerate(pg["params"] if self._positional else self._tokens[g]):
                i = ref if where is None else where.get(ref)
                if i is None:
                    continue
                found += 1
                if per[i] is not None and bp.params[i][0] and i not in seen:
                    todo.append((j, i))
                    seen.add(i)
            if not todo:
                continue
            tx = self._transform(pg, self._structs[g])
            us, new = self._update_group(tx, [per[i] for _, i in todo], [states[g][j] for j, _ in todo],
                                         [pdata[i] for _, i in todo])
            for (j, i), u, st in zip(todo, us, new):
                states[g][j] = st
                new_p = pdata[i] + u
                pdata[i] = new_p if new_p.dtype == pdata[i].dtype else new_p.astype(pdata[i].dtype)
                per[i] = None
        if found == 0:
            raise ValueError("opt.step(model): none of this optimizer's parameters are in the model; "
                             "build the optimizer from this model's parameters (model.parameters())")
        return fl.assemble(bp, tokens, pdata, per, others), self._replace(states)

    def _update_group(self, tx: optax.GradientTransformation, grads: list, states: list,
                      params: list) -> Tuple[list, list]:
        """One param group's update: ``(updates, new_states)``, lists aligned with ``params``.

        Calls ``tx.update`` once per parameter, which keeps every optax transformation's
        state per parameter, as torch's is; subclasses may batch the group.
        """
        out = [tx.update(g, s, p) for g, s, p in zip(grads, states, params)]
        return [u for u, _ in out], [s for _, s in out]

    def _check_positions(self, bp, pdata) -> None:
        layout = self._layout
        if layout is not None:
            got = _layout(pdata)
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
        for g, pg in enumerate(self._groups):
            for i, (shape, dtype) in zip(pg["params"], self._sigs[g]):
                ok = i < len(pdata) and tuple(pdata[i].shape) == shape and str(pdata[i].dtype) == dtype
                if not ok:
                    names = names or bp.leaf_names()
                    got = (f"'{names[i]}' with shape {tuple(pdata[i].shape)} and dtype {pdata[i].dtype}"
                           if i < len(pdata) else f"only {len(pdata)} parameters")
                    raise ValueError(
                        f"opt.step(model): this optimizer was built for a model whose parameter #{i} has "
                        f"shape {shape} and dtype {dtype}, but the model passed has {got}. Pass the same "
                        "model the optimizer was built from (model.parameters()), not a wrapper or a part of it.")

    def zero_grad(self, model: Module, set_to_none: bool = True) -> Module:
        """The model with the grads of this optimizer's parameters cleared (pure)."""
        self._build_groups()
        leaves, aux = fl.flatten_module(model)
        bp = aux.bp
        pdata, grads, others = fl.split_leaves(bp, leaves)
        per = fl.grads_by_param(bp, grads)
        if self._positional:
            mine = {i for pg in self._groups for i in pg["params"]}
        else:
            toks = {t for ts in self._tokens for t in ts}
            mine = {i for i, t in enumerate(aux.tokens) if t in toks}
        for i in mine:
            if i < len(per) and per[i] is not None:
                per[i] = None if set_to_none else jnp.zeros_like(per[i])
        return fl.assemble(bp, aux.tokens, pdata, per, others)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict[str, Any]:
        """torch's layout: ``{"state": {index: {...}}, "param_groups": [{..., "params": [index]}]}``."""
        live = self._live()
        live._build()
        state, groups, idx = {}, [], 0
        for g, pg in enumerate(live._groups):
            n = len(pg["params"])
            for j, s in enumerate(live._states[g]):
                entry = live._state_to_torch(pg, live._structs[g], s)
                if entry:
                    state[idx + j] = entry
            hp = {k: _to_python(v) for k, v in pg.items() if k != "params"}
            hp["params"] = list(range(idx, idx + n))
            groups.append(hp)
            idx += n
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Load a ``state_dict()`` (ours or a torch optimizer's, arrays as torch/NumPy/jax)."""
        live = self._live()
        if live is not self:
            return live.load_state_dict(state_dict)
        self._build()
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict:
            raise TypeError("optimizer state_dict must be a dict with 'state' and 'param_groups'")
        saved = state_dict["param_groups"]
        if len(saved) != len(self._groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for sg, pg in zip(saved, self._groups):
            if len(sg["params"]) != len(pg["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match "
                                 "the size of optimizer's group")
        from jparam._convert import to_jax_array

        saved_state = state_dict.get("state", {})
        new_states = []
        for g, (sg, pg) in enumerate(zip(saved, self._groups)):
            for k, v in sg.items():
                if k in ("params", "param_names"):
                    continue
                if k in pg._numeric:
                    dict.__setitem__(pg, k, _as_hp(_to_python(v) if not isinstance(v, tuple) else v))
                elif k in pg:
                    dict.__setitem__(pg, k, v)
            row = []
            for j, sid in enumerate(sg["params"]):
                entry = saved_state.get(sid, saved_state.get(str(sid), {}))
                entry = {k: (to_jax_array(v, f"state[{sid}]['{k}']") if v is not None and not
                             isinstance(v, (int, float)) else v) for k, v in entry.items()}
                row.append(self._state_from_torch(pg, self._structs[g], entry, self._states[g][j]))
            new_states.append(row)
        self._states = new_states
        self._state_leaves = None
        self._flat = None

    def __repr__(self) -> str:
        s = type(self).__name__ + " ("
        for i, pg in enumerate(self.param_groups):
            s += f"\nParameter Group {i}"
            for k in sorted(pg):
                if k not in ("params", "param_names"):
                    s += f"\n    {k}: {_to_python(pg[k])}"
        return s + "\n)"


jax.tree_util.register_pytree_node(Optimizer, lambda o: o._flatten(), Optimizer._unflatten)


# id(first entry) -> (weakref to a vector, weakrefs to the scalars _unpack_scalars made of it)
_UNPACKED: Dict[int, tuple] = {}


def _pack_scalars(vals: list) -> Any:
    """One vector of scalar state leaves.

    * the scalars :func:`_unpack_scalars` made of one vector, all and in order: that vector
      (a step's scalar state goes vector -> per-parameter scalars -> vector without a stack);
    * one shared value (a flag a transform computes once per group): a single broadcast;
    * concrete values: stacked on the host (an eager ``jnp.stack`` of n scalars compiles an
      n-operand XLA program, ~70 ms for a 64-layer model's first step);
    * else ``jnp.stack``.
    """
    first = vals[0]
    hit = _UNPACKED.get(id(first))
    if hit is not None and len(hit[1]) == len(vals) and all(r() is v for r, v in zip(hit[1], vals)):
        vec = hit[0]()
        if vec is not None:
            return vec
    if all(v is first for v in vals):
        return jnp.broadcast_to(first, (len(vals),))
    if not any(isinstance(v, jax.core.Tracer) for v in vals):
        return jax.device_put(np.stack([np.asarray(v) for v in vals]))
    return jnp.stack(vals)


def _unpack_scalars(vec: Any) -> list:
    """The entries of a packed vector as scalars (one split, not an index per entry).
    Remembered weakly, so :func:`_pack_scalars` of the same scalars returns ``vec`` itself."""
    out = _entries(vec)
    if len(out) > 1 and isinstance(vec, jax.Array):
        if len(_UNPACKED) >= 1024:
            _UNPACKED.clear()
        _UNPACKED[id(out[0])] = (weakref.ref(vec), [weakref.ref(x) for x in out])
    return out


def _freeze(v: Any) -> Any:
    if isinstance(v, dict):
        return tuple((k, _freeze(x)) for k, x in v.items())
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _tname(v: Any) -> str:
    t = type(v)
    return "jax.Array" if isinstance(v, jax.Array) else f"{t.__module__}.{t.__qualname__}"
