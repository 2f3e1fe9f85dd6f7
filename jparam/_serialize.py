"""Array conversion and tree <-> (flat arrays, JSON skeleton) encoding for checkpoints.

Used by :mod:`jparam._checkpoint`.  Nothing here imports torch or safetensors: torch
tensors are recognised through ``sys.modules`` (if torch was never imported, no value
can be a torch tensor).

Skeleton encoding (JSON, stored in the safetensors metadata under ``jparam.tree``):

- an array leaf           -> ``{"$a": "<key in the file>"}``
- a typed PRNG key array  -> ``{"$k": "<key in the file>", "impl": "<impl name>"}``
- dict (str or int keys)  -> ``{"$d": [[key, node], ...]}`` (order and key types kept)
- collections.Counter     -> ``{"$c": [[key, count], ...]}``
- list / tuple            -> ``{"$l": [...]}`` / ``{"$t": [...]}``
- None, bool, int, str    -> themselves
- float                   -> itself when finite, ``{"$f": "nan" | "inf" | "-inf"}`` otherwise
"""
from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Mapping
from typing import Any

import ml_dtypes  # noqa: F401  (registers bfloat16 / float8 names with numpy)
import numpy as np

__all__ = ["to_numpy", "is_array", "to_jax", "encode_tree", "decode_tree"]

# dtypes safetensors can store (numpy names, as given to safetensors.TensorSpec)
_SUPPORTED = {
    "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz",
    "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu", "complex64",
}
# safetensors dtype codes -> numpy dtype names (for reading headers ourselves)
ST_CODES = {
    "BOOL": "bool", "I8": "int8", "U8": "uint8", "I16": "int16", "U16": "uint16",
    "I32": "int32", "U32": "uint32", "I64": "int64", "U64": "uint64", "F16": "float16",
    "F32": "float32", "F64": "float64", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu", "C64": "complex64",
}
_WIDE = {np.dtype(n) for n in ("int64", "uint64", "float64", "complex128")}


def _torch():
    return sys.modules.get("torch")


def _is_torch_tensor(x: Any) -> bool:
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def _is_jax_array(x: Any) -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.Array)


def is_prng_key(x: Any) -> bool:
    if not _is_jax_array(x):
        return False
    import jax

    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _param_data(x: Any) -> Any:
    """A jparam Parameter's array (state_dict(keep_vars=True) holds Parameters), else None."""
    mod = sys.modules.get("jparam._parameter")
    if mod is not None and isinstance(x, mod.Parameter):
        return x.data
    return None


def is_array(x: Any) -> bool:
    """True for the array types a checkpoint stores as tensors (not PRNG key arrays)."""
    if _param_data(x) is not None:
        return True
    if isinstance(x, np.ndarray) or isinstance(x, np.generic):
        return not isinstance(x, (np.str_, np.bytes_, np.void)) and x.dtype != object
    if _is_jax_array(x):
        return not is_prng_key(x)
    return _is_torch_tensor(x)


def _torch_to_numpy(t, key: str) -> np.ndarray:
    torch = _torch()
    if t.layout != torch.strided:
        raise TypeError(f"checkpoint entry {key!r}: torch tensor with layout {t.layout} "
                        "cannot be saved; convert it to a dense tensor (.to_dense()) first")
    if t.is_quantized:
        raise TypeError(f"checkpoint entry {key!r}: quantized torch tensor ({t.dtype}) "
                        "cannot be saved; dequantize it first")
    if t.device.type == "meta":
        raise TypeError(f"checkpoint entry {key!r}: torch tensor on the 'meta' device has no data")
    t = t.detach().cpu().contiguous()
    name = str(t.dtype).removeprefix("torch.")
    if name == "complex128":
        raise TypeError(f"checkpoint entry {key!r}: dtype torch.complex128 is not supported "
                        "by safetensors")
    if name in ("bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
                "float8_e5m2fnuz", "float8_e8m0fnu"):
        # numpy has no such dtypes; reinterpret the bits (ml_dtypes names match torch's)
        width = torch.int16 if t.element_size() == 2 else torch.uint8
        return t.view(width).numpy().view(np.dtype(name))
    try:
        return t.numpy()
    except TypeError as e:
        raise TypeError(f"checkpoint entry {key!r}: torch dtype {t.dtype} is not supported "
                        f"({e})") from None


def to_numpy(x: Any, key: str) -> np.ndarray:
    """A C-contiguous, little-endian NumPy array holding exactly the bits of ``x``."""
    if _param_data(x) is not None:
        x = _param_data(x)
    if _is_torch_tensor(x):
        arr = _torch_to_numpy(x, key)
    elif _is_jax_array(x):
        if not x.is_fully_addressable:
            raise ValueError(f"checkpoint entry {key!r}: the array is sharded across processes "
                             "(not fully addressable); use jparam.save_sharded for it")
        arr = np.asarray(x)
    elif isinstance(x, (np.ndarray, np.generic)):
        arr = np.asarray(x)
    else:
        raise TypeError(f"checkpoint entry {key!r}: expected an array (jax.Array, numpy.ndarray "
                        f"or torch.Tensor), got {type(x).__module__}.{type(x).__qualname__}")
    if arr.dtype.name not in _SUPPORTED:
        raise TypeError(f"checkpoint entry {key!r}: dtype {arr.dtype} cannot be stored in "
                        f"safetensors (supported: {', '.join(sorted(_SUPPORTED))})")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    # (np.ascontiguousarray would turn a 0-d array into shape (1,))
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def to_jax(arr: np.ndarray, *, as_numpy: bool = False):
    """Device array for ``arr``; 64-bit arrays stay NumPy unless ``jax_enable_x64`` is on,
    because JAX would otherwise silently truncate them to 32 bits."""
    if as_numpy:
        return arr
    import jax
    import jax.numpy as jnp

    if arr.dtype in _WIDE and not jax.config.jax_enable_x64:
        return arr
    return jnp.asarray(arr)


# --------------------------------------------------------------------------- trees

def _type_name(x: Any) -> str:
    t = type(x)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _path_str(path: tuple) -> str:
    return ".".join(str(p) for p in path) if path else "<root>"


def encode_tree(obj: Any) -> tuple[dict[str, Any], Any]:
    """Split ``obj`` into ``{file_key: array}`` and a JSON-able skeleton.

    Objects with a ``state_dict()`` method (modules, optimizers, schedulers, torch modules)
    are replaced by their state dict.  File keys are the dotted paths.
    """
    arrays: dict[str, Any] = {}
    owners: dict[str, tuple] = {}

    def claim(path: tuple) -> str:
        key = ".".join(str(p) for p in path)
        if key in arrays:
            raise ValueError(f"checkpoint entries {_path_str(owners[key])!r} and "
                             f"{_path_str(path)!r} both map to the file key {key!r}; "
                             "rename one of them")
        owners[key] = path
        return key

    def enc(x: Any, path: tuple, depth: int) -> Any:
        if depth > 64:
            raise ValueError(f"checkpoint entry {_path_str(path)!r}: nesting deeper than 64 "
                             "levels (a reference cycle?)")
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, int) and not isinstance(x, bool):
            return int(x)
        if isinstance(x, float):
            return float(x) if math.isfinite(x) else {"$f": repr(float(x))}
        if is_prng_key(x):
            import jax

            key = claim(path)
            arrays[key] = jax.random.key_data(x)
            return {"$k": key, "impl": str(jax.random.key_impl(x))}
        if is_array(x):
            key = claim(path)
            arrays[key] = x
            return {"$a": key}
        if callable(getattr(x, "state_dict", None)) and not isinstance(x, Mapping):
            return enc(x.state_dict(), path, depth + 1)
        if isinstance(x, Mapping):
            tag = "$c" if isinstance(x, Counter) else "$d"  # Counter: MultiStepLR's milestones
            items = []
            for k, v in x.items():
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise TypeError(f"checkpoint entry {_path_str(path)!r}: key {k!r} has type "
                                    f"{_type_name(k)}; keys must be str (or int, as in an "
                                    "optimizer's state)")
                items.append([k if isinstance(k, str) else int(k), enc(v, path + (k,), depth + 1)])
            return {tag: items}
        if isinstance(x, (list, tuple)):
            tag = "$t" if isinstance(x, tuple) else "$l"
            return {tag: [enc(v, path + (i,), depth + 1) for i, v in enumerate(x)]}
        raise TypeError(f"checkpoint entry {_path_str(path)!r}: cannot save a value of type "
                        f"{_type_name(x)}; expected an array, a module/optimizer (anything with "
                        "state_dict()), a dict/list/tuple of those, or None/bool/int/float/str")

    skeleton = enc(obj, (), 0)
    return arrays, skeleton


def decode_tree(skeleton: Any, arrays: Mapping[str, Any], where: str) -> Any:
    """Inverse of :func:`encode_tree`; ``arrays`` maps file keys to loaded arrays."""
    used: set[str] = set()

    def bad(msg: str) -> ValueError:
        return ValueError(f"{where}: corrupt jparam checkpoint structure: {msg}")

    def dec(node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            raise bad(f"unexpected bare list {node!r:.80}")
        if not isinstance(node, dict) or len(node) not in (1, 2):
            raise bad(f"unexpected node {node!r:.80}")
        if "$a" in node or "$k" in node:
            key = node.get("$a", node.get("$k"))
            if key not in arrays:
                raise bad(f"the structure refers to tensor {key!r}, which the file lacks")
            used.add(key)
            if "$k" in node:
                import jax

                return jax.random.wrap_key_data(arrays[key], impl=node.get("impl"))
            return arrays[key]
        (tag, val), = node.items()
        if tag == "$f":
            return float(val)
        if tag == "$d":
            return {k: dec(v) for k, v in val}
        if tag == "$c":
            return Counter({k: dec(v) for k, v in val})
        if tag == "$l":
            return [dec(v) for v in val]
        if tag == "$t":
            return tuple(dec(v) for v in val)
        raise bad(f"unknown tag {tag!r}")

    out = dec(skeleton)
    extra = set(arrays) - used
    if extra:
        raise bad(f"tensors {sorted(extra)[:5]} are not referenced by the structure")
    return out
