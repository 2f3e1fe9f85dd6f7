"""jparam._convert is the one torch/NumPy/JAX converter: every entry point gives the same bits."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jparam
from jparam import nn
from jparam._convert import cast_exact, to_jax_array, torch_to_numpy

DTYPES = [torch.bfloat16, torch.float16, torch.float32, torch.float8_e4m3fn, torch.float8_e5m2,
          torch.float8_e4m3fnuz, torch.float8_e5m2fnuz, torch.float8_e8m0fnu]


def _tbits(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes()


def _bits(a) -> bytes:
    return np.asarray(a).reshape(-1).view(np.uint8).tobytes()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_every_entry_point_converts_torch_tensors_identically(tmp_path, dtype):
    raw = torch.from_numpy(np.random.default_rng(0).integers(0, 256, 32, dtype=np.uint8))
    t = raw.view(dtype).reshape(2, -1)
    name = str(dtype).removeprefix("torch.")
    want = _tbits(t)
    got = {
        "torch_to_numpy": torch_to_numpy(t),
        "to_jax_array": to_jax_array(t),
        "Parameter": nn.Parameter(t).data,
        "from_pretrained": nn.Embedding.from_pretrained(t).weight.data,
    }
    m = nn.Linear(t.shape[1], t.shape[0], bias=False, dtype=jnp.dtype(name))
    m.load_state_dict({"weight": t})
    got["load_state_dict"] = m.weight.data
    torch.save({"w": t}, tmp_path / "w.pt")
    got["jparam.load(.pt)"] = jparam.load(tmp_path / "w.pt")["w"]
    for where, a in got.items():
        assert np.dtype(a.dtype) == np.dtype(name), where
        assert _bits(a) == want, where


def test_int64_is_never_wrapped_without_x64():
    if jax.config.jax_enable_x64:
        pytest.skip("only meaningful with 32-bit JAX")
    assert to_jax_array(np.array([2**31 - 1], np.int64)).tolist() == [2**31 - 1]
    with pytest.raises(ValueError, match=r"Parameter data: value 1099511627776 \(int64\) does "
                                         r"not fit in int32"):
        nn.Parameter(torch.tensor([1, 2**40]), requires_grad=False)
    assert to_jax_array(np.array([2**31 + 7], np.uint64)).tolist() == [2**31 + 7]  # uint32
    with pytest.raises(ValueError, match=r"x: value 4294967303 \(uint64\) does not fit in uint32"):
        to_jax_array(np.array([2**32 + 7], np.uint64), "x")


def test_cast_exact_matches_torch_copy_where_torch_is_exact():
    rng = np.random.default_rng(1)
    ints = rng.integers(-2**62, 2**62, 50, dtype=np.int64)
    for dtype, tdtype in [(np.float32, torch.float32), (np.float16, torch.float16),
                          (np.float64, torch.float64)]:
        want = torch.empty(50, dtype=tdtype).copy_(torch.from_numpy(ints)).numpy()
        got = cast_exact(ints, dtype, "x")
        assert got.tobytes() == want.tobytes(), dtype
    small = rng.integers(-2**31, 2**31, 50, dtype=np.int64)
    want = torch.empty(50, dtype=torch.int32).copy_(torch.from_numpy(small)).numpy()
    assert cast_exact(small, np.int32, "x").tobytes() == want.tobytes()
    floats = rng.uniform(-1e6, 1e6, 50)
    want = torch.empty(50, dtype=torch.int32).copy_(torch.from_numpy(floats)).numpy()
    assert cast_exact(floats, np.int32, "x").tobytes() == want.tobytes()


@pytest.mark.parametrize("kind", ["sparse", "quantized", "meta", "complex32"])
def test_unsupported_torch_kinds_are_named(kind):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = {"sparse": torch.eye(2).to_sparse(),
             "quantized": torch.quantize_per_tensor(torch.eye(2), 0.5, 0, torch.qint8),
             "meta": torch.empty(2, device="meta"),
             "complex32": torch.ones(2, dtype=torch.complex32)}[kind]
    with pytest.raises(TypeError, match=rf"my\.key: .*{'sparse' if kind == 'sparse' else kind}"
                                        r".*not supported|my\.key: .*meta"):
        torch_to_numpy(t, "my.key")


def _torch_adam_state(dtype: torch.dtype, **kw) -> dict:
    torch.manual_seed(0)
    tm = torch.nn.Linear(3, 2).to(dtype)
    to = torch.optim.Adam(tm.parameters(), lr=1e-2, **kw)
    for _ in range(3):
        to.zero_grad()
        tm(torch.randn(4, 3, dtype=dtype)).pow(2).sum().backward()
        to.step()
    return to.state_dict()


def _torch_loaded(sd: dict, dtype: torch.dtype, **kw) -> dict:
    """What torch's own load_state_dict keeps for a model of ``dtype`` (it casts floating
    state to the parameter's dtype)."""
    to = torch.optim.Adam(torch.nn.Linear(3, 2).to(dtype).parameters(), lr=1e-2, **kw)
    to.load_state_dict(sd)
    return to.state_dict()


@pytest.mark.parametrize("saved,model", [(torch.bfloat16, torch.bfloat16), (torch.float64, torch.float32),
                                         (torch.float64, torch.float64)],
                         ids=["bf16", "f64-into-f32", "f64-x64"])
def test_optimizer_loads_torch_state_with_torchs_bits(saved, model):
    """The optimizer's torch converters (optim/_transform.py, optimizer.py) go through here:
    torch's bfloat16 / float64 Adam state loads with exactly the bits torch's own
    load_state_dict keeps for a model of the same dtype."""
    sd = _torch_adam_state(saved, amsgrad=True)
    want = _torch_loaded(sd, model, amsgrad=True)["state"]
    with jax.enable_x64(model == torch.float64):
        jm = nn.Linear(3, 2).to(model)
        jo = jparam.optim.Adam(jm.parameters(), lr=1e-2, amsgrad=True)
        jo.load_state_dict(sd)
        got = jo.state_dict()["state"]
        assert sorted(got) == sorted(want)
        for i, e in want.items():
            assert list(got[i]) == list(e)
            for k, v in e.items():
                a = np.asarray(got[i][k])
                assert a.dtype == torch_to_numpy(v).dtype, (i, k)
                assert _bits(a) == _tbits(v.reshape(-1)), (i, k)
