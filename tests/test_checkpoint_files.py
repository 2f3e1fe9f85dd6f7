"""Issue 13: files are never misread, every dtype round-trips, hostile files are named.

torch and the safetensors package are the oracles: files written by them load bit for bit,
and files written by jparam load in them bit for bit.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch

import jparam
from jparam import _safetensors as stf
from jparam import nn

FLOAT8 = ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"]


def _bits(a) -> bytes:
    a = np.asarray(a)
    return a.reshape(-1).view(np.uint8).tobytes()


def _random_bits(dtype: str, shape, seed: int) -> np.ndarray:
    """Every bit pattern is fair game (NaN payloads included): random bytes viewed as dtype."""
    dt = np.dtype(dtype)
    raw = np.random.default_rng(seed).integers(0, 256, int(np.prod(shape)) * dt.itemsize,
                                               dtype=np.uint8)
    if dt == np.bool_:
        raw = raw & 1
    return raw.view(dt).reshape(shape)


# ----------------------------------------------------------------------------- item 1: 0x80

def test_the_issue_example_loads(tmp_path):
    p = tmp_path / "m.safetensors"
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(5)])
    jparam.save(model, p)
    assert p.read_bytes()[0] == 0x80  # the header length that used to be sniffed as a pickle
    sd = jparam.load(p)
    assert list(sd) == list(model.state_dict())  # the saved order comes back
    for k, v in model.state_dict().items():
        assert _bits(sd[k]) == _bits(v), k
    for n in range(600):  # load_metadata on a file whose header length starts with 0x80
        jparam.save(model, p, metadata={"arch": "m" * n})
        if p.read_bytes()[0] == 0x80:
            break
    assert p.read_bytes()[0] == 0x80
    assert jparam.load_metadata(p) == {"arch": "m" * n}


@pytest.mark.parametrize("writer", ["jparam", "safetensors"])
def test_every_header_length_low_byte(tmp_path, writer):
    """Header lengths sweep all 256 values of the first prefix byte (0x80 included)."""
    from safetensors.numpy import save_file

    seen = set()
    rng = np.random.default_rng(0)
    for n in range(1, 280, 4):  # header lengths are multiples of 8: every low byte they take
        arrays = {"w" * n: rng.standard_normal(3).astype(np.float32),
                  "b": rng.integers(-5, 5, (2,)).astype(np.int32)}
        p = tmp_path / f"f{n}.safetensors"
        if writer == "jparam":
            jparam.save(arrays, p)
        else:
            save_file(arrays, str(p))
        seen.add(p.read_bytes()[0])
        out = jparam.load(p)
        assert list(out) == list(arrays) or set(out) == set(arrays)
        for k, v in arrays.items():
            assert _bits(out[k]) == _bits(v)
        p.unlink()
    assert 0x80 in seen and len(seen) >= 32


def test_jparam_files_read_by_safetensors_and_torch(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    rng = np.random.default_rng(1)
    arrays = {"a" * n: rng.standard_normal((n % 5 + 1, 3)).astype(np.float32)
              for n in range(1, 40)}
    arrays["h"] = rng.standard_normal(7).astype(np.float16)
    arrays["i"] = rng.integers(-2**62, 2**62, (3,), dtype=np.int64)
    p = tmp_path / "m.safetensors"
    jparam.save(arrays, p, metadata={"k": "v"})
    t = load_file(str(p))
    for k, v in arrays.items():
        assert _bits(t[k].numpy()) == _bits(v), k
    with safe_open(str(p), framework="np") as f:
        assert f.metadata() == {"k": "v"}
        assert set(f.keys()) == set(arrays)


# ----------------------------------------------------------------------------- item 2: dtypes

def test_every_dtype_save_accepts_loads_back_bitwise(tmp_path):
    names = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
             "float16", "float32", "float64", "bfloat16", "complex64", *FLOAT8]
    ref = {n: _random_bits(n, (3, 4), i) for i, n in enumerate(names)}
    ref["float4_e2m1fn"] = _random_bits("uint8", (3, 4), 99).__and__(0x0F).view(
        ml_dtypes.float4_e2m1fn)
    p = tmp_path / "d.safetensors"
    jparam.save(ref, p)
    out = jparam.load(p)
    for k, v in ref.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape, k
        assert _bits(out[k]) == _bits(v), k
    # and from jax arrays (float8 as jax arrays, as a model would hold them)
    jparam.save({n: jnp.asarray(ref[n]) for n in FLOAT8}, p)
    out = jparam.load(p)
    for n in FLOAT8:
        assert _bits(out[n]) == _bits(ref[n]) and out[n].dtype == jnp.dtype(n), n


TORCH_DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                torch.uint16, torch.uint32, torch.uint64, torch.float16, torch.bfloat16,
                torch.float32, torch.float64, torch.complex64, torch.float8_e4m3fn,
                torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz,
                torch.float8_e8m0fnu, torch.float4_e2m1fn_x2]


def _torch_random(dtype, seed: int) -> torch.Tensor:
    raw = torch.from_numpy(_random_bits("uint8", (3, 8), seed).copy())
    if dtype == torch.bool:
        return (raw & 1).bool()
    return raw.view(dtype)  # reinterpret bytes: shape (3, 8 / itemsize)


def _torch_bits(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool \
        else t.numpy().tobytes()


@pytest.mark.parametrize("fmt", ["safetensors", "zip", "legacy"])
def test_torch_written_files_of_every_dtype(tmp_path, fmt):
    from safetensors.torch import save_file

    ref = {str(d).removeprefix("torch."): _torch_random(d, i) for i, d in enumerate(TORCH_DTYPES)}
    p = tmp_path / "t.bin"
    if fmt == "safetensors":
        save_file(ref, str(p))
    else:
        if fmt == "legacy":  # torch cannot read its own legacy files of these dtypes back
            for k in ("float4_e2m1fn_x2", "uint16", "uint32", "uint64", *FLOAT8):
                ref.pop(k)
        torch.save(ref, p, _use_new_zipfile_serialization=fmt == "zip")
    out = jparam.load(p)
    for k, t in ref.items():
        want = "float4_e2m1fn" if k == "float4_e2m1fn_x2" else k
        assert np.dtype(out[k].dtype) == np.dtype(want), k
        if k == "float4_e2m1fn_x2":  # two values a byte: the last dimension doubles
            assert out[k].shape == (t.shape[0], 2 * t.shape[1])
            from jparam._convert import pack_float4
            assert pack_float4(np.asarray(out[k])).tobytes() == _torch_bits(t)
        else:
            assert tuple(out[k].shape) == tuple(t.shape), k
            assert _bits(out[k]) == _torch_bits(t), k


def test_float8_round_trip_jparam_to_torch(tmp_path):
    from safetensors.torch import load_file

    ref = {n: _random_bits(n, (5,), i) for i, n in enumerate(FLOAT8)}
    p = tmp_path / "f8.safetensors"
    jparam.save(ref, p)
    t = load_file(str(p))
    for n, v in ref.items():
        assert t[n].dtype == getattr(torch, n)
        assert _torch_bits(t[n]) == _bits(v)


def test_torch_float8_tensors_convert_exactly():
    """One torch->NumPy converter: load_state_dict, Parameter and jparam.load agree."""
    for i, n in enumerate(FLOAT8 + ["bfloat16"]):
        t = _torch_random(getattr(torch, n), 40 + i)
        p = nn.Parameter(t)
        assert p.dtype == jnp.dtype(n)
        assert _bits(p.data) == _torch_bits(t)


# ----------------------------------------------------------------------------- item 5

def test_metadata_key_is_refused_at_save(tmp_path):
    p = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="'__metadata__' is reserved"):
        jparam.save({"__metadata__": np.ones(2, np.float32)}, p)
    with pytest.raises(ValueError, match="'__metadata__' is reserved"):
        jparam.save({"__metadata__": np.ones(2), "step": 3}, p)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- item 8

def _tree_file(path, tree, arrays=None) -> str:
    arrays = arrays or {"w": np.arange(3, dtype=np.float32)}
    meta = {"jparam.tree": tree if isinstance(tree, str) else json.dumps(tree),
            "jparam.version": "1"}
    with open(path, "wb") as f:
        stf.write(f, arrays, meta)
    return str(path)


@pytest.mark.parametrize("tree,msg", [
    ({"$d": 5}, r"'\$d' holds int"),
    ({"$d": [[[1], {"$a": "w"}]]}, r"key \[1\] is not a str or int"),
    ({"$d": [["w", {"$a": "w"}], ["w", 1]]}, "repeated key"),
    ({"$d": [["w", {"$a": "w"}], ["x", {"$f": "garbage"}]]}, "float tag 'garbage'"),
    ({"$d": [["w", {"$a": "w"}], ["x", {"$f": ["nan"]}]]}, "float tag"),
    ({"$k": "w", "impl": "no_such_prng"}, "cannot be rebuilt"),
    ({"$k": "w", "impl": ["threefry2x32"]}, "cannot be rebuilt"),
    ({"$a": ["w"]}, "refers to tensor"),
    ({"$a": "nope"}, "refers to tensor 'nope'"),
    ({"$l": [{"$a": "w"}, {"$a": "w"}]}, "referred to twice"),
    ({"$zz": 1}, "unknown tag"),
    ({"$a": "w", "x": 1}, "unexpected node"),
    ([{"$a": "w"}], "unexpected node"),
    ("{not json", "corrupt jparam checkpoint structure"),
    ({"$l": [{"$a": "w"}]} if False else {"$d": [["w", {"$a": "w"}]], "$l": []}, "unexpected"),
])
def test_tampered_tree_metadata_names_the_file(tmp_path, tree, msg):
    p = _tree_file(tmp_path / "t.safetensors", tree)
    with pytest.raises(ValueError, match=msg) as e:
        jparam.load(p)
    assert "t.safetensors" in str(e.value)


@pytest.mark.parametrize("depth", [70, 1000, 5000, 200_000])
def test_deeply_nested_tree_metadata(tmp_path, depth):
    tree = '{"$l":[' * depth + '{"$a":"w"}' + "]}" * depth
    p = _tree_file(tmp_path / "deep.safetensors", tree)
    with pytest.raises(ValueError, match="deep.safetensors: corrupt jparam checkpoint"):
        jparam.load(p)


def test_nesting_limit_is_the_same_for_save_and_load(tmp_path):
    deep = {"w": np.ones(1, np.float32)}
    for _ in range(60):
        deep = {"d": deep}
    p = tmp_path / "ok.safetensors"
    jparam.save({"x": deep}, p)
    out = jparam.load(p)["x"]
    for _ in range(60):
        out = out["d"]
    assert np.array_equal(out["w"], np.ones(1))


# ----------------------------------------------------------------------------- items 10, 11

_EVIL = """
import os, sys, torch
class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))
torch.save({"w": torch.ones(2), "evil": Evil()}, sys.argv[1],
           _use_new_zipfile_serialization=sys.argv[3] == "zip")
"""


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_malicious_pickle_names_the_global_and_never_runs(tmp_path, fmt):
    p, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    subprocess.run([sys.executable, "-c", _EVIL, str(p), str(marker), fmt], check=True)
    with pytest.raises(ValueError, match=r"evil\.pt: the file refers to the global "
                                         r"'(posix|nt)\.system'"):
        jparam.load(p)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["sparse_coo", "sparse_csr", "quantized", "complex32"])
def test_torch_file_with_unsupported_tensor_kind(tmp_path, kind):
    import warnings

    base = torch.tensor([[0.0, 1.5], [2.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = {"sparse_coo": base.to_sparse(), "sparse_csr": base.to_sparse_csr(),
             "quantized": torch.quantize_per_tensor(base, 0.5, 0, torch.qint8),
             "complex32": base.to(torch.complex32)}[kind]
    p = tmp_path / "odd.pt"
    torch.save({"ok": torch.ones(2), "layer": {"odd": t}}, p)
    with pytest.raises(ValueError, match=r"odd\.pt: tensor 'layer\.odd'.*not supported"):
        jparam.load(p)


def test_torch_complex64_and_complex128_load_exactly(tmp_path):
    rng = np.random.default_rng(3)
    c64 = (rng.standard_normal(4) + 1j * rng.standard_normal(4)).astype(np.complex64)
    c128 = rng.standard_normal(4) + 1j * rng.standard_normal(4)
    p = tmp_path / "c.pt"
    torch.save({"a": torch.from_numpy(c64), "b": torch.from_numpy(c128)}, p)
    out = jparam.load(p)
    assert out["a"].dtype == np.complex64 and _bits(out["a"]) == _bits(c64)
    assert out["b"].dtype == np.complex128 and _bits(out["b"]) == _bits(c128)


# ----------------------------------------------------------------------------- item 13

_KILLED_SAVE = """
import os, sys
import numpy as np
import jparam
from jparam import _checkpoint

def dying_write(f, arrays, metadata):
    f.write(b"x" * 1000)
    f.flush()
    os._exit(3)   # the process dies mid-save, as under SIGKILL: no cleanup runs

_checkpoint.stf.write = dying_write
jparam.save({"w": np.zeros(1000, np.float32)}, sys.argv[1])
"""


def test_killed_save_leaves_only_the_documented_temp_file(tmp_path):
    p = tmp_path / "m.safetensors"
    jparam.save({"w": np.ones(3, np.float32)}, p)
    before = p.read_bytes()
    r = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(p)], cwd=os.getcwd())
    assert r.returncode == 3
    left = sorted(os.listdir(tmp_path))
    assert len(left) == 2 and left[0] == "m.safetensors", left
    assert p.read_bytes() == before
    import re
    assert re.fullmatch(r"m\.safetensors\.tmp\.[0-9a-f]{12}", left[1]), left
    jparam.save({"w": np.full(3, 2.0, np.float32)}, p)  # the next save cleans it up
    assert os.listdir(tmp_path) == ["m.safetensors"]
    assert np.array_equal(jparam.load(p)["w"], np.full(3, 2.0))


def test_cleanup_spares_a_save_in_progress(tmp_path):
    import fcntl

    p = tmp_path / "m.safetensors"
    busy = tmp_path / "m.safetensors.tmp.0123456789ab"    # another process's save, locked
    other = tmp_path / "m.safetensors.tmp.zzzz"            # not a name jparam writes
    unrelated = tmp_path / "n.safetensors.tmp.0123456789ab"
    for f in (busy, other, unrelated):
        f.write_bytes(b"partial")
    fd = os.open(busy, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        jparam.save({"w": np.ones(1, np.float32)}, p)
        assert busy.exists() and other.exists() and unrelated.exists()
    finally:
        os.close(fd)
    jparam.save({"w": np.ones(1, np.float32)}, p)
    assert not busy.exists() and other.exists() and unrelated.exists()


# ----------------------------------------------------------------------------- issue 15 item 10

def test_num_batches_tracked_is_written_as_torch_int64(tmp_path):
    from safetensors.torch import load_file

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    x = jax.random.normal(jax.random.key(0), (8, 3))
    for _ in range(3):
        model(x)
    assert int(model[1].num_batches_tracked) == 3
    p = tmp_path / "bn.safetensors"
    jparam.save(model.state_dict(), p)
    sd = load_file(str(p))
    assert sd["1.num_batches_tracked"].dtype == torch.int64
    assert int(sd["1.num_batches_tracked"]) == 3
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    tm.load_state_dict(sd, assign=True)
    assert tm[1].num_batches_tracked.dtype == torch.int64 and int(tm[1].num_batches_tracked) == 3
    for k, v in model.state_dict().items():
        if k != "1.num_batches_tracked":
            assert np.array_equal(tm.state_dict()[k].numpy(), np.asarray(v)), k
    # in a training checkpoint too; and back into jparam (int32 without x64), exactly
    jparam.save({"model": model, "step": 3}, p)
    assert load_file(str(p))["model.1.num_batches_tracked"].dtype == torch.int64
    fresh = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    fresh.load_state_dict(jparam.load(p)["model"])
    assert int(fresh[1].num_batches_tracked) == 3
    assert fresh[1].num_batches_tracked.dtype == model[1].num_batches_tracked.dtype
    # a user's own int32 array keeps its dtype
    jparam.save({"counts": np.arange(3, dtype=np.int32)}, p)
    assert load_file(str(p))["counts"].dtype == torch.int32


def test_concurrent_saves_to_one_path_from_threads(tmp_path):
    """Eight threads save different values to one path at once: the file is always one
    complete save, and no temporary file is left (each save's lock protects its temp file
    from the others' stale-file cleanup)."""
    import threading

    p = tmp_path / "m.safetensors"
    values = [np.full(50_000, i, np.float32) for i in range(8)]
    errors = []

    def work(i):
        try:
            for _ in range(3):
                jparam.save({"w": values[i]}, p)
                got = np.asarray(jparam.load(p)["w"])
                assert got.shape == (50_000,) and (got == got[0]).all() and 0 <= got[0] < 8
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert os.listdir(tmp_path) == ["m.safetensors"]
