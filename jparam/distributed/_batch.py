"""``shard_batch``: split a batch over mesh axes along its first dimension (the
``DistributedSampler`` + DDP input pattern, for one process or many)."""
from __future__ import annotations

from typing import Any, Sequence, Union

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["shard_batch"]


def shard_batch(batch: Any, mesh: Mesh, axis: Union[str, Sequence[str]] = "data") -> Any:
    """Every array of ``batch`` (a pytree) sharded along dim 0 over mesh ``axis`` (a name or
    a tuple of names, e.g. ``("dp", "fsdp")``), other dims replicated.

    With several processes (``jax.distributed.initialize``), pass each process's *local*
    part of the batch (what its ``DistributedSampler`` rank would load): the result is the
    global array, dim 0 = local rows x process count.

    Example:
        >>> mesh = jax.make_mesh((1,), ("data",))
        >>> x = jparam.distributed.shard_batch(np.ones((8, 3), np.float32), mesh)
        >>> x.sharding.spec
        P('data',)
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"shard_batch: expected a jax.sharding.Mesh, got {type(mesh).__name__}")
    axes = (axis,) if isinstance(axis, str) else tuple(axis)
    for a in axes:
        if a not in mesh.axis_names:
            raise ValueError(f"shard_batch: axis {a!r} is not an axis of the mesh {tuple(mesh.axis_names)}")
    n = int(np.prod([dict(mesh.shape)[a] for a in axes]))
    sharding = NamedSharding(mesh, PartitionSpec(axes if len(axes) > 1 else axes[0]))
    procs = jax.process_count()
    leaves, treedef = jax.tree_util.tree_flatten_with_path(batch)
    out = []
    for path, x in leaves:
        shape = tuple(np.shape(x))
        where = "batch" + jax.tree_util.keystr(path)
        if not shape:
            raise ValueError(f"shard_batch: {where} is a scalar; every leaf needs a batch dimension")
        if (shape[0] * procs) % n:
            raise ValueError(f"shard_batch: {where} has {shape[0] * procs} rows (shape {shape}"
                             + (f" on each of {procs} processes" if procs > 1 else "")
                             + f"), not divisible by the {n} devices of mesh axes {axes}")
        if procs == 1:
            out.append(jax.device_put(x, sharding))
        else:
            out.append(jax.make_array_from_process_local_data(sharding, np.asarray(x)))
    return jax.tree_util.tree_unflatten(treedef, out)
