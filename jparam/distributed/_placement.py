"""Where a model's arrays live: one table of its leaves, and placing them in place.

A module's placement *is* the sharding of its arrays: :func:`fully_shard`,
:func:`parallelize_module` and :func:`replicate` ``device_put`` every leaf to a
``NamedSharding`` (or, for an abstract model from ``jax.eval_shape``, give its
``ShapeDtypeStruct`` that sharding), and :func:`shardings` reads them back as a pytree of the
model's own structure, for ``jax.jit(in_shardings=..., out_shardings=...)``.  Nothing is
remembered anywhere else, so two models, threads and jitted steps never interfere.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jparam import _flatten as fl
from jparam._module import Module
from jparam._parameter import Parameter

__all__ = ["shardings", "partition_specs"]

_ARRAYS = (jax.Array, np.ndarray, jax.ShapeDtypeStruct)


class _Leaf:
    """One leaf of a module: every name it has (ties: several), its array, its kind."""

    __slots__ = ("names", "value", "kind", "param")

    def __init__(self, names, value, kind, param=None):
        self.names, self.value, self.kind, self.param = names, value, kind, param


def leaf_table(model: Module) -> tuple:
    """``(leaves, params)``: a :class:`_Leaf` per flattened leaf of ``model`` in leaf order.

    Parameters carry every ``state_dict`` name they have (a tied weight: both), grads are
    ``kind == "grad"`` with their parameter's names, buffers and plain arrays one name.
    """
    objs: list = []
    flat, aux = fl.flatten_module(model, collect=objs)
    bp = aux.bp
    index = {id(p): j for j, p in enumerate(objs)}
    pnames: list = [[] for _ in objs]
    for name, p in model.named_parameters(remove_duplicate=False):
        pnames[index[id(p)]].append(name)
    names = bp.leaf_names()
    P, G = len(objs), bp.n_grads
    table = [_Leaf(tuple(pnames[j]) or (names[j],), flat[j], "param", objs[j]) for j in range(P)]
    g = P
    for j, p in enumerate(objs):
        if p._grad is not None:
            table.append(_Leaf(table[j].names, flat[g], "grad", p))
            g += 1
    table += [_Leaf((names[P + G + k],), v, "other") for k, v in enumerate(flat[P + G:])]
    return table, objs


def spelled_out(sharding: NamedSharding, ndim: int) -> NamedSharding:
    """On an explicit-sharding mesh, ``sharding`` with one spec entry per dimension
    (``P('fsdp')`` -> ``P('fsdp', None)``): the form JAX gives a jitted step's outputs there,
    so that the inputs of the first step equal those of every later one (one compile)."""
    mesh = sharding.mesh
    if not getattr(mesh, "_any_axis_explicit", False) or len(sharding.spec) >= ndim:
        return sharding
    return NamedSharding(mesh, PartitionSpec(*sharding.spec, *(None,) * (ndim - len(sharding.spec))),
                         memory_kind=sharding.memory_kind)


def _place(value: Any, sharding: NamedSharding) -> Any:
    sharding = spelled_out(sharding, len(value.shape))
    if isinstance(value, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=sharding)
    if isinstance(value, jax.core.Tracer):
        raise TypeError("cannot place a traced module: shard the model outside jax.jit "
                        "(or use jax.lax.with_sharding_constraint inside)")
    return jax.device_put(value, sharding)


def place_in_place(model: Module, sharding_of: Callable[[_Leaf], NamedSharding]) -> Module:
    """Move every leaf of ``model`` to ``sharding_of(leaf)``, in place (ties stay one leaf)."""
    table, _ = leaf_table(model)
    targets = [sharding_of(leaf) for leaf in table]  # every rule is checked before any move
    moved: dict = {}
    for leaf, s in zip(table, targets):
        new = _place(leaf.value, s)
        if leaf.kind == "param":
            leaf.param._data = new
        elif leaf.kind == "grad":
            leaf.param._grad = new
        else:
            moved.setdefault(id(leaf.value), new)
    if moved:
        def swap(v):
            return moved.get(id(v), v)
        for m in model.modules():
            d = m.__dict__
            for name, v in list(d.items()):
                if name.startswith("_jp_") or isinstance(v, (Parameter, Module)):
                    continue
                if isinstance(v, _ARRAYS):
                    d[name] = swap(v)
                elif isinstance(v, (list, tuple, dict)) and v:
                    d[name] = jax.tree_util.tree_map(swap, v)
    return model


def _mesh_of(sharding: Any) -> Optional[Mesh]:
    return sharding.mesh if isinstance(sharding, NamedSharding) else None


def find_mesh(leaves: list, mesh: Optional[Mesh] = None) -> Optional[Mesh]:
    """The one mesh ``leaves`` are placed on (``mesh`` if given); error if several."""
    if mesh is not None:
        return mesh
    found: dict = {}
    for v in leaves:
        m = _mesh_of(getattr(v, "sharding", None))
        if m is not None:
            found.setdefault((m.axis_names, m.devices.shape, tuple(d.id for d in m.devices.flat)), m)
    if len(found) > 1:
        raise ValueError("the arrays of this tree are placed on several different meshes "
                         f"({[tuple(m.shape.items()) for m in found.values()]}); pass mesh=")
    return next(iter(found.values()), None)


def _unflatten_detached(treedef, leaves):
    """``treedef.unflatten(leaves)`` as a value that no live object adopts.

    An optimizer rebuilt outside jit becomes "the newest incarnation" a scheduler reaches;
    a tree of shardings must not, so it is rebuilt while a (trivial) trace is active."""
    box = []

    def build():
        box.append(jax.tree_util.tree_unflatten(treedef, leaves))
        return np.float32(0)

    jax.make_jaxpr(build)()
    return box[0]


def shardings(tree: Any, mesh: Optional[Mesh] = None) -> Any:
    """The ``NamedSharding`` of every leaf of ``tree``, as a pytree of the same structure.

    ``tree`` is anything made of modules, optimizers and arrays (concrete, or abstract
    ``jax.ShapeDtypeStruct``s with a sharding): a model with or without grads, in train or
    eval mode, an optimizer, a ``(model, opt)`` tuple.  A leaf keeps its ``NamedSharding``; a
    grad without one takes its parameter's; any other leaf (a host scalar, an array on one
    device) is replicated on the tree's mesh (``mesh``, or the one mesh its arrays are on).
    Pass the result to ``jax.jit(in_shardings=..., out_shardings=...)`` or ``jax.device_put``.

    Example:
        >>> mesh = jparam.distributed.init_device_mesh("cpu", (1,), mesh_dim_names=("data",))
        >>> model = jparam.distributed.replicate(nn.Linear(4, 2), mesh)
        >>> jparam.distributed.shardings(model).weight.spec
        P()
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    for v in leaves:
        if isinstance(v, jax.core.Tracer):
            raise TypeError("jparam.distributed.shardings() reads where arrays live: call it outside "
                            "jax.jit, on the concrete or abstract (jax.eval_shape) model")
    mesh = find_mesh(leaves, mesh)
    out = [getattr(v, "sharding", None) for v in leaves]
    # a module's grads follow their parameters
    where = {}
    for i, v in enumerate(leaves):
        where.setdefault(id(v), i)
    for m in _modules_in(tree):
        table, _ = leaf_table(m)
        by_param = {id(leaf.param): leaf.value for leaf in table if leaf.kind == "param"}
        for leaf in table:
            if leaf.kind != "grad":
                continue
            pos = where.get(id(leaf.value))
            ps = getattr(by_param[id(leaf.param)], "sharding", None)
            if pos is not None and not isinstance(out[pos], NamedSharding) and isinstance(ps, NamedSharding):
                out[pos] = ps
    for i, s in enumerate(out):
        if not isinstance(s, NamedSharding):
            if mesh is None:
                raise ValueError("jparam.distributed.shardings(): no array of this tree is placed on a "
                                 "mesh; place the model first (replicate / fully_shard / "
                                 "parallelize_module) or pass mesh=")
            out[i] = NamedSharding(mesh, PartitionSpec())
        if hasattr(leaves[i], "shape"):
            out[i] = spelled_out(out[i], len(leaves[i].shape))
    return _unflatten_detached(treedef, out)


def partition_specs(tree: Any, mesh: Optional[Mesh] = None) -> Any:
    """The ``PartitionSpec`` of every leaf of ``tree`` (see :func:`shardings`).

    Example:
        >>> mesh = jparam.distributed.init_device_mesh("cpu", (1,), mesh_dim_names=("data",))
        >>> model = jparam.distributed.replicate(nn.Linear(4, 2), mesh)
        >>> jax.tree_util.tree_leaves(jparam.distributed.partition_specs(model))
        [P(), P()]
    """
    sh = shardings(tree, mesh)
    leaves, treedef = jax.tree_util.tree_flatten(sh)
    return _unflatten_detached(treedef, [s.spec for s in leaves])


def _modules_in(tree: Any) -> list:
    found: list = []

    def visit(x):
        if isinstance(x, Module):
            found.append(x)
            return True
        return False

    jax.tree_util.tree_leaves(tree, is_leaf=visit)
    return found

