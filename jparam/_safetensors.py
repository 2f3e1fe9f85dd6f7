"""Reading and writing the safetensors file format (no dependency on the safetensors package).

Format: an 8-byte little-endian header length ``n``, ``n`` bytes of UTF-8 JSON (an object
mapping each tensor name to ``{"dtype", "shape", "data_offsets"}``, plus an optional
``"__metadata__"`` of str to str), then the tensors' bytes.  jparam reads and writes it
itself so that every dtype (float8, float4 included) round-trips bit for bit and every file
is validated completely before any array is returned: a file that does not follow the
format raises ``ValueError`` naming the file and what is wrong.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import IO, Any

import numpy as np

from ._convert import NUMPY_TO_SAFETENSORS, SAFETENSORS_DTYPES, unpack_float4, pack_float4

__all__ = ["looks_like_safetensors", "read_header", "read_arrays", "write"]

MAX_HEADER = 100_000_000  # the safetensors library's limit
_ALIGN = 8


def looks_like_safetensors(head: bytes, size: int) -> bool:
    """True when the first bytes are a length prefix followed by the start of a JSON object.

    A pickle (``\\x80`` + protocol) or zip (``PK\\x03\\x04``) file never has ``{`` at byte 8,
    so this cannot mistake a torch file for safetensors, whatever the header length.
    """
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 0 < int.from_bytes(head[:8], "little") <= max(size - 8, 0)


def _bytes_of(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    n = math.prod(shape)
    return n // 2 if dtype.name == "float4_e2m1fn" else n * dtype.itemsize


def read_header(f: IO[bytes], size: int, path: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Validate the header of an open safetensors file of ``size`` bytes.

    Returns ``(data_start, {name: (dtype, shape, begin, end)}, metadata)`` with the entries in
    the header's order; raises ``ValueError`` naming ``path`` for anything that does not
    follow the format (as strictly as the safetensors library: the tensors must exactly tile
    the data section).
    """
    def bad(msg: str) -> ValueError:
        return ValueError(f"{path}: corrupt safetensors file: {msg}")

    f.seek(0)
    prefix = f.read(8)
    if len(prefix) < 8:
        raise bad(f"only {len(prefix)} bytes, shorter than the 8-byte length prefix")
    n = int.from_bytes(prefix, "little")
    if n > size - 8:
        raise ValueError(f"{path}: truncated safetensors file: the header says it is {n} bytes "
                         f"long but the file holds only {size - 8} bytes after the length prefix")
    if n > MAX_HEADER:
        raise bad(f"header length {n} exceeds {MAX_HEADER} bytes")
    raw = f.read(n)

    def no_duplicates(items: list) -> dict:
        d = dict(items)
        if len(d) != len(items):
            seen = set()
            dup = next(k for k, _ in items if k in seen or seen.add(k))
            raise bad(f"the header names {dup!r} twice")
        return d

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise bad(f"the header is not valid UTF-8 JSON ({type(e).__name__}: "
                  f"{str(e).splitlines()[0][:200]})") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if meta is None:
        meta = {}
    if not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise bad("__metadata__ is not an object of str to str")
    entries: dict[str, tuple] = {}
    for name, info in header.items():
        if not (isinstance(info, dict) and set(info) == {"dtype", "shape", "data_offsets"}):
            raise bad(f"the entry for {name!r} is not {{dtype, shape, data_offsets}}: "
                      f"{info!r:.120}")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if code not in SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has dtype {code!r}, which jparam cannot "
                             f"read (supported: {', '.join(sorted(SAFETENSORS_DTYPES))})")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise bad(f"tensor {name!r} has shape {shape!r:.80}, expected a list of sizes")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1]):
            raise bad(f"tensor {name!r} has data_offsets {offsets!r:.80}, expected [begin, end]")
        dtype = np.dtype(SAFETENSORS_DTYPES[code])
        if dtype.name == "float4_e2m1fn" and math.prod(shape) % 2:
            raise bad(f"F4 tensor {name!r} has an odd number of elements {shape}")
        need = _bytes_of(dtype, tuple(shape))
        if offsets[1] - offsets[0] != need:
            raise bad(f"tensor {name!r} ({code}, shape {shape}) needs {need} bytes but its "
                      f"data_offsets {offsets} span {offsets[1] - offsets[0]}")
        entries[name] = (dtype, tuple(shape), offsets[0], offsets[1])
    have = size - 8 - n
    pos = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda e: (e[1][2], e[1][3])):
        if begin != pos:
            raise bad(f"tensor {name!r} starts at byte {begin} of the data, expected {pos} "
                      "(tensors must tile the data without gaps or overlaps)")
        pos = end
    if pos > have:
        raise ValueError(f"{path}: truncated safetensors file: the tensors need {pos} bytes of "
                         f"data but the file holds {have}")
    if pos != have:
        raise bad(f"{have - pos} bytes after the last tensor's data")
    return 8 + n, entries, meta


def read_arrays(f: IO[bytes], start: int, entries: Mapping[str, tuple],
                path: str) -> dict[str, np.ndarray]:
    """The validated ``entries`` of :func:`read_header` as writable NumPy arrays."""
    out: dict[str, np.ndarray] = {}
    for name, (dtype, shape, begin, end) in entries.items():
        buf = np.empty(end - begin, np.uint8)
        f.seek(start + begin)
        got = f.readinto(memoryview(buf))
        if got != end - begin:
            raise ValueError(f"{path}: truncated safetensors file (tensor {name!r}): it changed "
                             "while being read")
        if dtype.name == "float4_e2m1fn":
            arr = unpack_float4(buf).reshape(shape)
        else:
            arr = buf.view(dtype).reshape(shape)
        out[name] = arr
    return out


def write(f: IO[bytes], arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> None:
    """Write ``arrays`` (C-contiguous, little-endian) and ``metadata`` to the open file ``f``.

    The header lists the tensors in the order given; their data are laid out by decreasing
    item size (then in the order given), so that every tensor starts at a multiple of its
    item size, as the safetensors library lays them out.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    order = sorted(arrays, key=lambda k: -arrays[k].dtype.itemsize)
    offsets, pos = {}, 0
    for k in order:
        a = arrays[k]
        nbytes = _bytes_of(a.dtype, a.shape)
        offsets[k] = (pos, pos + nbytes)
        pos += nbytes
    for k, a in arrays.items():
        header[k] = {"dtype": NUMPY_TO_SAFETENSORS[a.dtype.name], "shape": list(a.shape),
                     "data_offsets": list(offsets[k])}
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % _ALIGN)
    f.write(len(raw).to_bytes(8, "little"))
    f.write(raw)
    for k in order:
        a = arrays[k]
        if a.dtype.name == "float4_e2m1fn":
            data = pack_float4(a)
        else:
            data = a.reshape(-1).view(np.uint8)
        f.write(memoryview(data))
