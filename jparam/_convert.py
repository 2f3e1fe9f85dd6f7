"""The one place where jparam converts arrays between torch, NumPy and JAX.

Everything that turns a torch tensor, a NumPy array or a Python scalar into a NumPy or JAX
array goes through here, and so does the mapping between torch, NumPy (ml_dtypes) and
safetensors dtype names.  torch is never imported: a value is recognised as a torch tensor
through ``sys.modules`` (if torch was never imported, no value can be a torch tensor).

Rules, the same everywhere:

* conversions are exact, bit for bit: bfloat16 and the float8 variants go through ml_dtypes'
  NumPy dtypes of the same names; torch's packed ``float4_e2m1fn_x2`` becomes ml_dtypes'
  ``float4_e2m1fn`` with the last dimension doubled (low nibble first, as torch packs it);
* nothing narrows silently: JAX holds 64-bit arrays only under ``jax_enable_x64``, so a
  64-bit array becomes a 32-bit JAX array only when every value survives the cast
  (:func:`to_jax_array`), or stays NumPy (:func:`numpy_to_jax`);
* sparse, quantized, meta-device, ``complex32`` tensors, and NumPy string/object arrays are
  refused with a ``TypeError`` naming the key and saying the kind is unsupported.
"""
from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes  # noqa: F401  (registers bfloat16 / float8 / float4 names with NumPy)
import numpy as np

__all__ = ["type_name", "is_torch_tensor", "is_prng_key", "is_array", "as_dtype", "torch_dtype_to_numpy",
           "torch_to_numpy", "torch_to_jax", "to_numpy", "to_jax_array", "numpy_to_jax",
           "cast_exact", "to_jax_as", "pack_float4", "unpack_float4", "SAFETENSORS_DTYPES", "NUMPY_TO_SAFETENSORS"]

# safetensors dtype code -> NumPy (ml_dtypes) dtype name
SAFETENSORS_DTYPES = {
    "BOOL": "bool", "I8": "int8", "U8": "uint8", "I16": "int16", "U16": "uint16",
    "I32": "int32", "U32": "uint32", "I64": "int64", "U64": "uint64", "F16": "float16",
    "F32": "float32", "F64": "float64", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2", "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz", "F8_E8M0": "float8_e8m0fnu", "F4": "float4_e2m1fn",
    "C64": "complex64",
}
NUMPY_TO_SAFETENSORS = {v: k for k, v in SAFETENSORS_DTYPES.items()}

# torch dtype names NumPy has only through ml_dtypes (same names): reinterpret the bits
_ML_DTYPES = {"bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
              "float8_e8m0fnu"}
_WIDE = {np.dtype(n) for n in ("int64", "uint64", "float64", "complex128")}


def _numeric(dtype: np.dtype) -> bool:
    """bool, integer, float or complex, including ml_dtypes' (bfloat16, float8, ...)."""
    return dtype.kind in "biufc" or (dtype.kind == "V" and dtype.names is None
                                     and type(dtype).__module__.startswith("ml_dtypes"))


def type_name(x: Any) -> str:
    """``'int'``, ``'jax.Array'``, ``'numpy.ndarray'``, ``'torch.Tensor'``: for error messages."""
    if isinstance(x, jax.Array):
        return "jax.Array"
    t = type(x)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_prng_key(x: Any) -> bool:
    """A typed PRNG key array (``jax.random.key``), stored by checkpoints as its key data."""
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _param_data(x: Any) -> Any:
    """A jparam Parameter's array, else None (no import: _parameter imports this module)."""
    mod = sys.modules.get("jparam._parameter")
    if mod is not None and isinstance(x, mod.Parameter):
        return x.data
    return None


def is_array(x: Any) -> bool:
    """True for the values a checkpoint stores as tensors (not PRNG keys, strings, objects)."""
    if _param_data(x) is not None:
        return True
    if isinstance(x, (np.ndarray, np.generic)):
        return _numeric(x.dtype)
    if isinstance(x, jax.Array):
        return not is_prng_key(x)
    return is_torch_tensor(x)


def torch_dtype_to_numpy(dtype: Any) -> np.dtype:
    """The NumPy dtype holding a torch dtype's values exactly (``torch.bfloat16`` ->
    ``ml_dtypes.bfloat16``); ``TypeError`` for a dtype NumPy has no exact twin of."""
    name = str(dtype).removeprefix("torch.")
    if name == "float4_e2m1fn_x2":
        return np.dtype("float4_e2m1fn")
    try:
        return np.dtype(name)
    except TypeError:
        raise TypeError(f"torch dtype {dtype} has no exact NumPy/JAX counterpart") from None


def as_dtype(dtype: Any, what: str = "dtype") -> np.dtype:
    """A JAX/NumPy dtype for a dtype-like or a ``torch.dtype`` of the same name
    (``torch.bfloat16`` -> ``bfloat16``); ``TypeError`` naming ``what`` for a torch dtype JAX
    has no twin of (the packed ``float4_e2m1fn_x2``: an element holds two values).

    Example:
        >>> as_dtype(torch.bfloat16), as_dtype("float32")
        (dtype(bfloat16), dtype('float32'))
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(dtype, torch.dtype):
        try:
            return jnp.dtype(str(dtype).removeprefix("torch."))
        except TypeError:
            raise TypeError(f"{what}: {dtype} has no JAX counterpart") from None
    return jnp.dtype(dtype)


def torch_to_numpy(t: Any, key: str = "tensor") -> np.ndarray:
    """A torch tensor as a NumPy array with exactly its bits (a copy, on the CPU).

    ``key`` names the tensor in errors: sparse, quantized, meta and complex32 tensors are
    refused with a ``TypeError`` saying which kind is unsupported.
    """
    import torch

    if t.layout != torch.strided:
        raise TypeError(f"{key}: torch tensor with layout {t.layout} (sparse) is not supported; "
                        "convert it to a dense tensor (.to_dense()) first")
    if t.is_quantized:
        raise TypeError(f"{key}: quantized torch tensor ({t.dtype}) is not supported; "
                        "dequantize it (.dequantize()) first")
    if t.device.type == "meta":
        raise TypeError(f"{key}: torch tensor on the 'meta' device has no data (materialise "
                        "it, e.g. with to_empty() and an initialisation, first)")
    t = t.detach().cpu().contiguous()
    name = str(t.dtype).removeprefix("torch.")
    if name in _ML_DTYPES:
        width = torch.int16 if t.element_size() == 2 else torch.uint8
        return t.view(width).numpy().view(np.dtype(name)).copy()  # never alias torch memory
    if name == "float4_e2m1fn_x2":
        packed = t.view(torch.uint8).numpy()
        return unpack_float4(packed)
    try:
        return t.numpy().copy()
    except TypeError:
        raise TypeError(f"{key}: torch dtype {t.dtype} is not supported (no exact NumPy/JAX "
                        "counterpart)") from None


def unpack_float4(packed: np.ndarray) -> np.ndarray:
    """Packed ``uint8`` (two float4 values a byte, low nibble first) -> ``float4_e2m1fn``."""
    out = np.empty(packed.shape[:-1] + (2 * packed.shape[-1],) if packed.ndim else (2,),
                   np.uint8)
    flat = packed.reshape(-1)
    out.reshape(-1)[0::2] = flat & 0x0F
    out.reshape(-1)[1::2] = flat >> 4
    return out.view(np.dtype("float4_e2m1fn"))


def pack_float4(a: np.ndarray) -> np.ndarray:
    """Inverse of :func:`unpack_float4` on the flattened array (its size must be even)."""
    bits = a.reshape(-1).view(np.uint8) & 0x0F
    return (bits[0::2] | (bits[1::2] << 4)).astype(np.uint8)


def to_numpy(x: Any, key: str) -> np.ndarray:
    """A C-contiguous, little-endian NumPy array holding exactly the bits of ``x``.

    ``x`` is a jax/NumPy array, a torch tensor or a jparam Parameter; anything else, and
    string/object arrays, raise a ``TypeError`` naming ``key``.
    """
    if _param_data(x) is not None:
        x = _param_data(x)
    if is_torch_tensor(x):
        arr = torch_to_numpy(x, key)
    elif isinstance(x, jax.Array):
        if is_prng_key(x):
            raise TypeError(f"{key}: a PRNG key array, not a numeric array (use "
                            "jax.random.key_data)")
        if not x.is_fully_addressable:
            raise ValueError(f"{key}: the array is sharded across processes (not fully "
                             "addressable); use jparam.save_sharded for it")
        arr = np.asarray(x)
    elif isinstance(x, (np.ndarray, np.generic)):
        arr = np.asarray(x)
        if not _numeric(arr.dtype):
            raise TypeError(f"{key}: NumPy array of dtype {arr.dtype} is not supported; "
                            "expected a numeric or bool array")
    else:
        raise TypeError(f"{key}: expected an array (jax.Array, numpy.ndarray or torch.Tensor), "
                        f"got {type_name(x)}")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    # (np.ascontiguousarray would turn a 0-d array into shape (1,))
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def cast_exact(arr: np.ndarray, dtype: Any, key: str) -> np.ndarray:
    """``arr`` cast to ``dtype`` as torch's ``copy_`` casts, but refusing (``ValueError``
    naming ``key``, the value and the dtype) any value an integer dtype cannot hold, so
    that nothing wraps around silently (torch's own int casts wrap)."""
    dtype = np.dtype(dtype)
    if arr.dtype == dtype:
        return arr
    if dtype.kind in "iu" and arr.dtype.kind in "iuf" and arr.size:
        info = np.iinfo(dtype)
        if arr.dtype.kind == "f" or arr.dtype.name in _ML_DTYPES:
            wide = arr.astype(np.float64)
            bad = ~np.isfinite(wide) | (wide < info.min) | (wide >= float(info.max) + 1)
        else:
            wide = arr.astype(object) if arr.dtype.itemsize >= 8 else arr.astype(np.int64)
            bad = (wide < info.min) | (wide > info.max)
        if np.any(bad):
            value = arr.reshape(-1)[int(np.argmax(np.asarray(bad).reshape(-1)))].item()
            raise ValueError(f"{key}: value {value!r} ({arr.dtype}) does not fit in {dtype}"
                             f" [{info.min}, {info.max}]" + _x64_hint(dtype))
    with np.errstate(over="ignore"):  # floats too large for a float dtype become inf, as in torch
        return arr.astype(dtype)


def _x64_hint(dtype: np.dtype) -> str:
    if dtype.itemsize == 4 and dtype.kind in "iu" and not jax.config.jax_enable_x64:
        return ("; JAX holds 64-bit integers only with jax.config.update('jax_enable_x64', "
                "True)")
    return ""


def numpy_to_jax(arr: np.ndarray) -> Any:
    """A device array for ``arr``, except 64-bit arrays without ``jax_enable_x64``, which
    stay NumPy (exact) because JAX would truncate them to 32 bits."""
    if arr.dtype in _WIDE and not jax.config.jax_enable_x64:
        return arr
    return jnp.asarray(arr)


def torch_to_jax(t: Any, key: str = "tensor") -> jax.Array:
    """A torch tensor as a jax array, exactly (64-bit values must fit 32 bits without x64)."""
    return to_jax_array(t, key)


def to_jax_array(value: Any, what: str = "value") -> jax.Array:
    """A jax array for a jax/NumPy array, torch tensor, Parameter, list or Python scalar.

    Exact: a 64-bit array without ``jax_enable_x64`` becomes 32 bits only when every value
    fits (``ValueError`` naming ``what`` otherwise); unsupported values raise ``TypeError``
    naming ``what``.

    Example:
        >>> to_jax_array(np.arange(3, dtype=np.int64)).dtype
        dtype('int32')
    """
    if isinstance(value, jax.Array):
        return value
    data = _param_data(value)
    if isinstance(data, jax.Array):
        return data
    if isinstance(value, (list, tuple, int, float, complex, bool)):
        return jnp.asarray(value)
    arr = to_numpy(value, what)
    if arr.dtype in _WIDE and not jax.config.jax_enable_x64:
        narrow = {"i": np.int32, "u": np.uint32, "f": np.float32, "c": np.complex64}[arr.dtype.kind]
        if arr.dtype.kind in "iu":
            arr = cast_exact(arr, narrow, what)
        # float64/complex128 -> 32 bits rounds, as jnp.asarray always does without x64
    return jnp.asarray(arr)


def to_jax_as(value: Any, dtype: Any, what: str) -> Any:
    """``value`` as a jax array of ``dtype`` (``None``: its own dtype), cast as torch's
    ``copy_`` casts, exactly: integer values that do not fit raise ``ValueError`` naming
    ``what``; unsupported values raise ``TypeError`` naming ``what``.

    jax arrays (tracers included) are cast with ``astype``; a 64-bit ``dtype`` without
    ``jax_enable_x64`` gives a NumPy array (JAX cannot hold it).  Used by ``load_state_dict``.

    Example:
        >>> to_jax_as(np.array([2**40], np.int64), jnp.float32, "w").tolist()
        [1099511627776.0]
    """
    if isinstance(value, jax.Array) or isinstance(_param_data(value), jax.Array):
        val = value if isinstance(value, jax.Array) else _param_data(value)
        return val if dtype is None or val.dtype == dtype else val.astype(dtype)
    if isinstance(value, (list, tuple, int, float, complex, bool)):
        value = np.asarray(value)
    arr = to_numpy(value, what)
    if dtype is None:
        return to_jax_array(arr, what)
    return numpy_to_jax(cast_exact(arr, np.dtype(dtype), what))
