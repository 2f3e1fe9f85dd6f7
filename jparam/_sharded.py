"""``jparam.save_sharded`` / ``jparam.load_sharded``: sharded checkpoints through orbax.

Each array is written by the devices (and processes) that hold its shards, and restored
straight into the shardings of the model it is loaded into: no array is ever gathered on
one host.  Needs ``pip install jparam[sharded]`` (orbax-checkpoint), imported lazily.
"""
from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Mapping
from typing import Any, Callable

import jax
import numpy as np

from ._convert import is_array, to_numpy

__all__ = ["save_sharded", "load_sharded"]


def _orbax():
    try:
        import orbax.checkpoint as ocp
    except ImportError as e:
        raise ImportError("sharded checkpoints need orbax-checkpoint: "
                          "pip install jparam[sharded]") from e
    return ocp


def _state(obj: Any, fname: str) -> dict[str, Any]:
    if not isinstance(obj, Mapping) and callable(getattr(obj, "state_dict", None)):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"{fname} expects a module or a dict of arrays, got {type(obj).__name__}")
    for k, v in obj.items():
        if not isinstance(k, str):
            raise TypeError(f"{fname}: key {k!r} has type {type(k).__name__}; keys must be str")
        if not (is_array(v) or isinstance(v, jax.ShapeDtypeStruct)):
            raise TypeError(f"{fname}: entry {k!r} has type {type(v).__name__}; expected an array")
    return dict(obj)


def save_sharded(obj: Any, directory: str | os.PathLike, *, force: bool = False) -> None:
    """Save a module's ``state_dict()`` (or a dict of arrays) as a sharded orbax checkpoint.

    ``directory`` is created (it must not exist unless ``force=True``, which replaces it).
    The new checkpoint is written completely to ``<directory>.jparam-new`` first, then
    renamed into place: if the write fails (disk full, a crash) the previous checkpoint is
    untouched.  Between the two renames of the swap the previous one is parked at
    ``<directory>.jparam-old``; the next ``save_sharded`` to ``directory`` puts it back if
    the swap was interrupted.  Each array keeps its key; its shards are written in parallel
    by their devices.

    Example:
        >>> from jax.sharding import NamedSharding, PartitionSpec as P
        >>> mesh = jax.make_mesh((1,), ("data",))
        >>> model.to(NamedSharding(mesh, P()))          # or shard each parameter
        Linear(in_features=4, out_features=2, bias=True)
        >>> jparam.save_sharded(model, "ckpt/step_100")
    """
    ocp = _orbax()
    state = {}
    for k, v in _state(obj, "jparam.save_sharded").items():
        state[k] = v if isinstance(v, (jax.Array, np.ndarray)) else to_numpy(v, k)
    ck = ocp.StandardCheckpointer()
    try:
        _write_beside(directory, lambda path: _orbax_save(ck, path, state), force)
    finally:
        ck.close()


def _orbax_save(ck: Any, path: str, tree: Any) -> None:
    ck.save(path, tree)
    ck.wait_until_finished()


def _write_beside(directory: str | os.PathLike, write: Callable[[str], None], force: bool) -> None:
    """Run ``write(path)`` to create a checkpoint directory at ``path``, atomically at ``directory``.

    ``write`` fills ``<directory>.jparam-new`` completely before anything existing is
    touched; then the new directory is swapped in by two renames (the previous one is
    parked at ``<directory>.jparam-old`` between them).  A crash at any point leaves a
    loadable checkpoint at ``directory`` or at the parking place, which the next call puts
    back; a partly written ``.jparam-new`` is removed.  Multi-host: every process calls
    ``write``, process 0 renames, all wait for each other between the phases."""
    directory = os.path.abspath(os.fspath(directory)).rstrip(os.sep)
    new, old = directory + _NEW_SUFFIX, directory + _OLD_SUFFIX
    primary = jax.process_index() == 0
    if primary:
        _recover(directory)
    _sync("jparam_save_sharded_start")
    if os.path.exists(directory) and not force:
        raise FileExistsError(f"{directory} already exists; pass force=True to replace it")
    try:
        write(new)  # complete before anything existing is touched
    except BaseException:
        if primary:
            _remove_new(directory)
        raise
    _sync("jparam_save_sharded_written")
    if primary:
        if os.path.exists(directory):
            os.replace(directory, old)  # from here to the next line, the old one is at `old`
        os.replace(new, directory)
        shutil.rmtree(old, ignore_errors=True)
    _sync("jparam_save_sharded_done")


# save_sharded writes the new checkpoint beside the target and swaps it in by renaming
_NEW_SUFFIX = ".jparam-new"
_OLD_SUFFIX = ".jparam-old"


def _remove_new(directory: str) -> None:
    """Remove a partly written ``<directory>.jparam-new`` (and orbax's temporary folders)."""
    for p in glob.glob(glob.escape(directory + _NEW_SUFFIX) + "*"):
        shutil.rmtree(p, ignore_errors=True)


def _recover(directory: str) -> None:
    """Undo what a killed :func:`save_sharded` left: a previous checkpoint parked at
    ``<directory>.jparam-old`` goes back unless the new one was already in place."""
    old = directory + _OLD_SUFFIX
    if os.path.isdir(old):
        if os.path.exists(directory):
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, directory)
    _remove_new(directory)


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def load_sharded(model_like: Any, directory: str | os.PathLike, *, strict: bool = True) -> Any:
    """Restore a :func:`save_sharded` checkpoint into the shardings of ``model_like``.

    ``model_like`` is a module, whose current arrays give every key's shape, dtype and
    sharding (the checkpoint is loaded into it with ``load_state_dict`` and the module is
    returned), or a dict of arrays / ``jax.ShapeDtypeStruct``s with shardings (a dict of
    restored arrays is returned).  The restored arrays take the *target's* shardings, which
    may differ from the ones used when saving (resharding on load).

    Example:
        >>> from jax.sharding import NamedSharding, PartitionSpec as P
        >>> jparam.save_sharded(model, "ckpt/step_100")
        >>> restored = nn.Linear(4, 2)
        >>> restored.to(NamedSharding(jax.make_mesh((1,), ("data",)), P()))
        Linear(in_features=4, out_features=2, bias=True)
        >>> jparam.load_sharded(restored, "ckpt/step_100") is restored
        True
        >>> np.array_equal(restored.weight, model.weight)
        True
    """
    ocp = _orbax()
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: no sharded checkpoint there (not a directory)")
    target_obj = _state(model_like, "jparam.load_sharded")
    ck = ocp.StandardCheckpointer()
    try:
        try:
            saved = dict(ck.metadata(directory).item_metadata.tree)
        except Exception as e:  # noqa: BLE001 - orbax raises many kinds
            raise ValueError(f"{directory}: not a readable orbax checkpoint ({e})") from None
        missing = [k for k in target_obj if k not in saved]
        unexpected = [k for k in saved if k not in target_obj]
        errors = []
        if strict and missing:
            errors.append("Missing key(s) in checkpoint: " + ", ".join(f'"{k}"' for k in missing))
        if strict and unexpected:
            errors.append("Unexpected key(s) in checkpoint: " + ", ".join(f'"{k}"' for k in unexpected))
        for k, v in target_obj.items():
            if k in saved and tuple(saved[k].shape) != tuple(v.shape):
                errors.append(f"size mismatch for {k}: the checkpoint has shape "
                              f"{tuple(saved[k].shape)}, the target {tuple(v.shape)}")
        if errors:
            raise RuntimeError(f"Error(s) in loading sharded checkpoint {directory}:\n\t"
                               + "\n\t".join(errors))
        target = {}
        for k, v in target_obj.items():
            if k not in saved:
                continue
            sharding = getattr(v, "sharding", None)
            if isinstance(v, np.ndarray) or sharding is None:
                sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
            target[k] = jax.ShapeDtypeStruct(tuple(v.shape), v.dtype, sharding=sharding)
    finally:
        ck.close()
    # (StandardCheckpointer.restore's `strict=False` pads/truncates arrays: never use it)
    reader = ocp.Checkpointer(ocp.PyTreeCheckpointHandler())
    try:
        restored = reader.restore(directory, args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=bool(unexpected)))
    finally:
        reader.close()
    restored = {k: restored[k] for k in target}
    if isinstance(model_like, Mapping) or not callable(getattr(model_like, "load_state_dict", None)):
        return restored
    model_like.load_state_dict(restored, strict=strict)
    return model_like
