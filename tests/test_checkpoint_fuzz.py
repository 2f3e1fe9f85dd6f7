"""Issue 13: fuzzing and property tests of jparam.load / save / load_state_dict.

Every damaged file gives either a correct load or a ``ValueError`` naming the file, never
another exception, and never a changed model.  Files are small so that the whole module
runs in seconds.
"""
from __future__ import annotations

import io
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jparam
from jparam import nn


def _model():
    jparam.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))


def _state(model) -> dict:
    return {k: (np.asarray(v).dtype.str, np.asarray(v).shape, np.asarray(v).tobytes())
            for k, v in model.state_dict().items()}


def _same_arrays(a: dict, b: dict) -> bool:
    return list(a) == list(b) or set(a) == set(b) and all(
        np.asarray(a[k]).dtype == np.asarray(b[k]).dtype
        and np.asarray(a[k]).shape == np.asarray(b[k]).shape
        and np.asarray(a[k]).tobytes() == np.asarray(b[k]).tobytes() for k in a)


def _check_load(path, reference: dict, target) -> str:
    """Load ``path`` and load it into ``target``: 'error', 'same' or 'refused'."""
    before = _state(target)
    try:
        sd = jparam.load(path)
    except ValueError as e:
        assert str(path) in str(e), e
        return "error"
    # anything else propagates and fails the test
    if set(sd) == set(reference) and _same_arrays(sd, reference):
        return "same"
    try:
        target.load_state_dict(sd)
    except (RuntimeError, TypeError) as e:
        assert _state(target) == before, f"model changed by a refused load ({e})"
        return "refused"
    raise AssertionError(f"a damaged file loaded different values: {sorted(sd)}")


def test_safetensors_single_byte_flips_of_prefix_and_header(tmp_path):
    model = _model()
    ref = model.state_dict()
    good = tmp_path / "good.safetensors"
    jparam.save(model, good)
    data = good.read_bytes()
    n = int.from_bytes(data[:8], "little")
    p = tmp_path / "flip.safetensors"
    outcomes = {}
    for i in range(8 + n):
        for mask in (0x01, 0x20, 0x80, 0xFF):
            b = bytearray(data)
            b[i] ^= mask
            p.write_bytes(bytes(b))
            target = _model()
            r = _check_load(p, ref, target)
            outcomes[r] = outcomes.get(r, 0) + 1
    assert outcomes.get("error", 0) > 0.9 * sum(outcomes.values()), outcomes


@pytest.mark.parametrize("fmt", ["safetensors", "zip", "legacy"])
def test_truncation_every_few_bytes(tmp_path, fmt):
    model = _model()
    ref = model.state_dict()
    good = tmp_path / "good.bin"
    if fmt == "safetensors":
        jparam.save(model, good)
    else:
        tsd = {k: torch.from_numpy(np.array(v)) for k, v in ref.items()}
        torch.save(tsd, good, _use_new_zipfile_serialization=fmt == "zip")
    data = good.read_bytes()
    assert _check_load(good, ref, _model()) == "same"
    p = tmp_path / "cut.bin"
    step = 3 if fmt != "zip" else 11
    results = []
    for cut in range(0, len(data), step):
        p.write_bytes(data[:cut])
        results.append(_check_load(p, ref, _model()))
    assert results.count("error") == len(results), results


def test_zip_directory_byte_flips(tmp_path):
    model = _model()
    ref = model.state_dict()
    good = tmp_path / "good.pt"
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in ref.items()}, good)
    data = good.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = z.infolist()
    # the central directory (and end record) sits after the last member's data
    start = data.find(b"PK\x01\x02")
    assert start > 0 and len(infos) > 3
    p = tmp_path / "flip.pt"
    outcomes = {}
    for i in range(start, len(data)):
        b = bytearray(data)
        b[i] ^= 0xFF
        p.write_bytes(bytes(b))
        r = _check_load(p, ref, _model())
        outcomes[r] = outcomes.get(r, 0) + 1
    assert outcomes.get("error", 0) > 0, outcomes


# ----------------------------------------------------------------------------- properties

_LAYERS = st.sampled_from(["linear", "bn", "ln", "seq", "emb"])


@st.composite
def _trees(draw, depth=0):
    n = draw(st.integers(1, 4 if depth == 0 else 2))
    layers = []
    for _ in range(n):
        kind = draw(_LAYERS if depth < 2 else st.sampled_from(["linear", "bn", "ln", "emb"]))
        a, b = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        if kind == "linear":
            layers.append(("linear", a, b, draw(st.booleans())))
        elif kind == "bn":
            layers.append(("bn", a))
        elif kind == "ln":
            layers.append(("ln", a))
        elif kind == "emb":
            layers.append(("emb", a, b))
        else:
            layers.append(("seq", draw(_trees(depth + 1))))
    return layers


def _build(spec):
    mods = []
    for item in spec:
        if item[0] == "linear":
            mods.append(nn.Linear(item[1], item[2], bias=item[3]))
        elif item[0] == "bn":
            mods.append(nn.BatchNorm1d(item[1]))
        elif item[0] == "ln":
            mods.append(nn.LayerNorm(item[1]))
        elif item[0] == "emb":
            mods.append(nn.Embedding(item[1], item[2]))
        else:
            mods.append(_build(item[1]))
    return nn.Sequential(*mods)


def _perturb(model, seed: int) -> None:
    """Distinct, non-trivial values in every entry (buffers included)."""
    rng = np.random.default_rng(seed)
    sd = {}
    for k, v in model.state_dict().items():
        v = np.asarray(v)
        if v.dtype.kind == "i":
            sd[k] = np.asarray(rng.integers(0, 2**31 - 1), v.dtype).reshape(v.shape)
        elif k.endswith("running_var"):
            sd[k] = rng.uniform(0.5, 2.0, v.shape).astype(v.dtype)
        else:
            sd[k] = rng.standard_normal(v.shape).astype(v.dtype)
    model.load_state_dict(sd)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=_trees(), seed=st.integers(0, 2**16), pad=st.integers(0, 300),
       as_tree=st.booleans())
def test_state_dict_save_load_round_trip(tmp_path_factory, spec, seed, pad, as_tree):
    path = tmp_path_factory.mktemp("prop") / "m.safetensors"
    src = _build(spec)
    _perturb(src, seed)
    meta = {"pad": "x" * pad}  # moves the header length across 0x80 boundaries
    if as_tree:
        jparam.save({"model": src, "step": seed, "note": [1.5, None, "s"]}, path, metadata=meta)
    else:
        jparam.save(src, path, metadata=meta)
    loaded = jparam.load(path)
    assert jparam.load_metadata(path) == meta
    if as_tree:
        assert loaded["step"] == seed and loaded["note"] == [1.5, None, "s"]
        loaded = loaded["model"]
    dst = _build(spec)
    _perturb(dst, seed + 1)
    dst.load_state_dict(loaded)
    assert _state(dst) == _state(src)


def test_property_inputs_cross_the_0x80_boundary(tmp_path):
    """The padding range of the property test does reach header lengths starting with 0x80."""
    src = _build([("linear", 3, 2, True)])
    firsts = set()
    for pad in range(0, 301, 8):
        jparam.save(src, tmp_path / "m.safetensors", metadata={"pad": "x" * pad})
        firsts.add((tmp_path / "m.safetensors").read_bytes()[0])
    assert 0x80 in firsts


def test_round_trip_in_jit_built_models_two_of_the_same_structure(tmp_path):
    """Two models of one structure saved and loaded crosswise keep their own values."""
    a, b = _build([("linear", 4, 3, True), ("bn", 3)]), _build([("linear", 4, 3, True), ("bn", 3)])
    _perturb(a, 1)
    _perturb(b, 2)
    jparam.save({"a": a, "b": b}, tmp_path / "ab.safetensors")
    ck = jparam.load(tmp_path / "ab.safetensors")
    a2, b2 = _build([("linear", 4, 3, True), ("bn", 3)]), _build([("linear", 4, 3, True), ("bn", 3)])
    a2.load_state_dict(ck["b"])
    b2.load_state_dict(ck["a"])
    assert _state(a2) == _state(b) and _state(b2) == _state(a)
    x = jnp.ones((2, 4))
    f = jax.jit(lambda m1, m2, x: (m1(x), m2(x)))
    a2.eval(), b2.eval(), a.eval(), b.eval()
    y1, y2 = f(a2, b2, x)
    z1, z2 = f(b, a, x)
    assert np.isfinite(np.asarray(y1)).all()
    np.testing.assert_array_equal(np.asarray(y1), np.asarray(z1))
    np.testing.assert_array_equal(np.asarray(y2), np.asarray(z2))
