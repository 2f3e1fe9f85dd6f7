"""jparam.load / jparam.save: safetensors and torch files, dtypes, errors, atomicity."""
from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch

from jparam import _checkpoint
from jparam._checkpoint import load, load_metadata, save

DTYPES = ["float32", "float64", "float16", "bfloat16", "int8", "int16", "int32", "int64",
          "uint8", "bool"]
TORCH_DTYPES = {n: getattr(torch, n) for n in DTYPES}


def _values(name: str, shape=(3, 4), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(name)
    n = int(np.prod(shape))
    if name == "bool":
        return rng.integers(0, 2, n).astype(bool).reshape(shape)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, n, dtype=dt, endpoint=True).reshape(shape)
    x = rng.standard_normal(n).astype(np.float32).astype(dt)
    x[:4] = np.array([np.nan, -0.0, np.inf, -np.inf], dtype=np.float32).astype(dt)
    return x.reshape(shape)


def _bits(a) -> bytes:
    if isinstance(a, torch.Tensor):
        t = a.detach().contiguous()
        return bytes(t.view(torch.uint8).numpy()) if t.dtype != torch.bool else bytes(t.numpy())
    a = np.asarray(a)
    return a.tobytes()


def _torch_tensor(a: np.ndarray) -> torch.Tensor:
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("source", ["numpy", "jax", "torch"])
def test_save_load_bitwise_every_dtype(tmp_path, source):
    ref = {f"t_{n}": _values(n, seed=i) for i, n in enumerate(DTYPES)}
    ref["scalar"] = np.array(2.5, np.float32)
    ref["empty"] = np.zeros((0, 3), np.float32)
    if source == "jax":
        obj = {k: (jnp.asarray(v) if v.dtype.itemsize < 8 else v) for k, v in ref.items()}
    elif source == "torch":
        obj = {k: _torch_tensor(v) for k, v in ref.items()}
    else:
        obj = ref
    path = tmp_path / "m.safetensors"
    save(obj, path)
    out = load(path)
    assert set(out) == set(ref)
    for k, v in ref.items():
        assert out[k].dtype == v.dtype, k
        assert out[k].shape == v.shape, k
        assert _bits(out[k]) == _bits(v), k
    # 64-bit stays exact as numpy (JAX would truncate without x64); the rest are jax arrays
    assert isinstance(out["t_float32"], jax.Array)
    assert out["t_bfloat16"].dtype == jnp.bfloat16
    assert isinstance(out["t_int64"], np.ndarray) and out["t_int64"].dtype == np.int64
    assert isinstance(out["t_float64"], np.ndarray)
    assert load(path, as_numpy=True)["t_float32"].__class__ is np.ndarray


class _AllDtypes(torch.nn.Module):
    def __init__(self, seed):
        super().__init__()
        self.weight = torch.nn.Parameter(_torch_tensor(_values("float32", seed=seed)))
        for i, n in enumerate(DTYPES):
            self.register_buffer(f"b_{n}", _torch_tensor(_values(n, seed=seed + i + 1)))


@pytest.mark.parametrize("suffix,zipfile", [(".pt", True), (".bin", False), (".pth", True)])
def test_torch_file_to_safetensors_to_torch_bitwise(tmp_path, suffix, zipfile):
    from safetensors.torch import load_file

    src = _AllDtypes(seed=0)
    pt = tmp_path / f"model{suffix}"
    torch.save(src.state_dict(), pt, _use_new_zipfile_serialization=zipfile)
    sd = load(pt)
    assert list(sd) == list(src.state_dict())  # torch order kept for torch files
    assert sd["b_bfloat16"].dtype == jnp.bfloat16 and sd["b_bool"].dtype == np.bool_
    out = tmp_path / "model.safetensors"
    save(sd, out)
    dst = _AllDtypes(seed=100)
    dst.load_state_dict(load_file(out))
    for (k, a), (k2, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype and a.shape == b.shape
        assert _bits(a) == _bits(b), k


def test_reads_safetensors_written_by_torch(tmp_path):
    from safetensors.torch import save_file

    sd = {n: _torch_tensor(_values(n, seed=i)) for i, n in enumerate(DTYPES)}
    save_file(sd, tmp_path / "x.safetensors", metadata={"format": "pt"})
    out = load(tmp_path / "x.safetensors")
    for k, v in sd.items():
        assert _bits(out[k]) == _bits(v), k
    assert load_metadata(tmp_path / "x.safetensors") == {"format": "pt"}


def test_extension_is_not_trusted(tmp_path):
    # a safetensors file named .bin and a torch file named .safetensors both load
    save({"w": np.ones(2, np.float32)}, tmp_path / "a.bin")
    torch.save({"w": torch.ones(2)}, tmp_path / "b.safetensors")
    assert np.array_equal(load(tmp_path / "a.bin")["w"], np.ones(2))
    assert np.array_equal(load(tmp_path / "b.safetensors")["w"], np.ones(2))


def test_nested_torch_checkpoint_returns_structure(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
                "shape": torch.Size([2, 3]), "dtype": torch.float32}, tmp_path / "ck.pt")
    ck = load(tmp_path / "ck.pt")
    assert set(ck) == {"model", "optimizer", "epoch", "shape", "dtype"}
    assert ck["epoch"] == 3 and ck["shape"] == (2, 3) and ck["dtype"] == "torch.float32"
    assert np.array_equal(ck["model"]["weight"], model.weight.detach().numpy())
    st = ck["optimizer"]["state"]
    assert set(st) == {0, 1}  # int keys, as in torch
    assert np.array_equal(st[0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"].numpy())
    assert ck["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)


def test_tree_checkpoint_round_trip(tmp_path):
    key = jax.random.key(7)
    obj = {
        "model": {"fc.weight": jnp.ones((2, 3)), "fc.bias": jnp.zeros(2)},
        "optimizer": {"state": {0: {"step": jnp.array(3), "exp_avg": jnp.full((2, 3), 0.5)}},
                      "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8,
                                        "params": [0, 1], "foreach": None, "nan": float("nan"),
                                        "inf": float("-inf"), "name": "g"}]},
        "step": 10, "flag": True, "rng": key, "raw": np.arange(3, dtype=np.uint8),
    }
    save(obj, tmp_path / "ck.safetensors", metadata={"run": "a"})
    out = load(tmp_path / "ck.safetensors")
    assert list(out) == list(obj)
    assert out["step"] == 10 and out["flag"] is True
    g = out["optimizer"]["param_groups"][0]
    assert g["betas"] == (0.9, 0.999) and g["params"] == [0, 1] and g["foreach"] is None
    assert np.isnan(g["nan"]) and g["inf"] == float("-inf") and g["eps"] == 1e-8
    st = out["optimizer"]["state"][0]
    assert st["step"].shape == () and int(st["step"]) == 3
    assert np.array_equal(st["exp_avg"], np.full((2, 3), 0.5))
    assert jax.dtypes.issubdtype(out["rng"].dtype, jax.dtypes.prng_key)
    assert np.array_equal(jax.random.key_data(out["rng"]), jax.random.key_data(key))
    assert load_metadata(tmp_path / "ck.safetensors") == {"run": "a"}
    # the arrays sit under dotted keys, readable by any safetensors reader
    from safetensors.numpy import load_file

    keys = set(load_file(tmp_path / "ck.safetensors"))
    assert {"model.fc.weight", "optimizer.state.0.exp_avg", "rng", "raw"} <= keys


def test_objects_with_state_dict_are_saved_through_it(tmp_path):
    lin = torch.nn.Linear(3, 2)
    save(lin, tmp_path / "lin.safetensors")  # a plain state-dict file
    from safetensors.torch import load_file

    assert set(load_file(tmp_path / "lin.safetensors")) == {"weight", "bias"}
    save({"model": lin, "step": 1}, tmp_path / "ck.safetensors")
    out = load(tmp_path / "ck.safetensors")
    assert np.array_equal(out["model"]["weight"], lin.weight.detach().numpy())


def test_tied_weights_saved_as_two_copies(tmp_path):
    from safetensors.torch import load_file, save_file

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(5, 3)
            self.head = torch.nn.Linear(3, 5, bias=False)
            self.head.weight = self.emb.weight

    m = Tied()
    sd = m.state_dict()
    with pytest.raises(RuntimeError):  # what safetensors itself does with shared storage
        save_file(sd, tmp_path / "st.safetensors")
    save(sd, tmp_path / "t.safetensors")
    back = load_file(tmp_path / "t.safetensors")
    assert set(back) == {"emb.weight", "head.weight"}
    assert back["emb.weight"].data_ptr() != back["head.weight"].data_ptr()
    m2 = Tied()
    m2.load_state_dict(back)
    assert m2.head.weight is m2.emb.weight and torch.equal(m2.emb.weight, m.emb.weight)
    # a jax array under two keys, too
    w = jnp.ones((2, 2))
    save({"a": w, "b": w}, tmp_path / "j.safetensors")
    assert set(load(tmp_path / "j.safetensors")) == {"a", "b"}


# ----------------------------------------------------------------------------- bad files

class _Custom:  # pickled by torch.save; must be refused by weights_only loading
    def __init__(self):
        self.w = torch.ones(2)


def test_truncated_torch_file(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.randn(100, 100)}, good)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    with pytest.raises(ValueError, match=r"bad\.pt.*truncated or corrupt PyTorch checkpoint"):
        load(bad)


def test_truncated_safetensors_file(tmp_path):
    good = tmp_path / "good.safetensors"
    save({"w": np.ones((100, 100), np.float32)}, good)
    data = good.read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match=r"bad\.safetensors: truncated safetensors file"):
        load(bad)
    bad.write_bytes(data[:20])  # cut inside the header
    with pytest.raises(ValueError, match=r"bad\.safetensors: truncated safetensors file"):
        load(bad)


def test_random_bytes_and_empty_file(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=r"junk\.bin: not a checkpoint"):
        load(junk)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.pt: the file is empty"):
        load(empty)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.safetensors")


def test_other_zip_archive(tmp_path):
    np.savez(tmp_path / "arrays.npz", a=np.ones(2))
    with pytest.raises(ValueError, match=r"arrays\.npz: a zip archive but not a PyTorch checkpoint"):
        load(tmp_path / "arrays.npz")


def test_pickled_custom_class_is_refused(tmp_path):
    p = tmp_path / "obj.pt"
    torch.save({"model": _Custom()}, p)
    with pytest.raises(ValueError, match=r"obj\.pt: the file refers to the global 'test_checkpoint\._Custom'"):
        load(p)


def test_corrupt_safetensors_header(tmp_path):
    p = tmp_path / "h.safetensors"
    hdr = b'{"w": nonsense}'
    p.write_bytes(len(hdr).to_bytes(8, "little") + hdr)
    with pytest.raises(ValueError, match=r"h\.safetensors: corrupt safetensors file: the header is not valid"):
        load(p)


# ----------------------------------------------------------------------------- bad input

def test_bad_keys_and_values_name_the_culprit(tmp_path):
    p = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match=r"key 3 has type int.*top-level keys must be str"):
        save({3: np.ones(2)}, p)
    with pytest.raises(TypeError, match=r"'opt\.extra'.*type object"):
        save({"w": np.ones(2), "opt": {"extra": object()}}, p)
    with pytest.raises(TypeError, match=r"'bad\.1'.*type set"):
        save({"bad": [1, {2, 3}]}, p)
    with pytest.raises(TypeError, match=r"key \(1, 2\) has type tuple"):
        save({"a": {(1, 2): np.ones(1)}}, p)
    with pytest.raises(TypeError, match=r"'s'.*dtype <U1|'s'.*numpy\.str_|'s'.*dtype"):
        save({"s": np.array(["a"])}, p)
    with pytest.raises(TypeError, match=r"'c'.*complex128"):
        save({"c": np.ones(2, np.complex128)}, p)
    with pytest.raises(TypeError, match=r"expects a mapping.*list"):
        save([np.ones(2)], p)
    with pytest.raises(TypeError, match=r"metadata entry 'n'.*str -> int"):
        save({"w": np.ones(2)}, p, metadata={"n": 1})
    with pytest.raises(ValueError, match=r"'jparam\.tree'.*reserved"):
        save({"w": np.ones(2)}, p, metadata={"jparam.tree": "{}"})
    with pytest.raises(ValueError, match=r"'a\.b' and 'a\.b'.*file key 'a\.b'"):
        save({"a.b": np.ones(1), "a": {"b": np.ones(1)}}, p)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save({"w": np.ones(2)}, tmp_path / "nope" / "x.safetensors")
    assert not p.exists() and os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- atomicity

def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    p = tmp_path / "m.safetensors"
    save({"w": np.ones(3, np.float32)}, p)
    before = p.read_bytes()
    real = _checkpoint.stf.write

    def broken(f, arrays, metadata):
        real(f, arrays, metadata)  # the temp file is fully written ...
        f.truncate(10)             # ... then damaged, and the writer fails
        raise OSError("disk full")

    monkeypatch.setattr(_checkpoint.stf, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        save({"w": np.zeros(3, np.float32)}, p)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]
    monkeypatch.undo()
    save({"w": np.zeros(3, np.float32)}, p)
    assert np.array_equal(load(p)["w"], np.zeros(3))
    assert os.listdir(tmp_path) == ["m.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    assert (os.stat(p).st_mode & 0o777) == (0o666 & ~umask)


# ----------------------------------------------------------------------------- optional deps

def test_missing_optional_dependencies(tmp_path, monkeypatch):
    torch.save({"w": torch.ones(1)}, tmp_path / "a.pt")
    save({"w": np.ones(1)}, tmp_path / "a.safetensors")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install jparam\[torch\]"):
        load(tmp_path / "a.pt")
    # safetensors files are read and written by jparam itself: the package is not needed
    monkeypatch.setitem(sys.modules, "safetensors", None)
    assert np.array_equal(load(tmp_path / "a.safetensors")["w"], np.ones(1))
    save({"w": np.full(2, 3.0, np.float32)}, tmp_path / "b.safetensors")
    assert np.array_equal(load(tmp_path / "b.safetensors")["w"], np.full(2, 3.0))


def test_import_is_torch_and_safetensors_free():
    code = ("import sys, jparam, jparam._checkpoint; "
            "assert jparam.load and jparam.save and jparam.summary and jparam.save_sharded; "
            "bad = [m for m in ('torch', 'safetensors', 'orbax') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_64bit_under_x64_are_jax_arrays(tmp_path):
    ref = {n: _values(n) for n in ("float64", "int64")}
    save(ref, tmp_path / "w.safetensors")
    with jax.enable_x64(True):
        out = load(tmp_path / "w.safetensors")
        for k, v in ref.items():
            assert isinstance(out[k], jax.Array) and out[k].dtype == v.dtype
            assert _bits(out[k]) == _bits(v)
