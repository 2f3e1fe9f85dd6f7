"""Everyday torch idioms that ported code relies on, each checked against torch itself:
replacing children in place, ``p.data`` outside autodiff, live ``_parameters`` / ``_buffers``
/ ``_modules``, ``model.to(torch.dtype / torch.device)``, pickling, ``p.size()``,
``reset_parameters()``."""
from __future__ import annotations

import copy
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jparam
from jparam import nn as jnn

tnn = torch.nn


def _copy_weights(jm, tm):
    jm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})


def _children(m):
    return [n for n, _ in m.named_children()]


# ---------------------------------------------------------------- 1. replacing a child keeps its place
def test_sequential_setitem_keeps_place_and_forward():
    torch.manual_seed(0)
    ts = tnn.Sequential(tnn.Linear(4, 5), tnn.ReLU(), tnn.Linear(5, 2))
    js = jnn.Sequential(jnn.Linear(4, 5), jnn.ReLU(), jnn.Linear(5, 2))
    ts[0] = tnn.Linear(4, 5)
    js[0] = jnn.Linear(4, 5)
    assert _children(js) == _children(ts) == ["0", "1", "2"]
    assert list(js.state_dict()) == list(ts.state_dict())
    _copy_weights(js, ts)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(js(jnp.asarray(x))), ts(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_attribute_replace_keeps_state_dict_order():
    class T(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(1, 2, 3)
            self.bn = tnn.BatchNorm2d(2)
            self.fc = tnn.Linear(2, 2)

    class J(jnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = jnn.Conv2d(1, 2, 3)
            self.bn = jnn.BatchNorm2d(2)
            self.fc = jnn.Linear(2, 2)

    tm, jm = T(), J()
    tm.conv1 = tnn.Conv2d(1, 2, 3, bias=False)
    jm.conv1 = jnn.Conv2d(1, 2, 3, bias=False)
    assert list(jm.state_dict()) == list(tm.state_dict())
    assert [n for n, _ in jm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    # a parameter replaced by a module moves to the modules, as in torch
    tm.fc.bias = None
    jm.fc.bias = None
    assert list(jm.state_dict()) == list(tm.state_dict())


# ---------------------------------------------------------------- 2. p.data is outside autodiff
class _TData(tnn.Module):
    def __init__(self):
        super().__init__()
        self.w = tnn.Parameter(torch.randn(3))
        self.v = tnn.Parameter(torch.randn(3))

    def forward(self, x):
        return (x * self.w.data).sum() + (x * self.v).sum() ** 2


class _JData(jnn.Module):
    def __init__(self):
        super().__init__()
        self.w = jnn.Parameter(jnp.zeros(3))
        self.v = jnn.Parameter(jnp.zeros(3))

    def forward(self, x):
        return (x * self.w.data).sum() + (x * jnp.asarray(self.v)).sum() ** 2


def test_data_is_detached_like_torch():
    torch.manual_seed(1)
    tm, jm = _TData(), _JData()
    _copy_weights(jm, tm)
    x = np.random.default_rng(1).standard_normal(3).astype(np.float32)
    tm(torch.from_numpy(x)).backward()
    loss, jm = jparam.backward(lambda m, x: m(x), jm, jnp.asarray(x))
    assert tm.w.grad is None
    assert jm.w.grad is None or not np.any(np.asarray(jm.w.grad))  # torch: no gradient at all
    np.testing.assert_allclose(np.asarray(jm.v.grad), tm.v.grad.numpy(), rtol=1e-5, atol=1e-6)
    # under jit as well, and the value read through .data is the parameter's value
    step = jax.jit(lambda m, x: jparam.backward(lambda m, x: m(x), m, x))
    loss2, jm2 = step(jm.zero_grad(), jnp.asarray(x))
    np.testing.assert_allclose(float(loss2), float(loss), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jm2.v.grad), tm.v.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_parameter_in_lax_primitive_error_names_the_fix():
    p = jnn.Parameter(jnp.ones(3))
    with pytest.raises(ValueError, match=r"jnp\.asarray\(p\)"):
        jax.lax.exp(p)
    with pytest.raises(ValueError, match=r"jnp\.asarray\(p\)"):
        jax.jit(lambda q: jax.lax.exp(q))(p)
    np.testing.assert_allclose(np.asarray(jax.lax.exp(jnp.asarray(p))), np.exp(np.ones(3)), rtol=1e-6)
    g = jax.grad(lambda q: jnp.sum(jax.lax.sin(jnp.asarray(q))))(p)
    np.testing.assert_allclose(np.asarray(g.data), np.cos(np.ones(3)), rtol=1e-6)


# ---------------------------------------------------------------- 3. live _parameters/_buffers/_modules
def _surgery(m, nn_, arr):
    m.lin._parameters["extra"] = nn_.Parameter(arr(np.arange(3.0)))
    del m.lin._parameters["bias"]
    m.lin._buffers["scale"] = arr(np.full(2, 2.0))
    m._modules["head"] = nn_.Linear(2, 1)
    m._modules["lin"] = nn_.Linear(4, 2)   # replaced in place
    m._non_persistent_buffers_set.add("stat")
    return m


def _mk(nn_, arr):
    class M(nn_.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn_.Linear(4, 2)
            self.register_buffer("stat", arr(np.zeros(2)))
            self.out = nn_.Linear(2, 2)
    return M()


def test_live_member_mappings_match_torch():
    tm = _surgery(_mk(tnn, lambda a: torch.tensor(a, dtype=torch.float32)), tnn,
                  lambda a: torch.tensor(a, dtype=torch.float32))
    jm = _surgery(_mk(jnn, lambda a: jnp.asarray(a, jnp.float32)), jnn,
                  lambda a: jnp.asarray(a, jnp.float32))
    assert list(jm.state_dict()) == list(tm.state_dict())
    assert [n for n, _ in jm.named_buffers()] == [n for n, _ in tm.named_buffers()]
    assert _children(jm) == _children(tm) == ["lin", "out", "head"]
    assert set(jm._non_persistent_buffers_set) == set(tm._non_persistent_buffers_set) == {"stat"}
    assert list(jm._parameters) == list(tm._parameters) == []
    assert list(jm._modules.keys()) == list(tm._modules.keys())
    assert "extra" not in jm.lin._parameters or jm.lin._parameters["extra"] is not None
    with pytest.raises(KeyError):
        del jm._parameters["nope"]


def test_weight_norm_style_reparametrisation():
    """torch.nn.utils.weight_norm's recipe on a jparam Linear: delete the parameter, add g and
    v, recompute ``weight`` in a forward pre-hook; same output and gradients as torch's."""
    torch.manual_seed(2)
    tl = tnn.utils.weight_norm(tnn.Linear(4, 3))
    jl = jnn.Linear(4, 3)
    del jl._parameters["weight"]
    jl.weight_g = jnn.Parameter(jnp.asarray(tl.weight_g.detach().numpy()))
    jl.weight_v = jnn.Parameter(jnp.asarray(tl.weight_v.detach().numpy()))
    jl.bias.data = jnp.asarray(tl.bias.detach().numpy())

    def hook(m, args):
        v = jnp.asarray(m.weight_v)
        m.weight = jnp.asarray(m.weight_g) * v / jnp.linalg.norm(v, axis=1, keepdims=True)

    jl.register_forward_pre_hook(hook)
    assert sorted(jl.state_dict()) == sorted(tl.state_dict())
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    tl(torch.from_numpy(x)).square().sum().backward()
    _, jl = jparam.backward(lambda m, x: jnp.sum(m(x) ** 2), jl, jnp.asarray(x))
    for n in ("weight_g", "weight_v", "bias"):
        np.testing.assert_allclose(np.asarray(getattr(jl, n).grad), getattr(tl, n).grad.numpy(),
                                   rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- 6. to(torch.dtype / torch.device)
def test_to_torch_dtype_and_device():
    tm = tnn.Sequential(tnn.Linear(3, 4), tnn.BatchNorm1d(4))
    jm = jnn.Sequential(jnn.Linear(3, 4), jnn.BatchNorm1d(4))
    tm.to(torch.bfloat16)
    jm.to(torch.bfloat16)
    for (tn, tv), (jn, jv) in zip(tm.state_dict().items(), jm.state_dict().items()):
        assert tn == jn
        assert str(jnp.dtype(jv.dtype)) == str(tv.dtype).removeprefix("torch.").replace("int64", "int32") \
            or str(tv.dtype) == "torch.int64"
    assert jm[0].weight.dtype == jnp.bfloat16
    jm.to(torch.device("cpu"), torch.float32)
    assert jm[0].weight.dtype == jnp.float32
    assert jm[0].weight._data.devices() == {jax.devices("cpu")[0]}
    with pytest.raises(TypeError, match="floating point"):
        jm.to(torch.int32)


# ---------------------------------------------------------------- 7. pickle
def test_pickle_model_roundtrip_like_torch():
    jparam.manual_seed(3)
    torch.manual_seed(3)
    tm = tnn.Sequential(tnn.Linear(3, 4), tnn.BatchNorm1d(4), tnn.Dropout(0.2), tnn.Linear(4, 3))
    jm = jnn.Sequential(jnn.Linear(3, 4), jnn.BatchNorm1d(4), jnn.Dropout(0.2), jnn.Linear(4, 3))
    _copy_weights(jm, tm)
    x = np.random.default_rng(3).standard_normal((6, 3)).astype(np.float32)
    _, jm = jparam.call(jm, jnp.asarray(x))           # running stats and a key that moved
    tm(torch.from_numpy(x))
    t2 = pickle.loads(pickle.dumps(tm))
    j2 = pickle.loads(pickle.dumps(jm))
    assert list(j2.state_dict()) == list(t2.state_dict())
    for (k, a), (_, b) in zip(jm.state_dict().items(), j2.state_dict().items()):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for k, v in t2.state_dict().items():
        np.testing.assert_allclose(np.asarray(j2.state_dict()[k], np.float64), v.numpy(),
                                   rtol=1e-5, atol=1e-6)
    j2.eval()
    t2.eval()
    np.testing.assert_allclose(np.asarray(j2(jnp.asarray(x))), t2(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    # the copy is an ordinary model: owners/parents set, trainable, deep-copyable, untied from jm
    assert j2[0].weight._jp_owner() is j2[0] and j2[0].__dict__["_jp_parent"]() is j2
    j2.train()
    _, j3 = jparam.backward(lambda m, x: jnp.sum(m(x)), j2, jnp.asarray(x))
    assert j3[0].weight.grad.shape == (4, 3)
    assert copy.deepcopy(j2)[0].weight is not j2[0].weight


class _Tied(jnn.Module):
    def __init__(self):
        super().__init__()
        self.a = jnn.Linear(3, 3)
        self.b = jnn.Linear(3, 3)
        self.b.weight = self.a.weight


def test_pickle_keeps_tied_parameters_tied():
    m = pickle.loads(pickle.dumps(_Tied()))
    assert m.b.weight is m.a.weight
    assert [n for n, _ in m.named_parameters()] == ["a.weight", "a.bias", "b.bias"]


# ---------------------------------------------------------------- 9. p.size
def test_parameter_size_like_torch():
    t = tnn.Parameter(torch.zeros(2, 3, 4))
    p = jnn.Parameter(jnp.zeros((2, 3, 4)))
    assert p.size() == tuple(t.size())
    assert [p.size(d) for d in (0, 1, 2, -1, -3)] == [t.size(d) for d in (0, 1, 2, -1, -3)]
    assert p.size == t.numel() == jnp.zeros((2, 3, 4)).size  # still JAX's int
    assert p.size * 2 == 48 and isinstance(p.size, int)
    with pytest.raises(IndexError, match="Dimension out of range"):
        p.size(3)


# ---------------------------------------------------------------- 5. reset_parameters
@pytest.mark.parametrize("make", [
    lambda nn: nn.Linear(50, 40), lambda nn: nn.Conv2d(4, 6, 3), lambda nn: nn.Bilinear(5, 6, 7),
    lambda nn: nn.ConvTranspose1d(4, 6, 3), lambda nn: nn.LSTM(8, 16, 2),
    lambda nn: nn.GRUCell(8, 16), lambda nn: nn.Embedding(30, 8, padding_idx=2),
    lambda nn: nn.MultiheadAttention(16, 4, add_bias_kv=True), lambda nn: nn.PReLU(5, 0.1),
    lambda nn: nn.LayerNorm(6), lambda nn: nn.GroupNorm(2, 6), lambda nn: nn.BatchNorm1d(6),
])
def test_reset_parameters_draws_torch_distributions(make):
    """Same bounds / moments as torch's init, per parameter (many draws, loose statistics)."""
    torch.manual_seed(0)
    jparam.manual_seed(0)
    tm, jm = make(tnn), make(jnn)
    reset = "reset_parameters" if hasattr(tm, "reset_parameters") else "_reset_parameters"
    getattr(jm, reset)()
    tsd = dict(tm.named_parameters())
    jsd = dict(jm.named_parameters())
    assert list(jsd) == list(tsd)
    for k, t in tsd.items():
        t = t.detach().numpy()
        j = np.asarray(jsd[k], np.float64)
        assert j.shape == t.shape and j.dtype == np.float64
        if t.std() == 0:
            np.testing.assert_array_equal(j, t)
            continue
        assert j.std() > 0 and not np.array_equal(j, t)
        assert np.abs(j).max() <= 3 * np.abs(t).max()
        if t.size >= 200:  # enough draws for the moments to be close
            np.testing.assert_allclose(j.std(), t.std(), rtol=0.2)
            np.testing.assert_allclose(j.mean(), t.mean(), atol=0.2 * t.std())
    if isinstance(jm, jnn.Embedding):
        assert not np.any(np.asarray(jm.weight)[2])
