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
import secrets
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._serialize import ST_CODES, decode_tree, encode_tree, is_array, to_jax, to_numpy

__all__ = ["load", "save", "load_metadata", "save_checkpoint", "load_checkpoint"]

_TREE_KEY = "jparam.tree"
_VERSION_KEY = "jparam.version"
_FORMAT_VERSION = "1"
_RESERVED_PREFIX = "jparam."


# ----------------------------------------------------------------------------- imports

def _safetensors():
    try:
        import safetensors
    except ImportError as e:
        raise ImportError("reading and writing safetensors files needs the 'safetensors' "
                          "package: pip install jparam[checkpoint]") from e
    return safetensors


def _torch(path: str):
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"{path} is a PyTorch checkpoint; reading it needs torch: "
                          "pip install jparam[torch]") from e
    return torch


# ----------------------------------------------------------------------------- sniffing

def _sniff(path: str) -> str:
    """'safetensors' or 'torch', from the file's first bytes (the extension is not trusted)."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not a checkpoint file "
                                "(for sharded checkpoints use jparam.load_sharded)")
    size = os.path.getsize(path)  # FileNotFoundError names the path
    if size == 0:
        raise ValueError(f"{path}: the file is empty, not a checkpoint")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "torch"  # torch.save zip format
    if head[:1] == b"\x80" and len(head) > 1 and head[1] in range(2, 6):
        return "torch"  # legacy torch.save (pickle protocol 2..5 header)
    if len(head) >= 9:
        n = int.from_bytes(head[:8], "little")
        if head[8:9] == b"{" and 0 < n <= size - 8:
            return "safetensors"
        if head[8:9] == b"{":
            raise ValueError(f"{path}: truncated safetensors file: the header says it is "
                             f"{n} bytes long but the file holds only {size - 8} bytes after "
                             "the length prefix")
    raise ValueError(f"{path}: not a checkpoint (neither a safetensors file nor a PyTorch "
                     f"torch.save file; it starts with bytes {head[:8]!r})")


# ----------------------------------------------------------------------------- safetensors

def _read_header(path: str) -> dict:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: corrupt safetensors header ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupt safetensors header (not a JSON object)")
    end = 0
    for k, v in header.items():
        if k == "__metadata__":
            continue
        try:
            end = max(end, int(v["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise ValueError(f"{path}: corrupt safetensors header entry for {k!r}") from None
    have = os.path.getsize(path) - 8 - n
    if have < end:
        raise ValueError(f"{path}: truncated safetensors file: the tensors need {end} bytes "
                         f"of data but the file holds {have}")
    return header


def _load_safetensors(path: str, as_numpy: bool) -> tuple[dict[str, Any], dict[str, str]]:
    st = _safetensors()
    header = _read_header(path)
    for k, v in header.items():
        if k != "__metadata__" and v.get("dtype") not in ST_CODES:
            raise ValueError(f"{path}: tensor {k!r} has dtype {v.get('dtype')!r}, which jparam "
                             f"cannot read (supported: {', '.join(sorted(ST_CODES))})")
    out: dict[str, Any] = {}
    try:
        with st.safe_open(path, framework="np") as f:
            meta = dict(f.metadata() or {})
            for k in f.keys():
                # copy: the returned array may be a view on a memory map of the file
                out[k] = to_jax(np.array(f.get_tensor(k), copy=True), as_numpy=as_numpy)
    except st.SafetensorError as e:
        raise ValueError(f"{path}: corrupt safetensors file ({e})") from None
    return out, meta


# ----------------------------------------------------------------------------- torch files

def _from_torch_obj(x: Any, path: tuple, as_numpy: bool, torch) -> Any:
    if isinstance(x, torch.Tensor):
        key = ".".join(str(p) for p in path) or "<root>"
        return to_jax(to_numpy(x, key), as_numpy=as_numpy)
    if isinstance(x, Mapping):
        return {k: _from_torch_obj(v, path + (k,), as_numpy, torch) for k, v in x.items()}
    if isinstance(x, torch.Size):
        return tuple(x)
    if isinstance(x, tuple):
        return tuple(_from_torch_obj(v, path + (i,), as_numpy, torch) for i, v in enumerate(x))
    if isinstance(x, list):
        return [_from_torch_obj(v, path + (i,), as_numpy, torch) for i, v in enumerate(x)]
    if isinstance(x, (torch.dtype, torch.device)):
        return str(x)
    return x  # None, bool, int, float, str, complex (all weights_only can produce)


def _check_torch_zip(path: str) -> None:
    """A readable zip without ``data.pkl`` is some other archive (.npz, .zip), not torch.save's."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return  # truncated or corrupt: torch.load reports it
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        raise ValueError(f"{path}: a zip archive but not a PyTorch checkpoint (no data.pkl; "
                         f"holds {names[:3]}{' ...' if len(names) > 3 else ''})")


def _load_torch(path: str, as_numpy: bool) -> Any:
    with open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04":
            _check_torch_zip(path)
    torch = _torch(path)
    import pickle

    try:
        # an open file, not the path: torch.load hands paths ending in .safetensors to
        # safetensors.torch, and the file type was already decided from its bytes
        with open(path, "rb") as f:
            obj = torch.load(f, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Unsupported global" in msg or "weights_only" in msg.lower():
            detail = next((line.strip() for line in msg.splitlines()
                           if "Unsupported global" in line), msg.splitlines()[0])
            raise ValueError(
                f"{path}: the file holds Python objects other than tensors and plain "
                f"containers ({detail}). jparam.load never unpickles arbitrary objects "
                "(it uses torch.load(weights_only=True)). If you trust the file, extract the "
                "tensors yourself, e.g. torch.load(path, weights_only=False).state_dict(), "
                "and save them with jparam.save") from None
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({msg.splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path}: truncated or corrupt PyTorch checkpoint ({first})") from None
    return _from_torch_obj(obj, (), as_numpy, torch)


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
        ['bias', 'weight']
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
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt jparam checkpoint structure ({e})") from None
    return decode_tree(skeleton, arrays, path)


def load_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata`` given to :func:`save` (the safetensors header's ``__metadata__``,
    without jparam's own ``jparam.*`` entries).  Reads only the header.

    Example:
        >>> jparam.save(model, "m.safetensors", metadata={"arch": "mlp"})
        >>> jparam.load_metadata("m.safetensors")
        {'arch': 'mlp'}
    """
    path = os.fspath(path)
    if _sniff(path) != "safetensors":
        raise ValueError(f"{path} is a PyTorch file; only safetensors files carry metadata")
    meta = _read_header(path).get("__metadata__") or {}
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
        # a plain state dict: a standard safetensors file, keys as they are
        return {k: to_numpy(v, k) for k, v in obj.items()}, {}
    arrays, skeleton = encode_tree(obj)
    meta = {_TREE_KEY: json.dumps(skeleton, allow_nan=False, separators=(",", ":")),
            _VERSION_KEY: _FORMAT_VERSION}
    return {k: to_numpy(v, k) for k, v in arrays.items()}, meta


def _write_safetensors(arrays: dict[str, np.ndarray], path: str, metadata: dict[str, str]) -> None:
    """Write ``arrays`` to ``path`` (no atomicity here; :func:`save` handles it)."""
    st = _safetensors()
    specs = {k: st.TensorSpec(dtype=a.dtype.name, shape=list(a.shape),
                              data_ptr=a.ctypes.data, data_len=a.nbytes)
             for k, a in arrays.items()}
    # `arrays` keeps every buffer alive while safetensors reads the raw pointers
    st.serialize_file(specs, path, metadata=metadata or None)


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
    tmp = os.path.join(folder, f"{os.path.basename(path)}.tmp.{secrets.token_hex(6)}")
    # create it ourselves to learn the umask-based permissions a new file gets (the
    # writer may recreate it 0600); an existing target keeps its own permissions
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        mode = os.stat(path if os.path.exists(path) else tmp).st_mode & 0o7777
        _write_safetensors(arrays, tmp, meta)
        os.chmod(tmp, mode)
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_path(folder, directory=True)


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

    Example:
        >>> jparam.save_checkpoint("ckpt.safetensors", model=model, optimizer=opt, step=10)
        >>> ck = jparam.load_checkpoint("ckpt.safetensors", model=model, optimizer=opt)
        >>> sorted(ck)
        ['model', 'optimizer', 'step']
    """
    from jparam._module import Module
    from jparam._random import set_rng_state

    path = os.fspath(path)
    ck = load(path)
    if not isinstance(ck, dict):
        raise ValueError(f"{path}: not a training checkpoint (holds a {type(ck).__name__})")
    missing = [k for k in targets if k not in ck]
    if missing:
        have = [k for k in ck if not k.startswith(_RESERVED_PREFIX)]
        raise KeyError(f"{path}: no entry {missing[0]!r} in the checkpoint (entries: {have})")
    saved_arrays = ck.get(_ARRAYS_ENTRY, {})
    for name, obj in targets.items():
        if not callable(getattr(obj, "load_state_dict", None)):
            raise TypeError(f"load_checkpoint: {name}={type(obj).__name__} has no load_state_dict()")
        if isinstance(obj, Module):
            obj.load_state_dict(ck[name], strict=strict)
            _restore_plain_arrays(obj, saved_arrays.get(name, {}), f"{path}: {name}")
        else:
            obj.load_state_dict(ck[name])
    if restore_rng and _RNG_ENTRY in ck:
        set_rng_state(np.asarray(ck[_RNG_ENTRY]))
    return {k: v for k, v in ck.items() if not k.startswith(_RESERVED_PREFIX)}


def _restore_plain_arrays(module, arrays: Mapping[str, Any], where: str) -> None:
    import jax.numpy as jnp

    current = _plain_arrays(module)
    for key, value in arrays.items():
        if key not in current:
            raise ValueError(f"{where}: the checkpoint has the array attribute {key!r}, which "
                             "the module lacks (a different architecture?)")
        cur = current[key]
        if tuple(cur.shape) != tuple(value.shape) or cur.dtype != value.dtype:
            raise ValueError(f"{where}: array attribute {key!r} is {value.dtype}{list(value.shape)} "
                             f"in the checkpoint but {cur.dtype}{list(cur.shape)} in the module")
        modpath, _, attr = key.rpartition(".")
        value = np.asarray(value) if isinstance(cur, np.ndarray) else jnp.asarray(value)
        setattr(module.get_submodule(modpath), attr, value)
