"""``init_device_mesh``: torch's ``DeviceMesh`` constructor, returning a ``jax.sharding.Mesh``."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
from jax.sharding import Mesh

__all__ = ["init_device_mesh"]

_PLATFORMS = {"cuda": "gpu", "gpu": "gpu", "cpu": "cpu", "tpu": "tpu"}


def init_device_mesh(device_type: str, mesh_shape: Sequence[int], *,
                     mesh_dim_names: Optional[Sequence[str]] = None,
                     axis_types: Optional[Sequence[jax.sharding.AxisType]] = None) -> Mesh:
    """A ``jax.sharding.Mesh`` over every ``device_type`` device of every process
    (torch's ``init_device_mesh``), laid out by ``jax.make_mesh`` for fast collectives.

    ``mesh_dim_names`` name the axes (default ``("dim_0", ...)``).  The axes are
    ``AxisType.Auto`` (XLA propagates shardings through the model, as torch users expect);
    pass ``axis_types=(jax.sharding.AxisType.Explicit, ...)`` for JAX's explicit-sharding mode.

    Example:
        >>> mesh = jparam.distributed.init_device_mesh("cpu", (1, 1), mesh_dim_names=("dp", "tp"))
        >>> dict(mesh.shape)
        {'dp': 1, 'tp': 1}
    """
    platform = _PLATFORMS.get(str(device_type).split(":")[0].lower())
    if platform is None:
        raise ValueError(f"init_device_mesh: unknown device_type {device_type!r}; expected one of "
                         f"{sorted(_PLATFORMS)}")
    try:
        devices = jax.devices(platform)
    except RuntimeError as e:
        raise RuntimeError(f"init_device_mesh: no {device_type!r} devices ({e})") from None
    shape = tuple(int(s) for s in mesh_shape)
    if math.prod(shape) != len(devices):
        raise ValueError(f"init_device_mesh: mesh_shape {shape} has {math.prod(shape)} devices but "
                         f"there are {len(devices)} {platform} devices")
    names = tuple(mesh_dim_names) if mesh_dim_names is not None else tuple(f"dim_{i}" for i in range(len(shape)))
    if len(names) != len(shape) or len(set(names)) != len(names):
        raise ValueError(f"init_device_mesh: mesh_dim_names {names} must be {len(shape)} distinct names")
    types = tuple(axis_types) if axis_types is not None else (jax.sharding.AxisType.Auto,) * len(shape)
    return jax.make_mesh(shape, names, axis_types=types, devices=devices)
