"""Sharded checkpoints of a whole training state (torch's ``torch.distributed.checkpoint``).

``save_checkpoint(directory, model=..., optimizer=..., scheduler=..., step=...)`` takes what
``jparam.save_checkpoint`` takes.  Every array is written by the devices that hold its shards
(orbax); everything else (hyperparameters, scheduler fields, ``step``, the layout of each
``state_dict``) is JSON stored *in the same orbax tree* as a byte array, so the directory is
written in one atomic orbax save, and nothing is ever unpickled.  ``load_checkpoint``
restores every array straight into the shardings of the targets it is given — which may
live on another mesh (8 devices -> 4) — then calls their ``load_state_dict``.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jparam._checkpoint import _plain_arrays
from jparam._module import Module
from jparam._random import get_rng_state, set_rng_state
from jparam._sharded import _orbax, _orbax_save, _write_beside
from jparam.distributed._placement import find_mesh

__all__ = ["save_checkpoint", "load_checkpoint"]

_META = "jparam_meta"
_RNG = "jparam_rng"
_ARRAYS = (jax.Array, np.ndarray)


def _split(value: Any, prefix: str, arrays: dict) -> Any:
    """JSON skeleton of ``value`` with each array replaced by ``{"a": its key in arrays}``."""
    if isinstance(value, _ARRAYS) or (hasattr(value, "_data") and isinstance(value._data, jax.Array)):
        arrays[prefix] = value if isinstance(value, _ARRAYS) else value._data
        return {"a": prefix}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_split(v, f"{prefix}.{i}", arrays) for i, v in enumerate(value)]
        return {"t": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {"d": [[k, _split(v, f"{prefix}.{k}", arrays)] for k, v in value.items()]}
    raise TypeError(f"jparam.distributed.save_checkpoint: {prefix} has type {type(value).__name__}; "
                    "expected arrays, numbers, strings, None, lists, tuples and dicts")


def _join(skel: Any, arrays: dict) -> Any:
    if isinstance(skel, list):
        return [_join(v, arrays) for v in skel]
    if isinstance(skel, dict):
        if "a" in skel:
            return arrays[skel["a"]]
        if "t" in skel:
            return tuple(_join(v, arrays) for v in skel["t"])
        return {(k if not isinstance(k, list) else tuple(k)): _join(v, arrays) for k, v in skel["d"]}
    return skel


def _entry_state(obj: Any) -> Any:
    if isinstance(obj, Module):
        return {"state_dict": dict(obj.state_dict()), "arrays": _plain_arrays(obj)}
    if callable(getattr(obj, "state_dict", None)):
        return obj.state_dict()
    return obj


def save_checkpoint(directory: str | os.PathLike, *, force: bool = False, **entries: Any) -> None:
    """Save a training state — modules, optimizers, schedulers, plain values — as one sharded
    orbax checkpoint, with the global generator (``jparam.get_rng_state``) and each module's
    plain arrays (dropout keys).  Written atomically, as :func:`jparam.save_sharded`: the
    new checkpoint is written beside ``directory`` and swapped in by renaming, so with
    ``force=True`` a crash mid-save leaves the previous checkpoint loadable (the next save
    to ``directory`` removes what the crash left).

    Example:
        >>> import tempfile, os
        >>> d = os.path.join(tempfile.mkdtemp(), "step_10")
        >>> model = nn.Linear(4, 2); opt = optim.SGD(model.parameters(), lr=0.1)
        >>> jparam.distributed.save_checkpoint(d, model=model, optimizer=opt, step=10)
        >>> jparam.distributed.load_checkpoint(d, model=model, optimizer=opt)["step"]
        10
    """
    ocp = _orbax()
    arrays: dict = {}
    skeleton = {name: _split(_entry_state(obj), name, arrays) for name, obj in entries.items()}
    tree = dict(arrays)
    tree[_RNG] = get_rng_state()
    tree[_META] = np.frombuffer(json.dumps({"version": 1, "entries": skeleton}).encode(), np.uint8)
    ck = ocp.StandardCheckpointer()
    try:
        _write_beside(directory, lambda path: _orbax_save(ck, path, tree), force)
    finally:
        ck.close()


def _where_module(name: str, obj: Module, keys: list, rep) -> dict:
    """A module entry's arrays go where the module's own arrays are now."""
    current = {f"{name}.state_dict.{k}": v for k, v in obj.state_dict().items()}
    current.update({f"{name}.arrays.{k}": v for k, v in _plain_arrays(obj).items()})
    out = {}
    for key in keys:
        sh = getattr(current.get(key), "sharding", None)
        out[key] = sh if isinstance(sh, NamedSharding) else rep
    return out


def _where_optimizer(name: str, keys: list, shapes: dict, params: list, rep) -> dict:
    """An optimizer's per-parameter state (``{name}.state.{i}.{field}``) goes next to the
    model's ``i``-th parameter when it has that parameter's shape; the rest is replicated."""
    out = {}
    for key in keys:
        parts = key[len(name) + 1:].split(".")
        sh = rep
        if len(parts) >= 3 and parts[0] == "state" and parts[1].isdigit():
            i = int(parts[1])
            if i < len(params) and shapes[key] == params[i][1]:
                sh = params[i][0]
        out[key] = sh
    return out


def _keys(skel: Any) -> list:
    out: list = []

    def walk(s):
        if isinstance(s, list):
            for v in s:
                walk(v)
        elif isinstance(s, dict):
            if "a" in s:
                out.append(s["a"])
            elif "t" in s:
                walk(s["t"])
            else:
                for _, v in s["d"]:
                    walk(v)

    walk(skel)
    return out


def _restore(directory: str, item: dict) -> dict:
    ocp = _orbax()
    reader = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())
    try:
        return reader.restore(directory, args=ocp.args.PyTreeRestore(
            item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item), partial_restore=True))
    finally:
        reader.close()


def load_checkpoint(directory: str | os.PathLike, *, restore_rng: bool = True, strict: bool = True,
                    **targets: Any) -> dict:
    """Load a :func:`save_checkpoint` directory into ``targets`` and return every entry.

    Each array is restored straight into its target's sharding: a module's parameters,
    buffers and plain arrays where the module's arrays are now (another mesh than the one
    that saved them is fine), an optimizer's per-parameter state next to its parameter (the
    optimizer's ``i``-th parameter is the module target's ``i``-th), anything else
    replicated on the targets' mesh.  Then ``load_state_dict`` is called on each target and
    the global generator is restored (unless ``restore_rng=False``).

    Example:
        >>> import tempfile, os
        >>> d = os.path.join(tempfile.mkdtemp(), "step_1")
        >>> jparam.distributed.save_checkpoint(d, step=1)
        >>> jparam.distributed.load_checkpoint(d)["step"]
        1
    """
    ocp = _orbax()
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: no sharded checkpoint there (not a directory)")
    ck = ocp.StandardCheckpointer()
    try:
        saved = dict(ck.metadata(directory).item_metadata.tree)
    except Exception as e:  # noqa: BLE001 - orbax raises many kinds
        raise ValueError(f"{directory}: not a readable orbax checkpoint ({e})") from None
    finally:
        ck.close()
    if _META not in saved or _RNG not in saved:
        raise ValueError(f"{directory}: not a jparam.distributed.save_checkpoint directory "
                         "(one written by jparam.save_sharded loads with jparam.load_sharded)")
    dev0 = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    head = _restore(directory, {k: jax.ShapeDtypeStruct(tuple(saved[k].shape), saved[k].dtype, sharding=dev0)
                                for k in (_META, _RNG)})
    meta = json.loads(np.asarray(head[_META]).tobytes().decode())
    entries = meta["entries"]
    missing = [k for k in targets if k not in entries]
    if missing:
        raise KeyError(f"{directory}: no entry {missing[0]!r} in the checkpoint (entries: {list(entries)})")
    modules = [v for v in targets.values() if isinstance(v, Module)]
    mesh = find_mesh(jax.tree_util.tree_leaves(modules))
    rep = NamedSharding(mesh, PartitionSpec()) if mesh is not None else dev0
    model = modules[0] if len(modules) == 1 else None
    params = [] if model is None else [(p._data.sharding, tuple(p.shape)) for p in model.parameters()]
    where: dict = {}
    for name, skel in entries.items():
        keys = _keys(skel)
        obj = targets.get(name)
        if isinstance(obj, Module):
            where.update(_where_module(name, obj, keys, rep))
        else:
            shapes = {k: tuple(saved[k].shape) for k in keys}
            where.update(_where_optimizer(name, keys, shapes, params, rep))
    item = {key: jax.ShapeDtypeStruct(tuple(saved[key].shape), saved[key].dtype, sharding=sh)
            for key, sh in where.items()}
    arrays = _restore(directory, item) if item else {}
    out = {}
    for name, skel in entries.items():  # check every target can take its entry before loading any
        obj = targets.get(name)
        if obj is not None and not callable(getattr(obj, "load_state_dict", None)):
            raise TypeError(f"load_checkpoint: {name}={type(obj).__name__} has no load_state_dict()")
    for name, skel in entries.items():
        value = _join(skel, arrays)
        obj = targets.get(name)
        if isinstance(obj, Module):
            obj.load_state_dict(value["state_dict"], strict=strict)
            current = _plain_arrays(obj)
            for key, arr in value["arrays"].items():
                if key not in current or tuple(current[key].shape) != tuple(arr.shape):
                    raise ValueError(f"{directory}: {name} has no array attribute {key!r} of shape "
                                     f"{tuple(arr.shape)} (a different architecture?)")
                modpath, _, attr = key.rpartition(".")
                setattr(obj.get_submodule(modpath), attr, arr)
            value = value["state_dict"]
        elif obj is not None:
            obj.load_state_dict(value)
        out[name] = value
    if restore_rng:
        set_rng_state(np.asarray(head[_RNG]))
    return out
