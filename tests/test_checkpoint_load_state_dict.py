"""Issue 13: load_state_dict casts exactly and names bad values; multi-target restores are all
or nothing; BatchNorm refuses a leaked tracer before mutating.  torch is the oracle for casts."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jparam
from jparam import nn, optim


def _snapshot(model) -> dict:
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


def _same(model, snap) -> bool:
    now = model.state_dict()
    return set(now) == set(snap) and all(
        np.asarray(now[k]).dtype == snap[k].dtype and
        np.asarray(now[k]).tobytes() == snap[k].tobytes() for k in snap)


# ----------------------------------------------------------------------------- item 4: int64

@pytest.mark.parametrize("value", [2**40, 2**31 + 7, -(2**53), 2**24 + 1, 123456789012])
def test_large_int64_into_float_parameter_as_torch(value):
    src = np.full((2,), value, np.int64)
    tm = torch.nn.Linear(2, 1)
    tm.bias.data = torch.zeros(1)
    jm = nn.Linear(2, 1)
    for target in (tm, jm):
        target.load_state_dict({"weight": src.reshape(1, 2) if target is jm else
                                torch.from_numpy(src.reshape(1, 2)),
                                "bias": np.zeros(1, np.float32) if target is jm else
                                torch.zeros(1)})
    want = tm.weight.detach().numpy()
    got = np.asarray(jm.weight.data)
    assert got.dtype == np.float32 and got.tobytes() == want.tobytes(), (got, want)


def test_int64_into_int_buffer_exact_or_refused():
    bn = nn.BatchNorm1d(3)
    dtype = np.dtype(bn.num_batches_tracked.dtype)
    snap = _snapshot(bn)
    base = {k: np.asarray(v) for k, v in bn.state_dict().items()}
    ok = dict(base, num_batches_tracked=np.array(2**31 - 1, np.int64))
    bn.load_state_dict(ok)
    assert int(bn.num_batches_tracked) == 2**31 - 1
    bn.load_state_dict(base)
    for bad in (2**40, 2**31 + 7, -(2**31) - 1):
        sd = dict(base, num_batches_tracked=np.array(bad, np.int64))
        if dtype == np.int64:  # jax_enable_x64: held exactly, as in torch
            bn.load_state_dict(sd)
            assert int(bn.num_batches_tracked) == bad
            bn.load_state_dict(base)
            continue
        with pytest.raises(RuntimeError, match=rf"num_batches_tracked.*value {bad} \(int64\) "
                                               r"does not fit in int32.*jax_enable_x64"):
            bn.load_state_dict(sd)
        assert _same(bn, snap)


def test_int64_exact_under_x64(tmp_path):
    with jax.enable_x64(True):
        bn = nn.BatchNorm1d(3)
        assert bn.num_batches_tracked.dtype == jnp.int64
        sd = dict(bn.state_dict(), num_batches_tracked=torch.tensor(2**40 + 3))
        bn.load_state_dict(sd)
        assert int(bn.num_batches_tracked) == 2**40 + 3
        p = tmp_path / "x.safetensors"
        jparam.save(bn, p)
        fresh = nn.BatchNorm1d(3)
        fresh.load_state_dict(jparam.load(p))
        assert int(fresh.num_batches_tracked) == 2**40 + 3


def test_float_values_outside_an_int_dtype_are_refused():
    bn = nn.BatchNorm1d(2)
    snap = _snapshot(bn)
    for bad in (np.float32(np.nan), np.float64(1e20)):
        sd = dict(bn.state_dict(), num_batches_tracked=np.array(bad))
        with pytest.raises(RuntimeError, match="num_batches_tracked.*does not fit"):
            bn.load_state_dict(sd)
        assert _same(bn, snap)


# ----------------------------------------------------------------------------- item 12

@pytest.mark.parametrize("kind", ["str", "object", "meta", "sparse", "quantized", "dict"])
def test_unsupported_values_name_the_key(kind):
    import warnings

    m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    snap = _snapshot(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = {"str": np.array([["a", "b"], ["c", "d"]]),
               "object": np.array([[1, None], [2, 3]], dtype=object),
               "meta": torch.empty(2, 2, device="meta"),
               "sparse": torch.eye(2).to_sparse(),
               "quantized": torch.quantize_per_tensor(torch.eye(2), 0.5, 0, torch.qint8),
               "dict": {"a": 1}}[kind]
    sd = dict(m.state_dict(), **{"1.weight": bad})
    with pytest.raises(RuntimeError, match=r"state_dict\['1\.weight'\]") as e:
        m.load_state_dict(sd)
    msg = str(e.value)
    assert {"str": "dtype <U1", "object": "dtype object", "meta": "'meta' device",
            "sparse": "sparse", "quantized": "quantized", "dict": "dict"}[kind] in msg, msg
    assert _same(m, snap)


def test_torch_float8_and_bfloat16_state_dict_load_exactly():
    m = nn.Linear(3, 2, dtype=jnp.bfloat16)
    t = torch.nn.Linear(3, 2).to(torch.bfloat16)
    m.load_state_dict(t.state_dict())
    assert np.asarray(m.weight.data).view(np.uint16).tobytes() == \
        t.weight.detach().view(torch.int16).numpy().tobytes()
    w8 = torch.randn(2, 3).to(torch.float8_e4m3fn)
    m8 = nn.Linear(3, 2, bias=False, dtype=jnp.float8_e4m3fn)
    m8.load_state_dict({"weight": w8})
    assert np.asarray(m8.weight.data).view(np.uint8).tobytes() == \
        w8.view(torch.uint8).numpy().tobytes()


# ----------------------------------------------------------------------------- item 6

def _trained(seed: int):
    jparam.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.2), nn.Linear(4, 2))
    opt = optim.Adam(model.parameters(), lr=0.01)
    x = jax.random.normal(jax.random.key(seed), (8, 3))
    for _ in range(2):
        loss, model = jparam.backward(lambda m: jnp.mean(m(x) ** 2), model)
        model, opt = opt.step(model)
    return model, opt


def _opt_state(opt) -> bytes:
    out = []
    for v in jax.tree_util.tree_leaves(opt.state_dict()):
        out.append(np.asarray(v).tobytes() if hasattr(v, "shape") else repr(v).encode())
    return b"|".join(out)


def test_load_checkpoint_bad_optimizer_entry_leaves_model_unchanged(tmp_path):
    model, opt = _trained(0)
    p = tmp_path / "ck.safetensors"
    jparam.save_checkpoint(p, model=model, optimizer=opt, step=2)
    ck = jparam.load(p)
    other, other_opt = _trained(1)
    snap, osnap, rng = _snapshot(other), _opt_state(other_opt), jparam.get_rng_state()
    # the optimizer entry has one parameter too few in its group: refused after the model
    # entry validated fine
    ck["optimizer"]["param_groups"][0]["params"] = ck["optimizer"]["param_groups"][0]["params"][:-1]
    jparam.save(ck, tmp_path / "bad.safetensors")
    with pytest.raises((ValueError, KeyError, RuntimeError)):
        jparam.load_checkpoint(tmp_path / "bad.safetensors", model=other, optimizer=other_opt)
    assert _same(other, snap)
    assert _opt_state(other_opt) == osnap
    assert np.array_equal(jparam.get_rng_state(), rng)


def test_load_checkpoint_bad_model_entry_leaves_optimizer_unchanged(tmp_path):
    model, opt = _trained(0)
    p = tmp_path / "ck.safetensors"
    jparam.save_checkpoint(p, model=model, optimizer=opt, step=2)
    ck = jparam.load(p)
    ck["model"]["3.weight"] = np.ones((3, 3), np.float32)  # wrong shape
    jparam.save(ck, p)
    other, other_opt = _trained(1)
    snap, osnap, rng = _snapshot(other), _opt_state(other_opt), jparam.get_rng_state()
    with pytest.raises(RuntimeError, match=r"(?s)ck\.safetensors: entry 'model'.*size mismatch "
                                           r"for 3\.weight"):
        jparam.load_checkpoint(p, model=other, optimizer=other_opt)
    assert _same(other, snap) and _opt_state(other_opt) == osnap
    assert np.array_equal(jparam.get_rng_state(), rng)


def test_load_checkpoint_second_optimizer_fails_first_rolled_back(tmp_path):
    model, opt = _trained(0)
    opt2 = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = jax.random.normal(jax.random.key(5), (8, 3))
    _, model = jparam.backward(lambda m: jnp.mean(m(x) ** 2), model)
    model, opt2 = opt2.step(model)
    p = tmp_path / "ck.safetensors"
    jparam.save_checkpoint(p, model=model, a=opt, b=opt2)
    ck = jparam.load(p)
    ck["b"]["param_groups"] = []  # a different number of groups: refused
    jparam.save(ck, p)
    other, other_opt = _trained(1)
    other_opt2 = optim.SGD(other.parameters(), lr=0.5, momentum=0.9)
    snap, osnap, osnap2 = _snapshot(other), _opt_state(other_opt), _opt_state(other_opt2)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        jparam.load_checkpoint(p, model=other, a=other_opt, b=other_opt2)
    assert _same(other, snap)
    assert _opt_state(other_opt) == osnap and _opt_state(other_opt2) == osnap2
    # and the good checkpoint still loads completely afterwards
    jparam.save_checkpoint(p, model=model, a=opt, b=opt2)
    jparam.load_checkpoint(p, model=other, a=other_opt, b=other_opt2)
    assert _same(other, _snapshot(model)) and _opt_state(other_opt) == _opt_state(opt)


def test_load_checkpoint_bad_rng_and_plain_arrays_change_nothing(tmp_path):
    model, opt = _trained(0)
    p = tmp_path / "ck.safetensors"
    jparam.save_checkpoint(p, model=model, optimizer=opt)
    ck = jparam.load(p)
    ck["jparam.rng"] = np.zeros(7, np.uint32)
    jparam.save(ck, p)
    other, other_opt = _trained(1)
    snap, osnap = _snapshot(other), _opt_state(other_opt)
    with pytest.raises(ValueError, match="'jparam.rng'"):
        jparam.load_checkpoint(p, model=other, optimizer=other_opt)
    assert _same(other, snap) and _opt_state(other_opt) == osnap


# ----------------------------------------------------------------------------- item 7

@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_closure_under_vmap_refuses_before_mutating(momentum):
    bn = nn.BatchNorm1d(3, momentum=momentum)
    bn(jax.random.normal(jax.random.key(1), (6, 3)))  # one real step: non-trivial state
    snap = _snapshot(bn)
    x = jax.random.normal(jax.random.key(0), (4, 5, 3))
    with pytest.raises(jparam.TracerLeakError):
        jax.vmap(lambda xb: bn(xb))(x)
    assert _same(bn, snap)
    with pytest.raises(jparam.TracerLeakError):
        jax.jit(lambda xb: bn(xb))(x[0])
    assert _same(bn, snap)
    # eager use after the refusals still matches torch
    tb = torch.nn.BatchNorm1d(3, momentum=momentum)
    tb.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in snap.items()})
    y = bn(x[0])
    ty = tb(torch.from_numpy(np.asarray(x[0])))
    np.testing.assert_allclose(np.asarray(y), ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(bn.running_mean), tb.running_mean.numpy(), rtol=1e-5,
                               atol=1e-6)
    assert int(bn.num_batches_tracked) == int(tb.num_batches_tracked) == 2


# ------------------------------------------------------- loaded values are copies, as torch's copy_

def _donating_step():
    def step(m, o, x, y):
        m = m.zero_grad()
        loss, m = jparam.backward(lambda m, x, y: jnp.mean((m(x) - y) ** 2), m, x, y)
        m, o = o.step(m)
        return m, o, loss
    return jax.jit(step, donate_argnums=(0, 1))


@pytest.mark.parametrize("opt_cls", [optim.SGD, optim.Adam])
def test_loaded_model_and_optimizer_survive_donating_the_source(opt_cls):
    """b.load_state_dict(a.state_dict()) (models and optimizers) then a donated step of ``a``:
    torch copies into b's own tensors, so b keeps its values and continues exactly as ``a``."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(6, 2)), jnp.float32)
    jparam.manual_seed(3)
    a = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    b = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    kw = dict(lr=0.1, momentum=0.9) if opt_cls is optim.SGD else dict(lr=0.01)
    oa, ob = opt_cls(a.parameters(), **kw), opt_cls(b.parameters(), **kw)
    step = _donating_step()
    a, oa, _ = step(a, oa, x, y)  # a has optimizer state now
    b.load_state_dict(a.state_dict())
    ob.load_state_dict(oa.state_dict())
    b_named = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    b_named.load_state_dict(dict(a.named_parameters()), strict=False)  # Parameters as values
    want = {k: np.array(v) for k, v in b.state_dict().items()}
    a, oa, loss_a = step(a, oa, x, y)  # donates the arrays b was loaded from
    b, ob, loss_b = step(b, ob, x, y)
    assert float(loss_a) == float(loss_b)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(np.asarray(b.state_dict()[k]), np.asarray(v), err_msg=k)
    assert np.asarray(b_named[0].weight).tobytes() == want["0.weight"].tobytes()


def test_assign_true_keeps_the_array_as_torch_does():
    """``assign=True`` is torch's "use these tensors": no copy is made."""
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict(a.state_dict(), assign=True)
    assert b.weight._data is a.weight._data
    c = nn.Linear(3, 2)
    c.load_state_dict(a.state_dict())
    assert c.weight._data is not a.weight._data
    np.testing.assert_array_equal(np.asarray(c.weight), np.asarray(a.weight))
