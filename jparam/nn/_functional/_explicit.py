"""Layers under JAX's explicit-sharding mode (meshes with ``AxisType.Explicit`` axes).

There every array's type carries its sharding and an op whose output sharding JAX cannot
infer raises ``ShardingTypeError``.  The functional ops call these helpers only when an
operand lives on such a mesh (checked at trace time), so auto-mode programs are traced
exactly as before.  The rules are FSDP's and Megatron's: activations keep their batch
sharding; a parameter is gathered along any mesh axis the activation already uses (FSDP);
a weight sharded on a free axis keeps it (column parallel: the output features stay
sharded; row parallel: the contraction is sharded like the input, then summed).
"""
from __future__ import annotations

import jax
from jax.sharding import NamedSharding, PartitionSpec

__all__ = ["explicit_mesh", "spec", "reshard_to", "linear", "like_trailing"]


def _mesh(x):
    return getattr(getattr(jax.typeof(x), "sharding", None), "mesh", None)


def explicit_mesh(*arrays):
    """The explicit mesh one of ``arrays`` is typed with, else ``None`` (auto mode)."""
    for a in arrays:
        if a is None:
            continue
        mesh = _mesh(a)
        if mesh is not None and getattr(mesh, "_any_axis_explicit", False):
            return mesh
    return None


def spec(x) -> tuple:
    """``x``'s partition spec, one entry per dimension (``None`` = whole)."""
    s = tuple(getattr(jax.typeof(x).sharding, "spec", ()))
    return s + (None,) * (x.ndim - len(s))


def _axes(entry) -> set:
    if entry is None:
        return set()
    return set(entry) if isinstance(entry, tuple) else {entry}


def reshard_to(x, entries: tuple, mesh):
    """``x`` resharded to ``entries`` (a no-op when it already is)."""
    if spec(x) == tuple(entries):
        return x
    return jax.sharding.reshard(x, NamedSharding(mesh, PartitionSpec(*entries)))


def like_trailing(v, x, mesh):
    """A per-feature vector ``v`` (LayerNorm's weight, a bias) sharded like ``x``'s last
    dimension, so ``x * v`` / ``x + v`` are well typed (an FSDP-sharded vector is gathered)."""
    if v is None or v.ndim == 0:
        return v
    return reshard_to(v, (None,) * (v.ndim - 1) + (spec(x)[-1],), mesh)


def linear(x, w, mesh):
    """``x @ w.T`` for a torch-layout weight ``(out, in)``, typed for explicit sharding."""
    xs = spec(x)
    used = set().union(*(_axes(e) for e in xs))
    out = spec(w)[0]
    if _axes(out) & used:
        out = None              # FSDP / conflicting: gather the output features
    w = reshard_to(w, (out, xs[-1]), mesh)
    return jax.numpy.einsum("...i,oi->...o", x, w,
                            out_sharding=NamedSharding(mesh, PartitionSpec(*xs[:-1], out)))
