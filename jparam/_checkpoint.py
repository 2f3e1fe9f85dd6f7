"""``jparam.load`` / ``jparam.save``: safetensors out, safetensors and PyTorch files in.

* ``save`` always writes one safetensors file, atomically (temp file in the same folder,
  flush + fsync, ``os.replace``).  A flat ``{str: array}`` mapping becomes a plain
  safetensors file that ``safetensors.torch.load_file`` reads as a torch state dict; any
  other structure (a training checkpoint with a model, an optimizer, a step count ...)
  stores its arrays under dotted keys and the rest as JSON in the safetensors metadata.
  Nothing is ever pickled.
* ``load`` reads safetensors files and PyTorch ``.pt/.pth/.bin`` files (through
  ``torch.load(weights_only=True)``: never arbitrary unpickling) and returns the same
  structure the file holds, with tensors as ``jax.Array``.

See ``docs/checkpoints.md``.
"""
from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _safetensors as stf
from ._convert import (NUMPY_TO_SAFETENSORS, is_array, numpy_to_jax, to_numpy,
                       torch_to_numpy)
from ._serialize import decode_tree, encode_tree

__all__ = ["load", "save", "load_metadata", "save_checkpoint", "load_checkpoint"]

_TREE_KEY = "jparam.tree"
_VERSION_KEY = "jparam.version"
_FORMAT_VERSION = "1"
_RESERVED_PREFIX = "jparam."


# ----------------------------------------------------------------------------- imports

def _torch(path: str):
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"{path} is a PyTorch checkpoint; reading it needs torch: "
                          "pip install jparam[torch]") from e
    return torch


# ----------------------------------------------------------------------------- sniffing

def _sniff(path: str) -> str:
    """'safetensors' or 'torch', from the file's first bytes (the extension is not trusted).

    Safetensors: a length prefix then ``{`` (byte 8); torch: the zip signature or a pickle
    protocol 2..5 header.  A pickle or zip file never has ``{`` at byte 8, so the two cannot
    be confused whatever the safetensors header length (its first byte may be ``0x80``).
    """
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not a checkpoint file "
                                "(for sharded checkpoints use jparam.load_sharded)")
    size = os.path.getsize(path)  # FileNotFoundError names the path
    if size == 0:
        raise ValueError(f"{path}: the file is empty, not a checkpoint")
    with open(path, "rb") as f:
        head = f.read(16)
    if head[8:9] == b"{":
        return "safetensors"  # read_header reports a length that does not fit the file
    if head.startswith(b"PK\x03\x04"):
        return "torch"  # torch.save zip format
    if head[:1] == b"\x80" and len(head) > 1 and head[1] in range(2, 6):
        return "torch"  # legacy torch.save (pickle protocol 2..5 header)
    raise ValueError(f"{path}: not a checkpoint (neither a safetensors file nor a PyTorch "
                     f"torch.save file; it starts with bytes {head[:8]!r})")


# ----------------------------------------------------------------------------- safetensors

def _load_safetensors(path: str, as_numpy: bool) -> tuple[dict[str, Any], dict[str, str]]:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        start, entries, meta = stf.read_header(f, size, path)
        arrays = stf.read_arrays(f, start, entries, path)
    out = {k: a if as_numpy else numpy_to_jax(a) for k, a in arrays.items()}
    return out, meta


# ----------------------------------------------------------------------------- torch files

def _from_torch_obj(x: Any, path: tuple, as_numpy: bool, torch, where: str) -> Any:
    if isinstance(x, torch.Tensor):
        key = ".".join(str(p) for p in path) or "<root>"
        try:
            arr = torch_to_numpy(x, f"{where}: tensor {key!r}")
        except TypeError as e:
            raise ValueError(str(e)) from None
        return arr if as_numpy else numpy_to_jax(arr)
    if isinstance(x, Mapping):
        return {k: _from_torch_obj(v, path + (k,), as_numpy, torch, where) for k, v in x.items()}
    if isinstance(x, torch.Size):
        return tuple(x)
    if isinstance(x, tuple):
        return tuple(_from_torch_obj(v, path + (i,), as_numpy, torch, where)
                     for i, v in enumerate(x))
    if isinstance(x, list):
        return [_from_torch_obj(v, path + (i,), as_numpy, torch, where) for i, v in enumerate(x)]
    if isinstance(x, (torch.dtype, torch.device)):
        return str(x)
    return x  # None, bool, int, float, str, complex (all weights_only can produce)


def _check_torch_zip(path: str) -> None:
    """A readable zip without ``data.pkl`` is some other archive (.npz, .zip), not torch.save's."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except Exception:  # noqa: BLE001 - truncated or corrupt: torch.load reports it
        return
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        raise ValueError(f"{path}: a zip archive but not a PyTorch checkpoint (no data.pkl; "
                         f"holds {names[:3]}{' ...' if len(names) > 3 else ''})")


_GLOBAL = re.compile(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)")


def _load_torch(path: str, as_numpy: bool) -> Any:
    with open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04":
            _check_torch_zip(path)
    torch = _torch(path)
    import pickle
    import warnings

    try:
        # an open file, not the path: torch.load hands paths ending in .safetensors to
        # safetensors.torch, and the file type was already decided from its bytes
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about odd storages in corrupt files
            obj = torch.load(f, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        msg = str(e)
        m = _GLOBAL.search(msg)
        if m or "weights_only" in msg.lower():
            what = f"the global {m.group(1)!r}" if m else "a Python object"
            raise ValueError(
                f"{path}: the file refers to {what}, which is not a tensor or a plain "
                "container; jparam.load never unpickles arbitrary objects (it uses "
                "torch.load(weights_only=True)), so the file was not read. If you trust it, "
                "extract the tensors yourself, e.g. torch.load(path, weights_only=False)"
                ".state_dict(), and save them with jparam.save") from None
        first = msg.splitlines()[0] if msg else type(e).__name__
        raise ValueError(f"{path}: truncated or corrupt PyTorch checkpoint ({first})") from None
    except (MemoryError, RecursionError, Exception) as e:  # noqa: BLE001
        # a damaged zip or pickle makes torch.load raise anything (RuntimeError, EOFError,
        # KeyError, IndexError, struct.error, UnicodeDecodeError, ...): all mean a bad file
        first = str(e).splitlines()[0][:300] if str(e) else ""
        raise ValueError(f"{path}: truncated or corrupt PyTorch checkpoint "
                         f"({type(e).__name__}: {first})") from None
    return _from_torch_obj(obj, (), as_numpy, torch, path)


# ----------------------------------------------------------------------------- public

def load(path: str | os.PathLike, *, as_numpy: bool = False) -> Any:
    """Load a checkpoint: a ``.safetensors`` file or a PyTorch ``.pt/.pth/.bin`` file.

    Returns the structure the file holds, like ``torch.load``: a state-dict file gives a
    flat ``dict[str, jax.Array]`` (ready for ``model.load_state_dict``); a training
    checkpoint (``{"model": ..., "optimizer": ..., "step": 10}``, written by
    :func:`jparam.save` or by ``torch.save``) gives the same nested dict, with every tensor
    as a ``jax.Array`` and plain values (ints, floats, strings, lists, tuples) unchanged.

    Dtypes are preserved bit for bit (float16/32/64, bfloat16, float8, int8..int64, uint8..
    uint64, bool, complex64).  JAX holds 64-bit arrays only with ``jax_enable_x64``: without
    it, int64/uint64/float64 tensors are returned as ``numpy.ndarray`` (exact) instead of
    being truncated.  ``as_numpy=True`` returns every tensor as a ``numpy.ndarray``.

    PyTorch files are read with ``torch.load(weights_only=True, map_location="cpu")``:
    a file that pickles anything but tensors and plain containers is refused.  The file
    type is recognised from its first bytes, not from its extension.

    Example:
        >>> jparam.save(model, "model.safetensors")
        >>> sd = jparam.load("model.safetensors")      # or "pytorch_model.bin"
        >>> list(sd)
        ['weight', 'bias']
        >>> model.load_state_dict(sd)
        <All keys matched successfully>
        >>> jparam.save({"model": model, "optimizer": opt, "step": 10}, "ckpt.safetensors")
        >>> ckpt = jparam.load("ckpt.safetensors")     # a training checkpoint
        >>> model.load_state_dict(ckpt["model"]); opt.load_state_dict(ckpt["optimizer"])
        <All keys matched successfully>
        >>> ckpt["step"]
        10
    """
    path = os.fspath(path)
    kind = _sniff(path)
    if kind == "torch":
        return _load_torch(path, as_numpy)
    arrays, meta = _load_safetensors(path, as_numpy)
    if _TREE_KEY not in meta:
        return arrays
    try:
        skeleton = json.loads(meta[_TREE_KEY])
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: corrupt jparam checkpoint structure ({type(e).__name__}: "
                         f"{str(e)[:200]})") from None
    return decode_tree(skeleton, arrays, path)


def load_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata`` given to :func:`save` (the safetensors header's ``__metadata__``,
    without jparam's own ``jparam.*`` entries).  Reads only the header.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "m.safetensors")
        >>> jparam.save(jparam.nn.Linear(3, 2), path, metadata={"arch": "mlp"})
        >>> jparam.load_metadata(path)
        {'arch': 'mlp'}
    """
    path = os.fspath(path)
    if _sniff(path) != "safetensors":
        raise ValueError(f"{path} is a PyTorch file; only safetensors files carry metadata")
    with open(path, "rb") as f:
        _, _, meta = stf.read_header(f, os.path.getsize(path), path)
    return {k: v for k, v in meta.items() if not k.startswith(_RESERVED_PREFIX)}


def _check_metadata(metadata: Mapping | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict of str to str, got {type(metadata).__name__}")
    out = {}
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"metadata entry {k!r}: keys and values must be str, got "
                            f"{type(k).__name__} -> {type(v).__name__} (safetensors metadata "
                            "is text only; json.dumps richer values, or put them in the saved "
                            "dict itself)")
        if k.startswith(_RESERVED_PREFIX):
            raise ValueError(f"metadata key {k!r}: the prefix 'jparam.' is reserved")
        out[k] = v
    return out


# torch's integer buffers: int64 in torch, int32 in jparam without jax_enable_x64
_TORCH_INT64_BUFFERS = ("num_batches_tracked",)


def _file_array(x: Any, key: str) -> np.ndarray:
    """``x`` as the NumPy array written under ``key``: exact bits, a dtype safetensors stores,
    and torch's dtype for torch's int64 buffers (``num_batches_tracked``), which JAX holds as
    int32 without ``jax_enable_x64``."""
    arr = to_numpy(x, f"checkpoint entry {key!r}")
    if arr.dtype.name not in NUMPY_TO_SAFETENSORS:
        raise TypeError(f"checkpoint entry {key!r}: dtype {arr.dtype} cannot be stored in "
                        f"safetensors (supported: {', '.join(sorted(NUMPY_TO_SAFETENSORS))})")
    if arr.dtype == np.int32 and key.rpartition(".")[2] in _TORCH_INT64_BUFFERS:
        arr = arr.astype(np.int64)
    if arr.dtype.name == "float4_e2m1fn" and arr.size % 2:
        raise TypeError(f"checkpoint entry {key!r}: a float4_e2m1fn array is stored two values "
                        f"a byte and needs an even number of elements, got shape {arr.shape}")
    return arr


def _prepare(obj: Any) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Arrays to write and jparam's metadata entries for ``obj``."""
    if not isinstance(obj, Mapping) and callable(getattr(obj, "state_dict", None)):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"jparam.save expects a mapping (a state dict or a dict of "
                        f"checkpoint entries) or a module/optimizer, got {type(obj).__name__}")
    for k in obj:
        if not isinstance(k, str):
            raise TypeError(f"jparam.save: key {k!r} has type {type(k).__name__}; "
                            "top-level keys must be str")
    if all(is_array(v) for v in obj.values()):
        arrays, meta = dict(obj), {}  # a plain state dict: a standard file, keys as they are
    else:
        arrays, skeleton = encode_tree(obj)
        meta = {_TREE_KEY: json.dumps(skeleton, allow_nan=False, separators=(",", ":")),
                _VERSION_KEY: _FORMAT_VERSION}
    if "__metadata__" in arrays:
        raise ValueError("jparam.save: the key '__metadata__' is reserved by the safetensors "
                         "format (it holds the file's metadata); rename the entry")
    return {k: _file_array(v, k) for k, v in arrays.items()}, meta


def _fsync_path(path: str, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:
            return  # some platforms cannot open directories
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def save(obj: Any, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Save arrays, a module, or a training checkpoint to one safetensors file, atomically.

    * ``obj`` a flat ``{str: array}`` mapping (jax, numpy or torch arrays), or a module /
      optimizer (anything with ``state_dict()``): a standard safetensors file with exactly
      those keys, readable by ``safetensors.torch.load_file`` and any safetensors tool.
    * ``obj`` a dict mixing arrays, modules, optimizers, schedulers, RNG states, ints,
      floats, strings, lists, tuples and nested dicts (a training checkpoint): the arrays
      are stored under dotted keys (``model.fc1.weight``, ``optimizer.state.0.exp_avg``),
      everything else as JSON in the safetensors metadata.  :func:`load` returns the same
      structure.  Nothing is pickled.

    Tied weights (one array under two keys, as in a state dict) are written as two copies:
    safetensors refuses shared storage, and :func:`load` followed by ``load_state_dict``
    ties them again.  ``metadata`` is a ``dict[str, str]`` stored in the header
    (:func:`load_metadata` reads it back).

    The file is written to a temporary file in the same folder, flushed and fsynced, then
    renamed over ``path``: a crash or an error mid-write leaves any previous file intact.

    Example:
        >>> jparam.save(model.state_dict(), "model.safetensors")
        >>> jparam.save({"model": model, "optimizer": opt, "step": 10}, "ckpt.safetensors")
        >>> sorted(jparam.load("model.safetensors"))
        ['bias', 'weight']
        >>> sorted(jparam.load("ckpt.safetensors"))
        ['model', 'optimizer', 'step']
    """
    path = os.fspath(path)
    user_meta = _check_metadata(metadata)
    arrays, meta = _prepare(obj)
    meta.update(user_meta)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot save to {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save to {path}: it is a directory")
    _remove_stale_temps(path)
    tmp, fd = _create_locked_temp(os.path.join(folder, os.path.basename(path)))
    try:
        if os.path.exists(path):  # an overwritten file keeps its permissions
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        with os.fdopen(os.dup(fd), "wb") as f:
            stf.write(f, arrays, meta)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        os.close(fd)  # releases the lock
    _fsync_path(folder, directory=True)


_TEMP_SUFFIX = re.compile(r"\.tmp\.[0-9a-f]{12}\Z")


try:
    import fcntl
except ImportError:  # Windows: no advisory locks; stale temp files are then kept
    fcntl = None


def _lock(fd: int) -> bool:
    """Take an exclusive, non-blocking lock on ``fd``; False if another holder has one."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _create_locked_temp(base: str) -> tuple[str, int]:
    """Create ``<base>.tmp.<12 hex>`` and hold a lock on it, which tells the stale-file cleanup
    of a concurrent save (:func:`_remove_stale_temps`) that this file is in use.

    A cleanup may grab a file between its creation and its locking and delete it; then the
    lock fails or the locked file is no longer linked, and a new name is tried.
    """
    while True:
        tmp = f"{base}.tmp.{secrets.token_hex(6)}"
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        if fcntl is None:
            return tmp, fd
        if _lock(fd):
            try:
                if os.fstat(fd).st_nlink > 0 and os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                    return tmp, fd
            except FileNotFoundError:
                pass
        os.close(fd)


def _remove_stale_temps(path: str) -> None:
    """Delete ``<path>.tmp.<12 hex>`` files left by a save that was killed.

    A save in progress holds a lock on its temporary file, so a concurrent save to the same
    path is never disturbed; a file whose lock can be taken belongs to a dead process.
    """
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(base) and _TEMP_SUFFIX.fullmatch(name[len(base):])):
            continue
        full = os.path.join(folder, name)
        try:
            fd = os.open(full, os.O_RDONLY)
        except OSError:
            continue
        try:
            if fcntl is not None and _lock(fd):
                os.unlink(full)
        except OSError:
            pass
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------- training checkpoints

_RNG_ENTRY = "jparam.rng"
_ARRAYS_ENTRY = "jparam.arrays"


def _plain_arrays(module) -> dict[str, Any]:
    """``{"sub.attr": array}`` for every plain (unregistered) array attribute of ``module`` and
    its submodules, e.g. dropout's ``_rng`` key: state torch keeps in its global generator."""
    import jax

    from jparam._module import _d

    out: dict[str, Any] = {}
    for prefix, m in module.named_modules():
        d = _d(m)
        reg = d.get("_jp_reg", {})
        for name, v in d.items():
            if name in reg or name.startswith("_jp_") or not isinstance(v, (jax.Array, np.ndarray)):
                continue
            out[f"{prefix}.{name}" if prefix else name] = v
    return out


def save_checkpoint(path: str | os.PathLike, metadata: Mapping[str, str] | None = None,
                    **entries: Any) -> None:
    """Save everything needed to resume training bit for bit, in one safetensors file.

    ``entries`` are saved as by :func:`save` (modules, optimizers and schedulers through their
    ``state_dict()``; arrays; plain values).  In addition it stores the global generator
    (:func:`jparam.get_rng_state`) and, for every module entry, its plain array attributes that
    ``state_dict`` leaves out, such as dropout's key, so that :func:`load_checkpoint` continues
    with the same random numbers as an uninterrupted run.

    Example:
        >>> jparam.save_checkpoint("ckpt.safetensors", model=model, optimizer=opt, step=10)
        >>> ck = jparam.load_checkpoint("ckpt.safetensors", model=model, optimizer=opt)
        >>> ck["step"]
        10
    """
    from jparam._module import Module
    from jparam._random import get_rng_state

    tree: dict[str, Any] = dict(entries)
    arrays = {k: _plain_arrays(v) for k, v in entries.items() if isinstance(v, Module)}
    arrays = {k: v for k, v in arrays.items() if v}
    tree[_RNG_ENTRY] = get_rng_state()
    if arrays:
        tree[_ARRAYS_ENTRY] = arrays
    save(tree, path, metadata=metadata)


def load_checkpoint(path: str | os.PathLike, *, restore_rng: bool = True,
                    strict: bool = True, **targets: Any) -> dict[str, Any]:
    """Load a :func:`save_checkpoint` file into ``targets`` and return all its entries.

    For every ``name=obj`` in ``targets``, ``obj.load_state_dict(entry)`` is called (modules with
    ``strict``), and a module also gets its saved plain arrays back (dropout keys).  The global
    generator is restored unless ``restore_rng=False``.  The returned dict holds every saved
    entry (state dicts, ``step``, ...), without jparam's own ``jparam.*`` entries.

    All or nothing: every module entry (and the generator state) is checked against its target
    before anything is loaded; then the other targets (optimizers, schedulers) are loaded, and
    if one refuses, those already loaded get their previous state back; the modules are
    written last.  A failed ``load_checkpoint`` leaves every target as it was.

    Example:
        >>> jparam.save_checkpoint("ckpt.safetensors", model=model, optimizer=opt, step=10)
        >>> ck = jparam.load_checkpoint("ckpt.safetensors", model=model, optimizer=opt)
        >>> sorted(ck)
        ['model', 'optimizer', 'step']
    """
    from jparam._module import Module, _apply_load
    from jparam._random import get_rng_state, set_rng_state

    path = os.fspath(path)
    for name, obj in targets.items():
        if not callable(getattr(obj, "load_state_dict", None)):
            raise TypeError(f"load_checkpoint: {name}={type(obj).__name__} has no load_state_dict()")
    ck = load(path)
    if not isinstance(ck, dict):
        raise ValueError(f"{path}: not a training checkpoint (holds a {type(ck).__name__})")
    missing = [k for k in targets if k not in ck]
    if missing:
        have = [k for k in ck if not k.startswith(_RESERVED_PREFIX)]
        raise KeyError(f"{path}: no entry {missing[0]!r} in the checkpoint (entries: {have})")
    saved_arrays = ck.get(_ARRAYS_ENTRY, {})
    if not isinstance(saved_arrays, dict):
        raise ValueError(f"{path}: corrupt checkpoint: {_ARRAYS_ENTRY!r} is not a dict")

    # 1. validate every module entry and the generator state; nothing changes yet
    module_writes = []
    for name, obj in targets.items():
        if isinstance(obj, Module):
            try:
                writes, _, _ = obj._jp_plan_load(ck[name], strict=strict)
            except (RuntimeError, TypeError, ValueError) as e:
                raise type(e)(f"{path}: entry {name!r}: {e}") from None
            plain = _plan_plain_arrays(obj, saved_arrays.get(name, {}), f"{path}: {name}")
            module_writes.append((writes, plain))
    rng = None
    if restore_rng and _RNG_ENTRY in ck:
        rng = np.asarray(ck[_RNG_ENTRY])
        want = get_rng_state()
        if rng.shape != want.shape or rng.dtype != want.dtype:
            raise ValueError(f"{path}: entry {_RNG_ENTRY!r} is {rng.dtype}{list(rng.shape)}, "
                             f"expected {want.dtype}{list(want.shape)}")

    # 2. the other targets, each rolled back if a later one refuses
    loaded: list[tuple[Any, Any]] = []
    try:
        for name, obj in targets.items():
            if not isinstance(obj, Module):
                loaded.append((obj, _copy_containers(obj.state_dict())))
                obj.load_state_dict(ck[name])
    except BaseException as e:
        for obj, previous in reversed(loaded):
            try:
                obj.load_state_dict(previous)
            except Exception as undo:  # noqa: BLE001
                e.add_note(f"load_checkpoint could not restore {type(obj).__name__}'s "
                           f"previous state: {undo}")
        raise

    # 3. the modules (already validated: cannot fail)
    for writes, plain in module_writes:
        _apply_load(writes)
        for module, attr, value in plain:
            setattr(module, attr, value)
    if rng is not None:
        set_rng_state(rng)
    return {k: v for k, v in ck.items() if not k.startswith(_RESERVED_PREFIX)}


def _copy_containers(x: Any) -> Any:
    """A copy of the dicts/lists/tuples of a state dict, sharing its (immutable) arrays."""
    if isinstance(x, dict):
        return type(x)((k, _copy_containers(v)) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return type(x)(_copy_containers(v) for v in x)
    if isinstance(x, np.ndarray):
        return x.copy()
    return x


def _plan_plain_arrays(module, arrays: Any, where: str) -> list[tuple[Any, str, Any]]:
    """``(submodule, attribute, value)`` for each saved plain array, checked against ``module``."""
    import jax.numpy as jnp

    if not isinstance(arrays, Mapping):
        raise ValueError(f"{where}: corrupt checkpoint: its array attributes are not a dict")
    current = _plain_arrays(module)
    out = []
    for key, value in arrays.items():
        if key not in current:
            raise ValueError(f"{where}: the checkpoint has the array attribute {key!r}, which "
                             "the module lacks (a different architecture?)")
        cur = current[key]
        if (tuple(cur.shape) != tuple(np.shape(value))
                or cur.dtype != getattr(value, "dtype", None)):
            raise ValueError(f"{where}: array attribute {key!r} is "
                             f"{getattr(value, 'dtype', type(value).__name__)}"
                             f"{list(np.shape(value))} in the checkpoint but "
                             f"{cur.dtype}{list(cur.shape)} in the module")
        modpath, _, attr = key.rpartition(".")
        value = np.asarray(value) if isinstance(cur, np.ndarray) else jnp.asarray(value)
        out.append((module.get_submodule(modpath), attr, value))
    return out
