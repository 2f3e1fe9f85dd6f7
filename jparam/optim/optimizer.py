"""``Optimizer``: torch's optimizer API on optax, as a pure, jit-able pytree.

``model, opt = opt.step(model)`` reads each parameter's ``grad`` from the model, applies the
optimizer's optax transformation to each param group's parameters that have a grad (a
parameter without one is skipped entirely, with no decay, momentum or step count, as in
torch), writes the new values into a new model and returns a new optimizer. The gradients it
consumed are cleared in the returned model (``set_to_none``).

How it finds its parameters after ``jit`` rebuilt them: ``_params.py`` (positions). How it
crosses ``jit`` and why every returned optimizer still behaves as torch's one mutable object:
``_pytree.py``. The update rules: one file per algorithm family (``sgd.py``, ``adam.py``, ...).

Example:
    >>> model = nn.Linear(2, 1)
    >>> opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> _, model = jparam.backward(lambda m, x: m(x).sum(), model, jnp.ones((4, 2)))
    >>> model, opt = opt.step(model)
    >>> opt.param_groups[0]["lr"]
    0.1
"""
from __future__ import annotations

import copy
import pickle
import warnings
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from jparam import _flatten as fl
from jparam._convert import is_torch_tensor, to_numpy, type_name
from jparam._module import Module
from jparam._parameter import Parameter, token_ref
from jparam._tracing import TracerLeakError, trace_state_clean
from jparam.optim import _params
from jparam.optim import _pytree as pt
from jparam.optim._pytree import GroupSpec, GroupState, Spec

__all__ = ["Optimizer", "ParamGroup", "required"]


class _Required:
    def __repr__(self) -> str:
        return "<required parameter>"

    def __reduce__(self) -> str:
        return "required"  # the one sentinel, also after pickling


required = _Required()

_ALWAYS_STATIC = ("foreach", "differentiable", "fused", "capturable", "param_names")


def _is_numeric(v: Any) -> bool:
    if isinstance(v, bool) or v is None:
        return False
    if isinstance(v, (int, float, np.integer, np.floating)):
        return True
    if isinstance(v, (jax.Array, np.ndarray)):
        return jnp.ndim(v) == 0
    if isinstance(v, (tuple, list)) and v:
        return all(_is_numeric(e) for e in v)
    return False


def _python(v: Any) -> Any:
    """A numeric value as the user would read it back: Python numbers kept exactly as given,
    NumPy / jax scalars as Python floats (tuples elementwise); tracers pass."""
    if isinstance(v, (tuple, list)):
        return tuple(_python(e) for e in v)
    if isinstance(v, jax.core.Tracer) or (isinstance(v, (int, float)) and not isinstance(v, bool)):
        return v
    return float(np.asarray(v))


def _same_f32(host: Any, leaf_value: Any) -> bool:
    """Whether a float32 leaf still holds (to float32) the host's exact value."""
    if isinstance(host, tuple):
        return isinstance(leaf_value, tuple) and len(host) == len(leaf_value) and all(
            _same_f32(h, v) for h, v in zip(host, leaf_value))
    return np.float32(host) == np.float32(leaf_value)


def _placement(x: Any) -> Any:
    """Where hyperparameters and step counts live: replicated over the devices of ``x``
    (None: the default device, uncommitted, like ``x``)."""
    if not isinstance(x, jax.Array) or not getattr(x, "_committed", False):
        return None
    s = x.sharding
    if isinstance(s, NamedSharding):
        return NamedSharding(s.mesh, PartitionSpec())
    if s.is_fully_replicated:
        return s
    devices = sorted(s.device_set, key=lambda d: d.id)
    return NamedSharding(jax.sharding.Mesh(np.array(devices), ("d",)), PartitionSpec())


def _leaf(v: Any, placement: Any) -> Any:
    """A numeric hyperparameter as float32 leaves (tuples elementwise); tracers are cast."""
    if isinstance(v, tuple):
        return tuple(_leaf(e, placement) for e in v)
    if isinstance(v, jax.core.Tracer):
        return jnp.asarray(v, jnp.float32)
    return jax.device_put(np.float32(v), placement)


def _leaf_value(leaf: Any) -> Any:
    if isinstance(leaf, tuple):
        return tuple(_leaf_value(e) for e in leaf)
    return np.asarray(leaf)


def _freeze(v: Any) -> Any:
    if isinstance(v, dict):
        return tuple((k, _freeze(x)) for k, x in v.items())
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


class ParamGroup(dict):
    """One torch param group: ``{"params": [...], "lr": ..., ...}``.

    Outside jit, the groups of every incarnation of an optimizer are one set of dicts
    holding the exact values you set (``opt.param_groups[0]["lr"] == 0.01``); assigning a
    number never recompiles a jitted step (the step reads float32 copies as data). Inside
    jit, an optimizer argument's groups hold its traced values, and assigning one (e.g.
    ``sched.lr_at(step)``) changes the optimizer the step returns.

    Example:
        >>> opt.param_groups[0]["lr"] = 3e-4
    """

    __slots__ = ("_owner", "_index")

    def __reduce__(self):
        return (dict, (dict(self),))  # a group pickled (or deep-copied) on its own: its values

    def __setitem__(self, key: str, value: Any) -> None:
        owner = getattr(self, "_owner", None)
        if owner is None:
            dict.__setitem__(self, key, value)
        elif isinstance(owner, pt.Control):
            _host_set(owner, self._index, key, value)
        else:
            owner._traced_set(self._index, key, value)


def _group_view(values: Dict[str, Any], owner: Any, index: int) -> ParamGroup:
    """Group ``index`` of ``owner`` (a control block, or a traced optimizer) holding ``values``."""
    pg = ParamGroup()
    for k, v in values.items():
        dict.__setitem__(pg, k, v)
    pg._owner, pg._index = owner, index
    return pg


def _spec_values(spec: GroupSpec, hyper: Dict[str, Any], meta: tuple) -> Dict[str, Any]:
    """A group's torch values from its static spec, its hyperparameters and host-only keys."""
    values: Dict[str, Any] = {"params": list(spec.params)}
    values.update((k, list(v) if k == "param_names" else v) for k, v in spec.statics)
    values.update(hyper)
    values.update(meta)
    return values


def _check_numeric(key: str, value: Any, old: Any) -> None:
    if not _is_numeric(value) and not isinstance(value, jax.core.Tracer):
        raise TypeError(f"param_groups[...]['{key}'] must be a number, got {type_name(value)}")
    if isinstance(old, tuple) and (not isinstance(value, (tuple, list)) or len(value) != len(old)):
        raise TypeError(f"param_groups[...]['{key}'] must be a tuple of {len(old)} numbers, got {value!r}")


def _host_set(control: pt.Control, g: int, key: str, value: Any) -> None:
    """A host-side edit of a param group: exact value kept, version and edit count bumped."""
    if isinstance(value, jax.core.Tracer):
        raise TracerLeakError(
            f"param_groups[{g}]['{key}'] of an optimizer created outside jit was assigned a traced "
            "value inside a jitted function; pass the optimizer as an argument and return it")
    with control.lock:
        _pull_from_newest(control)
        pg = control.groups[g]
        if key in control.numeric[g]:
            _check_numeric(key, value, pg.get(key))
            value = _python(value)
        dict.__setitem__(pg, key, value)
        control.version += 1
    pt.note_edit()


def _pull_from_newest(control: pt.Control) -> None:
    """Make the control's values current: a value the newest incarnation got inside a jitted
    step (``opt.param_groups[0]["lr"] = sched.lr_at(k)`` there) replaces the host's."""
    inc = pt.newest(control)
    if inc is None:
        return
    hv = pt.read_handle(inc)
    if hv is None or hv[1] != control.version:
        return  # host edits are newer than its leaves
    for g, gs in enumerate(inc.__dict__["_gs"][:len(control.groups)]):
        pg = control.groups[g]
        for k, leaf in gs.hyper.items():
            try:
                got = _leaf_value(leaf)
            except Exception:  # donated
                return
            if k not in pg or not _same_f32(pg[k], got):
                dict.__setitem__(pg, k, _python(got))


class Optimizer:
    """Base class of jparam optimizers; wraps any optax transformation as a torch optimizer.

    ``Optimizer(params, tx)`` with an ``optax.GradientTransformation`` gives an optimizer
    whose update is ``tx``, applied to each parameter on its own (hyperparameters baked into
    ``tx``; ``lr`` in ``param_groups`` is not used). Subclasses (SGD, Adam, ...) instead build
    their transformation from each group's hyperparameters by overriding :meth:`_transform`.

    Example:
        >>> opt = optim.Optimizer(model.parameters(), optax.lion(1e-4))
        >>> model, opt = opt.step(model)
    """

    _static_keys: Tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        pt.register(cls)

    def __init__(self, params: Iterable[Any], defaults: Any) -> None:
        tx = defaults if isinstance(defaults, optax.GradientTransformation) else None
        defaults = {} if tx is not None else dict(defaults)
        control = pt.Control(defaults)
        self._attach((), Spec(type(self), (), False, None, tx, (defaults, ())), control)
        if isinstance(params, (Parameter, jax.Array, np.ndarray)) or hasattr(params, "shape"):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Parameters or dicts, but got {type_name(params)}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def _attach(self, gs: tuple, spec: Spec, control: pt.Control) -> None:
        """Make this object the first incarnation of a new optimizer with ``control``."""
        d = self.__dict__
        d["_gs"], d["_spec"], d["_control"], d["_views"] = gs, spec, control, None
        d["_outer"], d["_seq"] = True, pt.next_seq()
        d["_handle"] = pt.handle_array(control)
        control.add(self)

    # ------------------------------------------------------------------ subclass hooks
    def _transform(self, group: Dict[str, Any], struct: tuple) -> optax.GradientTransformation:
        """The transformation for ``group`` (numeric values may be float32 leaves or tracers)."""
        tx = self._spec.tx
        if tx is None:
            raise NotImplementedError(f"{type(self).__name__} must implement _transform")
        return tx

    def _group_struct(self, group: Dict[str, Any]) -> tuple:
        """Static structure decided from a new group's Python values (e.g. momentum != 0)."""
        return ()

    def _next_struct(self, group: Dict[str, Any], old: tuple) -> tuple:
        """A group's structure after an edit, given the one it had (default: re-derived)."""
        return self._group_struct(group)

    def _convert_state(self, group: Dict[str, Any], old: tuple, new: tuple, state: Any,
                       init: Callable[[], Any]) -> Any:
        """A group's state when its structure changes from ``old`` to ``new`` (e.g. momentum
        switched on); ``init()`` is a fresh state. Default: the fresh state."""
        return init()

    def _init_state(self, tx: Any, likes: list, placement: Any) -> Any:
        """A group's initial state: one ``tx.init`` per parameter (a tuple)."""
        return tuple(_place(tx.init(p), p, placement) for p in likes)

    def _update_group(self, tx: Any, grads: list, state: Any, params: list) -> Tuple[list, Any]:
        """One group's update for the parameters listed: ``(updates, new state)``."""
        out = [tx.update(g, s, p) for g, s, p in zip(grads, state, params)]
        return [u for u, _ in out], tuple(s for _, s in out)

    def _take(self, state: Any, js: list) -> Any:
        """The group state of the parameters at positions ``js`` of the group."""
        return tuple(state[j] for j in js)

    def _put(self, state: Any, js: Optional[list], new: Any) -> Any:
        """``state`` with the entries at ``js`` (None: all) replaced by ``new``."""
        if js is None:
            return tuple(new)
        out = list(state)
        for j, s in zip(js, new):
            out[j] = s
        return tuple(out)

    def _state_to_torch(self, tx: Any, state: Any, j: int) -> Dict[str, Any]:
        """Parameter ``j``'s state in torch's names (``{}`` if it has not been stepped)."""
        return {f"optax_{i}": v for i, v in enumerate(jax.tree_util.tree_leaves(state[j]))}

    def _states_from_torch(self, tx: Any, entries: list, likes: list, state: Any, where: list) -> Any:
        """The group's state from torch entries (one dict per parameter; ``{}``: fresh)."""
        fresh = self._init_state(tx, likes, self._placement())
        out = []
        for j, (e, like) in enumerate(zip(entries, likes)):
            if not e:
                out.append(fresh[j])
                continue
            leaves, td = jax.tree_util.tree_flatten(fresh[j])
            keys = [f"optax_{i}" for i in range(len(leaves))]
            if sorted(e) != sorted(keys):
                raise ValueError(f"{where[j]} has keys {sorted(e)}, expected {keys} (this optimizer's state)")
            vals = []
            for k, ref in zip(keys, leaves):
                a = _as_array(e[k], f"{where[j]}['{k}']")
                if a.shape != ref.shape:
                    raise ValueError(f"{where[j]}['{k}'] has shape {a.shape}, expected {ref.shape}")
                vals.append(jnp.asarray(a, ref.dtype))
            out.append(jax.tree_util.tree_unflatten(td, vals))
        return tuple(out)

    def _state_keys(self, tx: Any) -> Optional[tuple]:
        """The keys of a non-empty torch state entry (None: checked by the converter)."""
        return getattr(tx, "state_keys", None) or None

    # ------------------------------------------------------------------ views of the groups
    def _host(self) -> Optional[pt.Control]:
        return pt.resolve(self) if self.__dict__["_outer"] else None

    def _placement(self) -> Any:
        c = self._host()
        return c.placement if c is not None else None

    def _values(self, g: int) -> Dict[str, Any]:
        """Group ``g``'s values as the update reads them: statics and float32 leaves."""
        spec = self._spec.groups[g]
        vals = dict(spec.statics)
        vals.update(self._gs[g].hyper)
        return vals

    @property
    def defaults(self) -> Dict[str, Any]:
        c = self._host()
        return c.defaults if c is not None else self._spec.host[0]

    @property
    def param_groups(self) -> List[ParamGroup]:
        """torch's param groups; ``params`` holds each parameter's position in the model's leaf
        order (or an identity token when the parameters belong to no module)."""
        c = self._host()
        if c is None:
            return self._traced_views()
        with c.lock:
            _pull_from_newest(c)
            return list(c.groups)

    def _traced_views(self) -> List[ParamGroup]:
        views = self.__dict__.get("_views")
        if views is None:
            views = []
            metas = self._spec.host[1]
            for g, (spec, gs) in enumerate(zip(self._spec.groups, self._gs)):
                views.append(_group_view(_spec_values(spec, gs.hyper, metas[g] if g < len(metas) else ()), self, g))
            self.__dict__["_views"] = views
        return views

    def _traced_set(self, g: int, key: str, value: Any) -> None:
        """An edit inside jit: numeric values become this optimizer's leaves (data)."""
        spec, gs = self._spec.groups[g], self._gs[g]
        if key in spec.numeric:
            _check_numeric(key, value, gs.hyper[key])
            leaf = _leaf(_python(value) if not isinstance(value, (tuple, list)) else tuple(value), None)
            self._set_group(g, GroupState({**gs.hyper, key: leaf}, gs.state), spec)
            dict.__setitem__(self._traced_views()[g], key, leaf)
            return
        values = dict(spec.statics)
        if key in values or key in self.defaults:
            values[key] = value
            statics = tuple((k, _freeze(values[k])) for k, _ in spec.statics)
            new_spec = spec._replace(statics=statics)
            struct = self._next_struct({**values, **{k: v for k, v in gs.hyper.items()}}, spec.struct)
            state = gs.state
            if struct != spec.struct:
                state = self._converted(g, values, spec.struct, struct, gs.state, None)
            self._set_group(g, GroupState(gs.hyper, state), new_spec._replace(struct=struct))
        else:
            metas = list(self._spec.host[1])
            metas[g] = tuple((k, v) for k, v in metas[g] if k != key) + ((key, value),)
            self.__dict__["_spec"] = self._spec.replace(host=(self._spec.host[0], tuple(metas)))
        dict.__setitem__(self._traced_views()[g], key, value)

    def _set_group(self, g: int, gs: GroupState, spec: GroupSpec) -> None:
        d = self.__dict__
        d["_gs"] = d["_gs"][:g] + (gs,) + d["_gs"][g + 1:]
        groups = self._spec.groups
        if groups[g] is not spec:
            d["_spec"] = self._spec.replace(groups=groups[:g] + (spec,) + groups[g + 1:])

    def _converted(self, g: int, values: dict, old: tuple, new: tuple, state: Any, placement: Any) -> Any:
        likes = [jnp.zeros(s, dt) for s, dt in self._spec.groups[g].sigs]
        tx = self._transform({**values, **self._gs[g].hyper}, new)
        return self._convert_state(values, old, new, state, lambda: self._init_state(tx, likes, placement))

    # ------------------------------------------------------------------ host-side sync
    def _sync_with_control(self) -> None:
        """Apply the control's host-side edits to this incarnation's leaves (if it is older)."""
        c = pt.resolve(self)
        if c is None:
            return
        with c.lock:
            hv = pt.read_handle(self)
            if hv is None or hv[1] == c.version:
                return
            for g in range(min(len(self._gs), len(c.groups))):
                self._rebuild_group(g, c)
            metas = tuple(tuple((k, v) for k, v in pg.items() if k not in c.defaults and k not in
                                ("params", "param_names")) for pg in c.groups)
            self.__dict__["_spec"] = self._spec.replace(host=(c.defaults, metas))
            self.__dict__["_handle"] = pt.handle_array(c)
            self.__dict__["_views"] = None

    def _rebuild_group(self, g: int, c: pt.Control) -> None:
        """Group ``g``'s leaves and spec from the control's values (structure re-derived)."""
        pg, spec, gs = c.groups[g], self._spec.groups[g], self._gs[g]
        numeric = c.numeric[g]
        hyper = {k: _leaf(pg[k], c.placement) for k in numeric}
        statics = tuple((k, _freeze(v)) for k, v in pg.items() if k != "params" and k not in numeric
                        and k in dict(spec.statics))
        values = {k: v for k, v in pg.items() if k != "params"}
        struct = self._next_struct(values, spec.struct)
        state = gs.state
        if struct != spec.struct:
            self._set_group(g, GroupState(hyper, state), spec)
            state = self._converted(g, dict(statics), spec.struct, struct, state, c.placement)
        self._set_group(g, GroupState(hyper, state), spec._replace(statics=statics, struct=struct))

    def _adopt(self) -> pt.Control:
        """A control block for an incarnation whose optimizer is gone (made inside a trace)."""
        spec = self._spec
        c = pt.Control(dict(spec.host[0]))
        metas = spec.host[1]
        for g, (gspec, gs) in enumerate(zip(spec.groups, self._gs)):
            hyper = {k: _python(_leaf_value(v)) for k, v in gs.hyper.items()}
            c.groups.append(_group_view(_spec_values(gspec, hyper, metas[g] if g < len(metas) else ()), c, g))
            c.numeric.append(gspec.numeric)
            c.tokens.append(list(gspec.params))
        c.version = pt.read_handle(self)[1]
        return c

    def _live(self) -> "Optimizer":
        """The newest incarnation of this optimizer outside jit, made current."""
        c = self._host()
        if c is None:
            return self
        inc = pt.newest(c) or self
        inc._sync_with_control()
        return inc

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (torch's semantics and errors).

        Works on any incarnation outside jit (it extends the newest one, which your loop
        passes to the next step).

        Example:
            >>> net = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 1))
            >>> opt = optim.SGD(net[0].parameters(), lr=0.1)
            >>> opt.add_param_group({"params": net[1].parameters(), "lr": 1e-3})
            >>> [g["lr"] for g in opt.param_groups]
            [0.1, 0.001]
        """
        c = self._host()
        if c is None:
            raise RuntimeError("add_param_group inside a jitted function is not supported: add the "
                               "group outside jit, before the step is traced")
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type_name(param_group)}")
        with c.lock:
            live = self if not c.groups else self._live()
            live._add_group(c, dict(param_group))
            c.version += 1
            live.__dict__["_handle"] = pt.handle_array(c)
        pt.note_edit()

    def _add_group(self, c: pt.Control, group: Dict[str, Any]) -> None:
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
                                f"the params is {type_name(p)} (pass model.parameters())")
        seen, uniq = set(), []
        for p in params:
            if id(p) in seen:
                warnings.warn("optimizer contains a parameter group with duplicate parameters; "
                              "the duplicates are ignored", stacklevel=4)
                continue
            seen.add(id(p))
            uniq.append(p)
        for k, default in c.defaults.items():
            if default is required and k not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {k}")
            group.setdefault(k, default)
        tokens = [p._jp_id for p in uniq]
        if {t for ts in c.tokens for t in ts}.intersection(tokens):
            raise ValueError("some parameters appear in more than one parameter group")
        positions, root, layout = _params.bind(uniq)
        spec = self._spec
        positional = spec.positional
        if positions is not None and c.groups and positional:
            prev = c.root_ref() if c.root_ref is not None else None
            if prev is not None and root is not prev and not _same_model(prev, root, c.tokens):
                raise ValueError("add_param_group: these parameters belong to a different model than "
                                 "the optimizer's other parameters; opt.step(model) updates one model")
            # re-derive every group's positions from the live objects (the model may have grown)
            for g, ps in enumerate(_params.positions_in(root, c.tokens)):
                dict.__setitem__(c.groups[g], "params", ps)
                self._set_group(g, self._gs[g], spec.groups[g]._replace(params=tuple(ps)))
                spec = self._spec
        if positions is None:
            if positional and c.groups:  # switch every group to identity tokens
                for g, ts in enumerate(c.tokens):
                    dict.__setitem__(c.groups[g], "params", list(ts))
                    self._set_group(g, self._gs[g], spec.groups[g]._replace(params=tuple(ts)))
                    spec = self._spec
            positional = False
        elif not c.groups:
            positional = True
        if positional:
            c.root_ref = weakref.ref(root)
        if c.placement is None and uniq:
            c.placement = _placement(uniq[0]._data)
        numeric = tuple(k for k, v in group.items() if k != "params" and k not in self._static_keys
                        and k not in _ALWAYS_STATIC and k in c.defaults and _is_numeric(v))
        pg = ParamGroup()
        dict.__setitem__(pg, "params", list(positions) if positional else tokens)
        for k, v in group.items():
            if k != "params":
                dict.__setitem__(pg, k, _python(v) if k in numeric else v)
        if names is not None:
            dict.__setitem__(pg, "param_names", names)
        values = {k: v for k, v in pg.items() if k != "params"}
        struct = self._group_struct(values)
        statics = tuple((k, _freeze(v)) for k, v in values.items() if k not in numeric and k in c.defaults
                        or k == "param_names")
        hyper = {k: _leaf(pg[k], c.placement) for k in numeric}
        tx = self._transform({**dict(statics), **hyper}, struct)
        state = self._init_state(tx, [p._data for p in uniq], c.placement)
        gspec = GroupSpec(tuple(pg["params"]), numeric, statics, struct,
                          tuple((tuple(p.shape), str(p.dtype)) for p in uniq))
        meta = tuple((k, v) for k, v in values.items() if k not in c.defaults and k != "param_names")
        pg._owner, pg._index = c, len(c.groups)
        c.groups.append(pg)
        c.numeric.append(numeric)
        c.tokens.append(tokens)
        d = self.__dict__
        d["_gs"] = d["_gs"] + (GroupState(hyper, state),)
        d["_spec"] = spec.replace(groups=spec.groups + (gspec,), positional=positional,
                                  layout=layout if positional else None,
                                  host=(c.defaults, spec.host[1] + (meta,)))
        d["_views"] = None

    # ------------------------------------------------------------------ the step
    def step(self, model: Module, closure: Optional[Callable] = None) -> Tuple[Module, "Optimizer"]:
        """Apply one update: ``model, opt = opt.step(model)``. Pure and jit-able.

        Parameters of this optimizer that have a ``grad`` and ``requires_grad`` are updated
        (ties once); their grads are cleared in the returned model. Others are untouched.

        Example:
            >>> _, model = jparam.backward(loss_fn, model, x, y)
            >>> model, opt = opt.step(model)
        """
        if closure is not None:
            raise TypeError("jparam optimizers take no closure: compute the loss with jparam.backward first")
        if not isinstance(model, Module):
            raise TypeError("opt.step(model): expected the jparam.nn.Module whose parameters carry "
                            f".grad, got {type_name(model)}")
        d = self.__dict__
        if d["_outer"]:
            pt.ensure_current(self)
        spec = self._spec
        leaves, aux = fl.flatten_module(model)
        bp, tokens = aux.bp, aux.tokens
        pdata, grads, others = fl.split_leaves(bp, leaves)
        per = fl.grads_by_param(bp, grads)
        if spec.positional:
            _params.check_model(bp, pdata, spec.layout, [(s.params, s.sigs) for s in spec.groups])
            where = None
        else:
            where = {t: i for i, t in enumerate(tokens)}
        new_gs = list(self._gs)
        found = 0
        for g, gspec in enumerate(spec.groups):
            todo, seen = [], set()  # (position in the group, in the model) of each parameter to update
            for j, ref in enumerate(gspec.params):
                i = ref if where is None else where.get(ref)
                if i is None:
                    continue
                found += 1
                if per[i] is not None and bp.params[i][0] and i not in seen:
                    todo.append((j, i))
                    seen.add(i)
            if not todo:
                continue
            gs = self._gs[g]
            tx = self._transform(self._values(g), gspec.struct)
            js = [j for j, _ in todo]
            everyone = js == list(range(len(gspec.params)))
            sub = gs.state if everyone else self._take(gs.state, js)
            us, new_sub = self._update_group(tx, [per[i] for _, i in todo], sub, [pdata[i] for _, i in todo])
            new_gs[g] = GroupState(gs.hyper, self._put(gs.state, None if everyone else js, new_sub))
            for (j, i), u in zip(todo, us):
                new_p = pdata[i] + u
                pdata[i] = new_p if new_p.dtype == pdata[i].dtype else new_p.astype(pdata[i].dtype)
                per[i] = None
        if found == 0:
            raise ValueError("opt.step(model): none of this optimizer's parameters are in the model; "
                             "build the optimizer from this model's parameters (model.parameters())")
        return fl.assemble(bp, tokens, pdata, per, others), self._successor(tuple(new_gs))

    def _successor(self, gs: tuple) -> "Optimizer":
        """A new incarnation with the group states ``gs`` (same spec and handle)."""
        new = object.__new__(type(self))
        d, src = new.__dict__, self.__dict__
        outer = trace_state_clean()
        d["_gs"], d["_handle"], d["_spec"], d["_views"] = gs, src["_handle"], src["_spec"], None
        d["_outer"], d["_seq"] = outer, pt.next_seq()
        d["_control"] = src["_control"] if outer else None
        if outer:
            d["_edits"] = src.get("_edits", -1)
            if d["_control"] is not None:
                d["_control"].add(new)
            else:
                pt.track(new)
        return new

    def zero_grad(self, model: Module, set_to_none: bool = True) -> Module:
        """The model with the grads of this optimizer's parameters cleared (pure).

        Example:
            >>> model = opt.zero_grad(model)
        """
        spec = self._spec
        leaves, aux = fl.flatten_module(model)
        bp = aux.bp
        pdata, grads, others = fl.split_leaves(bp, leaves)
        per = fl.grads_by_param(bp, grads)
        if spec.positional:
            mine = {i for s in spec.groups for i in s.params}
        else:
            toks = {t for s in spec.groups for t in s.params}
            mine = {i for i, t in enumerate(aux.tokens) if t in toks}
        for i in mine:
            if i < len(per) and per[i] is not None:
                per[i] = None if set_to_none else jnp.zeros_like(per[i])
        return fl.assemble(bp, aux.tokens, pdata, per, others)

    # ------------------------------------------------------------------ checkpoints
    @property
    def state(self) -> Dict[int, Dict[str, Any]]:
        """Per-parameter state in torch's names, keyed by the parameter's index."""
        return self.state_dict()["state"]

    def state_dict(self) -> Dict[str, Any]:
        """torch's layout: ``{"state": {index: {...}}, "param_groups": [{..., "params": [index]}]}``.

        Example:
            >>> sd = opt.state_dict(); sorted(sd)
            ['param_groups', 'state']
        """
        c = self._host()
        live = self._live()
        groups_src = self.param_groups
        state, groups, idx = {}, [], 0
        for g, pg in enumerate(groups_src):
            spec, gs = live._spec.groups[g], live._gs[g]
            tx = live._transform(live._values(g), spec.struct)
            n = len(spec.params)
            for j in range(n):
                entry = live._state_to_torch(tx, gs.state, j)
                if entry:
                    state[idx + j] = entry
            hp = {k: (_python(v) if c is None and k in spec.numeric else v) for k, v in pg.items()
                  if k != "params"}
            hp["params"] = list(range(idx, idx + n))
            groups.append(hp)
            idx += n
        return {"state": state, "param_groups": groups}

    def _check_state_dict(self, state_dict: Dict[str, Any]) -> list:
        """Validate ``state_dict`` against this optimizer and convert it, changing nothing.

        Returns, per group, ``(values, struct, group state)``; raises a ``TypeError`` /
        ``ValueError`` naming the group, parameter index and key at fault otherwise.
        ``load_state_dict`` calls it first, so a refused state dict leaves the optimizer as
        it was; ``load_checkpoint`` may call it to validate before loading anything.
        """
        c = self._host()
        if c is None:
            raise RuntimeError("load_state_dict inside a jitted function is not supported")
        live = self._live()
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict:
            raise TypeError("optimizer state_dict must be a dict with 'state' and 'param_groups', got "
                            f"{type_name(state_dict) if not isinstance(state_dict, dict) else sorted(state_dict)}")
        saved = state_dict["param_groups"]
        saved_state = state_dict.get("state", {})
        if not isinstance(saved, (list, tuple)) or not all(isinstance(s, dict) for s in saved):
            raise TypeError("state_dict['param_groups'] must be a list of dicts")
        if not isinstance(saved_state, dict):
            raise TypeError(f"state_dict['state'] must be a dict, got {type_name(saved_state)}")
        if len(saved) != len(c.groups):
            raise ValueError(f"loaded state dict has a different number of parameter groups "
                             f"({len(saved)}) than the optimizer ({len(c.groups)})")
        for g, (sg, pg) in enumerate(zip(saved, c.groups)):
            if "params" not in sg or len(sg["params"]) != len(pg["params"]):
                raise ValueError(f"loaded state dict contains a parameter group that doesn't match the size "
                                 f"of optimizer's group: param_groups[{g}] has "
                                 f"{len(sg.get('params', ()))} parameters, expected {len(pg['params'])}")
        known = set()
        out = []
        for g, (sg, pg) in enumerate(zip(saved, c.groups)):
            spec = live._spec.groups[g]
            values = {k: v for k, v in pg.items() if k != "params"}
            for k in c.numeric[g]:
                if k not in sg:
                    raise ValueError(f"param_groups[{g}] has no '{k}': it was not saved by a "
                                     f"{type(self).__name__} (keys: {sorted(sg)})")
            for k, v in sg.items():
                if k in ("params", "param_names"):
                    continue
                if k in c.numeric[g]:
                    if not _is_numeric(v) or isinstance(v, (tuple, list)) != isinstance(values[k], tuple) or (
                            isinstance(v, (tuple, list)) and len(v) != len(values[k])):
                        raise ValueError(f"param_groups[{g}]['{k}'] is {v!r}, expected "
                                         f"{'a tuple of %d numbers' % len(values[k]) if isinstance(values[k], tuple) else 'a number'}")
                    values[k] = _python(v)
                else:
                    values[k] = v
            struct = self._next_struct(values, spec.struct)
            hyper = {k: _leaf(values[k], c.placement) for k in c.numeric[g]}
            statics = tuple((k, _freeze(values[k])) for k, _ in spec.statics)
            tx = self._transform({**dict(statics), **hyper}, struct)
            expected = self._state_keys(tx)
            entries, where = [], []
            for j, sid in enumerate(sg["params"]):
                key = sid if sid in saved_state else str(sid) if str(sid) in saved_state else None
                known.add(key)
                entry = saved_state.get(key, {}) if key is not None else {}
                if not isinstance(entry, dict):
                    raise TypeError(f"state[{sid}] must be a dict, got {type_name(entry)}")
                w = f"state[{sid}] (param_groups[{g}] parameter {j})"
                if entry and expected is not None:
                    got = set(entry)
                    if got != set(expected) and not (set(expected) == {"momentum_buffer"} and got == {"momentum_buffer"}):
                        extra, missing = sorted(got - set(expected)), [k for k in expected if k not in got]
                        raise ValueError(
                            f"{w} has keys {sorted(got)}, but a {type(self).__name__} with these options keeps "
                            f"{list(expected)} per parameter"
                            + (f" (unexpected: {extra}" if extra else " (") + (f"; missing: {missing})" if missing else ")")
                            + ": it was saved by another optimizer or with other options")
                entries.append({k: (None if v is None else _as_array(v, f"{w}['{k}']")) for k, v in entry.items()})
                where.append(w)
            likes = [jnp.zeros(s, dt) for s, dt in spec.sigs]
            try:
                state = self._states_from_torch(tx, entries, likes, live._gs[g].state, where)
            except (KeyError, ValueError, TypeError) as e:
                msg = e.args[0] if e.args else str(e)
                raise ValueError(f"param_groups[{g}]: {msg}") from None
            out.append((values, struct, statics, hyper, state))
        return out

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Load a ``state_dict()`` (ours or a torch optimizer's; arrays as torch/NumPy/jax).

        Everything is validated first (group count and sizes, each parameter's state keys for
        this optimizer and its options, shapes, dtypes); a refused state dict changes nothing.

        Example:
            >>> torch_opt = torch.optim.SGD(torch.nn.Linear(4, 2).parameters(), lr=0.1)
            >>> opt.load_state_dict(torch_opt.state_dict())
        """
        prepared = self._check_state_dict(state_dict)
        # torch copies loaded state into its own tensors: an array shared with the source
        # optimizer would be deleted when that optimizer's step is donated
        prepared = [p[:4] + (jax.tree_util.tree_map(_own_copy, p[4]),) for p in prepared]
        c = self._host()
        with c.lock:
            live = self._live()
            for g, (values, struct, statics, hyper, state) in enumerate(prepared):
                pg = c.groups[g]
                for k, v in values.items():
                    dict.__setitem__(pg, k, v)
                live._set_group(g, GroupState(hyper, state),
                                live._spec.groups[g]._replace(statics=statics, struct=struct))
            c.version += 1
            live.__dict__["_handle"] = pt.handle_array(c)
            live.__dict__["_views"] = None
        pt.note_edit()

    # ------------------------------------------------------------------ pickle and copies
    def __reduce__(self):
        """``pickle.dumps(opt)``: the optimizer as it is now (any incarnation pickles as its
        newest, so ``opt`` and a scheduler's ``optimizer`` load as one object); loading gives
        a new, independent optimizer (see ``docs/optim.md``, "Pickling and copies")."""
        live, state = self._copyable("pickled")
        if live is not self:
            return (_same_optimizer, (live,))
        tx = state["tx"]
        if tx is not None:
            try:
                pickle.dumps(tx)
            except Exception:
                raise TypeError(f"this {type(self).__name__} wraps an optax transformation, which pickle "
                                "cannot store (its functions are closures); copy.deepcopy(opt) works, and "
                                "opt.state_dict() holds its state") from None
        state["placement"] = None  # unpickled arrays are on the default device
        return (_restore, (type(self), state))

    def __deepcopy__(self, memo: dict) -> "Optimizer":
        """An independent optimizer with copies of this one's current values and state
        (parameters copied in the same ``deepcopy`` call stay its parameters, as in torch)."""
        live, state = self._copyable("copied")
        if live is not self:
            return copy.deepcopy(live, memo)
        kept = {k: state.pop(k) for k in ("gs", "tx", "placement")}
        state = copy.deepcopy(state, memo)
        state.update(kept, gs=jax.tree_util.tree_map(lambda x: x.copy() if hasattr(x, "copy") else x, kept["gs"]))
        return _restore(type(self), state)

    def __copy__(self) -> "Optimizer":
        """``copy.copy(opt)``: the same optimizer (as torch's shallow copy shares its groups and
        state)."""
        return self._successor(self._gs)

    def _copyable(self, verb: str) -> Tuple["Optimizer", Optional[Dict[str, Any]]]:
        """The newest incarnation, made current, and its snapshot if it is this one (taken
        under the control's lock, so no host-side edit lands between its values and leaves)."""
        c = self._host()
        if c is None:
            where = ("inside a jitted function: return it from the function and " if not self.__dict__["_outer"]
                     else "when its handle is not an array (a tree_map result, or donated): ")
            raise TypeError(f"an optimizer cannot be {verb} {where}use the optimizer the step returned")
        with c.lock:
            _pull_from_newest(c)
            live = self._live()
            return live, (self._snapshot() if live is self else None)

    def _snapshot(self) -> Dict[str, Any]:
        """What :func:`_restore` rebuilds this (live) incarnation from (call under the control's
        lock). Parameters outside a model are named by :func:`token_ref` (shared with the
        parameters in one pickle)."""
        c, spec = self._control, self._spec

        def params(ps: Any) -> list:
            return list(ps) if spec.positional else [token_ref(t) for t in ps]

        return {"groups": [{k: params(v) if k == "params" else v for k, v in pg.items()} for pg in c.groups],
                "defaults": c.defaults, "numeric": list(c.numeric), "version": c.version,
                "tokens": [[token_ref(t) for t in ts] for ts in c.tokens], "placement": c.placement,
                "gs": self._gs, "specs": [s._replace(params=tuple(params(s.params))) for s in spec.groups],
                "positional": spec.positional, "layout": spec.layout, "metas": spec.host[1], "tx": spec.tx}

    def __repr__(self) -> str:
        s = type(self).__name__ + " ("
        for i, pg in enumerate(self.param_groups):
            s += f"\nParameter Group {i}"
            for k in sorted(pg):
                if k not in ("params", "param_names"):
                    s += f"\n    {k}: {pg[k]}"
        return s + "\n)"


pt.register(Optimizer)


def _same_optimizer(opt: Optimizer) -> Optimizer:
    return opt


def _restore(cls: type, state: Dict[str, Any]) -> Optimizer:
    """A new optimizer (a new control block, so a new serial: never one of a live optimizer)
    from ``Optimizer._snapshot`` after a pickle round trip or a deepcopy."""
    def value(t: Any) -> Any:
        return getattr(t, "value", t)  # a _Token's (fresh) token; positions stay

    c = pt.Control(state["defaults"])
    for g, values in enumerate(state["groups"]):
        values = {k: [value(t) for t in v] if k == "params" else v for k, v in values.items()}
        c.groups.append(_group_view(values, c, g))
    c.numeric = [tuple(n) for n in state["numeric"]]
    c.tokens = [[t.value for t in ts] for ts in state["tokens"]]
    c.version, c.placement = state["version"], state["placement"]
    specs = tuple(s._replace(params=tuple(value(t) for t in s.params)) for s in state["specs"])
    obj = object.__new__(cls)
    obj._attach(state["gs"], Spec(cls, specs, state["positional"], state["layout"], state["tx"],
                                  (c.defaults, state["metas"])), c)
    return obj


def _same_model(prev: Any, root: Any, token_groups: list) -> bool:
    """Whether ``root`` is a rebuilt copy (after jit) of the model ``prev``: it holds every
    earlier parameter's identity token."""
    objs: list = []
    fl.flatten_module(root, collect=objs)
    have = {o._jp_id for o in objs}
    return all(t in have for ts in token_groups for t in ts)


def _own_copy(x: Any) -> Any:
    """A concrete jax array copied into new buffers in its placement; anything else as it is."""
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        return jax.device_put(x, x.sharding, may_alias=False)
    return x


def _as_array(v: Any, where: str) -> Any:
    """A state value as a NumPy/jax array (torch tensors converted exactly), numeric dtypes only."""
    if is_torch_tensor(v):
        v = to_numpy(v, where)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = np.asarray(v, np.float32)
    if not isinstance(v, (jax.Array, np.ndarray, np.generic)):
        raise TypeError(f"{where} is a {type_name(v)}, expected an array")
    if not (jnp.issubdtype(v.dtype, jnp.floating) or jnp.issubdtype(v.dtype, jnp.integer)
            or v.dtype == np.bool_):
        raise TypeError(f"{where} has dtype {v.dtype}, expected a real (float) array")
    return v


def _place(state: Any, like: Any, placement: Any) -> Any:
    """Put a fresh state where its parameter lives: arrays of the parameter's shape with the
    parameter's sharding (``zeros_like`` keeps it), every other array (counts, flags)
    replicated on the parameter's devices."""
    shape = getattr(like, "shape", None)

    def put(x: Any) -> Any:
        if not isinstance(x, (jax.Array, np.ndarray)) or isinstance(x, jax.core.Tracer):
            return x
        if tuple(x.shape) == tuple(shape) and isinstance(like, jax.Array):
            return x
        return pt.put_replicated(x, placement)

    return jax.tree_util.tree_map(put, state)
