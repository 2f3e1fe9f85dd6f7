"""torch's scale-out entry points on ``jax.sharding``: ``replicate`` (DDP), ``fully_shard``
(FSDP) and ``parallelize_module`` (tensor / sequence parallel plans), all in place.

Each one only decides a ``PartitionSpec`` per leaf and places the leaf there
(:mod:`._placement`); the compiled step's collectives are then XLA's (GSPMD / Shardy), the
same as for hand-written JAX with the same specs.  Gradients follow their parameters, and
an optimizer built after placement creates its state next to the parameters.
"""
from __future__ import annotations

import difflib
import fnmatch
import math
import re
from typing import Any, Callable, Mapping, Optional, Union

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jparam import nn
from jparam._module import Module
from jparam.distributed._mesh import init_device_mesh
from jparam.distributed._placement import leaf_table, place_in_place

__all__ = ["replicate", "fully_shard", "parallelize_module", "ColwiseParallel", "RowwiseParallel",
           "ParallelStyle"]

Rule = Union[PartitionSpec, Callable[[str, Any], Optional[PartitionSpec]], "ParallelStyle"]


def _check_module(module: Any, fname: str) -> None:
    if not isinstance(module, Module):
        raise TypeError(f"{fname}: expected a jparam.nn.Module, got {type(module).__name__}")


def _default_mesh(mesh: Optional[Mesh], name: str) -> Mesh:
    if mesh is None:
        return init_device_mesh(jax.devices()[0].platform, (len(jax.devices()),), mesh_dim_names=(name,))
    if not isinstance(mesh, Mesh):
        raise TypeError(f"expected a jax.sharding.Mesh (see jparam.distributed.init_device_mesh), "
                        f"got {type(mesh).__name__}")
    return mesh


def _current_spec(value: Any, mesh: Mesh, ndim: int) -> list:
    """The leaf's spec on ``mesh`` as a list of length ``ndim`` (replicated if elsewhere)."""
    s = getattr(value, "sharding", None)
    if isinstance(s, NamedSharding) and s.mesh == mesh:
        spec = list(s.spec)
        return spec + [None] * (ndim - len(spec))
    return [None] * ndim


def _axes(entry: Any) -> tuple:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, tuple) else (entry,)


def _check_spec(name: str, value: Any, spec: PartitionSpec, mesh: Mesh) -> PartitionSpec:
    if not isinstance(spec, PartitionSpec):
        raise TypeError(f"the rule for '{name}' gave {type(spec).__name__}; expected a "
                        "jax.sharding.PartitionSpec")
    shape = tuple(value.shape)
    if len(spec) > len(shape):
        raise ValueError(f"PartitionSpec{tuple(spec)} for '{name}' has {len(spec)} entries but the "
                         f"array has shape {shape} ({len(shape)} dims)")
    sizes = dict(mesh.shape)
    for d, entry in enumerate(spec):
        axes = _axes(entry)
        for a in axes:
            if a not in sizes:
                raise ValueError(f"PartitionSpec{tuple(spec)} for '{name}' names mesh axis {a!r}; "
                                 f"the mesh has axes {tuple(mesh.axis_names)}")
        n = math.prod(sizes[a] for a in axes)
        if shape[d] % n:
            raise ValueError(f"cannot shard '{name}' (shape {shape}) dim {d} of size {shape[d]} over "
                             f"mesh axes {axes} of total size {n}: not divisible")
    return spec


def replicate(module: Module, device_mesh: Optional[Mesh] = None) -> Module:
    """Data parallel (torch's DDP / ``replicate``): every parameter, buffer and array of
    ``module`` replicated over ``device_mesh``, in place; returns ``module``.

    Shard the batch with :func:`shard_batch`: XLA then all-reduces the gradients.

    Example:
        >>> mesh = jparam.distributed.init_device_mesh("cpu", (1,), mesh_dim_names=("data",))
        >>> model = jparam.distributed.replicate(nn.Linear(4, 2), mesh)
        >>> model.weight.sharding.spec
        P()
    """
    _check_module(module, "replicate")
    mesh = _default_mesh(device_mesh, "data")
    rep = NamedSharding(mesh, PartitionSpec())
    return place_in_place(module, lambda leaf: rep)


def fully_shard(module: Module, mesh: Optional[Mesh] = None, *, axis: Optional[str] = None,
                min_size: int = 1024) -> Module:
    """FSDP (torch's ``fully_shard``): shard every parameter of at least ``min_size``
    elements over mesh axis ``axis``, along its largest dimension divisible by the axis size
    (and not already sharded by a tensor-parallel plan); in place, returns ``module``.

    Buffers and smaller parameters are replicated.  XLA gathers each layer's weights where
    they are used and reduce-scatters their gradients.  On a 2-D mesh, call
    :func:`parallelize_module` first: its specs are kept and the FSDP axis is added to a
    free dimension.  Build the optimizer afterwards: its state is created next to each shard.

    Example:
        >>> mesh = jax.make_mesh((1,), ("fsdp",))
        >>> model = jparam.distributed.fully_shard(nn.Linear(64, 32), mesh)
        >>> model.weight.sharding.spec
        P(None, 'fsdp')
    """
    _check_module(module, "fully_shard")
    mesh = _default_mesh(mesh, "fsdp")
    if axis is None:
        if len(mesh.axis_names) != 1:
            raise ValueError(f"fully_shard: the mesh has axes {tuple(mesh.axis_names)}; say which one "
                             "to shard over with axis=")
        axis = mesh.axis_names[0]
    if axis not in mesh.axis_names:
        raise ValueError(f"fully_shard: axis {axis!r} is not an axis of the mesh {tuple(mesh.axis_names)}")
    n = dict(mesh.shape)[axis]

    def sharding_of(leaf):
        v = leaf.value
        ndim = len(v.shape)
        spec = _current_spec(v, mesh, ndim)
        if leaf.kind in ("param", "grad") and math.prod(v.shape) >= min_size \
                and not any(axis in _axes(e) for e in spec):
            free = [d for d in range(ndim) if spec[d] is None and v.shape[d] % n == 0 and v.shape[d] >= n]
            if free:
                best = max(free, key=lambda d: (v.shape[d], -d))
                spec[best] = axis
        while spec and spec[-1] is None:
            spec.pop()
        return NamedSharding(mesh, PartitionSpec(*spec))

    return place_in_place(module, sharding_of)


class ParallelStyle:
    """How a plan shards one module's parameters (torch's ``ParallelStyle``)."""

    def __init__(self, axis: Optional[str] = None) -> None:
        self.axis = axis

    def _mesh_axis(self, mesh: Mesh) -> str:
        if self.axis is not None:
            return self.axis
        if "tp" in mesh.axis_names:
            return "tp"
        if len(mesh.axis_names) == 1:
            return mesh.axis_names[0]
        raise ValueError(f"{type(self).__name__}(): the mesh has axes {tuple(mesh.axis_names)}; pass "
                         f"axis=, e.g. {type(self).__name__}(axis={mesh.axis_names[-1]!r})")

    def specs(self, module: Module, mesh: Mesh) -> dict:
        """``{parameter attribute: PartitionSpec}`` for ``module``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(axis={self.axis!r})"


def _style_target(style: ParallelStyle, module: Module) -> str:
    if isinstance(module, nn.Embedding):
        return "Embedding"
    if isinstance(module, nn.Linear):
        return "Linear"
    raise TypeError(f"{type(style).__name__} applies to nn.Linear and nn.Embedding, not "
                    f"{type(module).__name__}; give PartitionSpecs for its parameters instead")


class ColwiseParallel(ParallelStyle):
    """Shard ``nn.Linear``'s output features (weight ``(out, in)`` dim 0, bias) or
    ``nn.Embedding``'s embedding dim over a mesh axis (torch's ``ColwiseParallel``).

    Example:
        >>> jparam.distributed.ColwiseParallel().specs(nn.Linear(4, 8), jax.make_mesh((1,), ("tp",)))
        {'weight': P('tp', None), 'bias': P('tp',)}
    """

    def specs(self, module: Module, mesh: Mesh) -> dict:
        a = self._mesh_axis(mesh)
        if _style_target(self, module) == "Embedding":
            return {"weight": PartitionSpec(None, a)}
        return {"weight": PartitionSpec(a, None), "bias": PartitionSpec(a)}


class RowwiseParallel(ParallelStyle):
    """Shard ``nn.Linear``'s input features (weight ``(out, in)`` dim 1; bias replicated) or
    ``nn.Embedding``'s rows (vocabulary) over a mesh axis (torch's ``RowwiseParallel``).

    Example:
        >>> jparam.distributed.RowwiseParallel().specs(nn.Linear(4, 8), jax.make_mesh((1,), ("tp",)))
        {'weight': P(None, 'tp'), 'bias': P()}
    """

    def specs(self, module: Module, mesh: Mesh) -> dict:
        a = self._mesh_axis(mesh)
        if _style_target(self, module) == "Embedding":
            return {"weight": PartitionSpec(a, None)}
        return {"weight": PartitionSpec(None, a), "bias": PartitionSpec()}


def _matches(pattern: Any, name: str) -> bool:
    if isinstance(pattern, re.Pattern):
        return pattern.fullmatch(name) is not None
    return fnmatch.fnmatchcase(name, pattern)


def _gather_plans(module: Module, plan: Optional[Mapping]) -> list:
    """``(pattern, rule, origin)`` from every submodule's ``parallelize_plan`` attribute
    (construction-time annotations, names relative to that submodule), then ``plan``."""
    rules = []
    for prefix, m in module.named_modules():
        own = m.__dict__.get("parallelize_plan", getattr(type(m), "parallelize_plan", None))
        if own is None:
            continue
        if not isinstance(own, Mapping):
            raise TypeError(f"{type(m).__name__}.parallelize_plan must be a dict of name pattern -> "
                            f"PartitionSpec, got {type(own).__name__}")
        where = f"{type(m).__name__}.parallelize_plan" + (f" (at '{prefix}')" if prefix else "")
        for pat, rule in own.items():
            if not isinstance(pat, str):
                raise TypeError(f"{where}: keys must be str patterns, got {pat!r}")
            rules.append(((prefix + "." + pat) if prefix else pat, rule, where, 0))
    if plan is not None:
        if not isinstance(plan, Mapping):
            raise TypeError(f"parallelize_plan must be a dict of name pattern -> PartitionSpec / "
                            f"ParallelStyle / callable, got {type(plan).__name__}")
        for pat, rule in plan.items():
            if not isinstance(pat, (str, re.Pattern)):
                raise TypeError(f"parallelize_plan keys must be str (fnmatch) or re.Pattern, got {pat!r}")
            rules.append((pat, rule, "parallelize_plan", 1))
    return rules


def parallelize_module(module: Module, device_mesh: Optional[Mesh] = None,
                       parallelize_plan: Optional[Mapping[Any, Rule]] = None) -> Module:
    """Tensor / sequence parallel by a plan keyed by names (torch's ``parallelize_module``),
    in place; returns ``module``.

    Keys are ``fnmatch`` patterns (or compiled ``re`` patterns, full match) over
    ``state_dict()`` names; each value is a ``PartitionSpec`` for the matching parameters and
    buffers, a callable ``(name, array) -> PartitionSpec | None``, or a ``ParallelStyle``
    (:class:`ColwiseParallel`, :class:`RowwiseParallel`) for matching *module* names.  A
    tied weight is one leaf with two names: a rule on either name applies to it (two
    different rules on it are an error).  Submodules may carry their own plan as a
    ``parallelize_plan`` attribute (names relative to them; annotations at construction);
    ``parallelize_plan`` given here overrides them.  Leaves no rule matches keep their
    current placement on this mesh, or are replicated.  Call :func:`fully_shard` afterwards
    to add FSDP on another mesh axis.

    Example:
        >>> mesh = jax.make_mesh((1,), ("tp",))
        >>> mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4))
        >>> _ = jparam.distributed.parallelize_module(mlp, mesh, {
        ...     "0": jparam.distributed.ColwiseParallel(), "2.weight": jax.sharding.PartitionSpec(None, "tp")})
        >>> mlp[0].weight.sharding.spec, mlp[2].weight.sharding.spec
        (P('tp', None), P(None, 'tp'))
    """
    _check_module(module, "parallelize_module")
    mesh = _default_mesh(device_mesh, "tp")
    rules = _gather_plans(module, parallelize_plan)
    table, _ = leaf_table(module)
    modules = dict(module.named_modules())
    leaf_names = [n for leaf in table if leaf.kind != "grad" for n in leaf.names]
    chosen: dict = {}  # id(leaf value) -> (spec, rule description, priority)

    def assign(leaf, name, spec, desc, prio):
        spec = _check_spec(name, leaf.value, spec, mesh)
        key = id(leaf.param) if leaf.param is not None else id(leaf.value)
        prev = chosen.get(key)
        if prev is not None and prev[2] == prio and prev[0] != spec:
            raise ValueError(f"conflicting sharding rules for '{name}' (one leaf named "
                             f"{' / '.join(leaf.names)}): {prev[1]} gives {prev[0]}, {desc} gives {spec}")
        if prev is None or prio >= prev[2]:
            chosen[key] = (spec, desc, prio)

    by_name = {}
    for leaf in table:
        if leaf.kind != "grad":
            for n in leaf.names:
                by_name[n] = leaf
    for pat, rule, origin, prio in rules:
        desc = f"{origin}[{pat if isinstance(pat, str) else pat.pattern!r}]"
        hit = False
        if isinstance(rule, ParallelStyle):
            for mname, m in modules.items():
                if mname and _matches(pat, mname):
                    hit = True
                    for attr, spec in rule.specs(m, mesh).items():
                        full = mname + "." + attr
                        if full in by_name:
                            assign(by_name[full], full, spec, desc, prio)
        else:
            for name, leaf in by_name.items():
                if not _matches(pat, name):
                    continue
                spec = rule(name, leaf.value) if callable(rule) and not isinstance(rule, PartitionSpec) else rule
                hit = True
                if spec is not None:
                    assign(leaf, name, spec, desc, prio)
        if not hit:
            pool = list(modules) if isinstance(rule, ParallelStyle) else leaf_names
            near = difflib.get_close_matches(pat if isinstance(pat, str) else pat.pattern, pool, n=5)
            what = "module" if isinstance(rule, ParallelStyle) else "parameter or buffer"
            raise ValueError(f"{desc} matches no {what} name of {type(module).__name__}"
                             + (f"; close names: {near}" if near else f"; names are e.g. {pool[:8]}"))

    def sharding_of(leaf):
        key = id(leaf.param) if leaf.param is not None else id(leaf.value)
        got = chosen.get(key)
        if got is not None:
            return NamedSharding(mesh, got[0])
        spec = _current_spec(leaf.value, mesh, len(leaf.value.shape))
        while spec and spec[-1] is None:
            spec.pop()
        return NamedSharding(mesh, PartitionSpec(*spec))

    return place_in_place(module, sharding_of)
