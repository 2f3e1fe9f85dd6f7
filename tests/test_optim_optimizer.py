"""Optimizer base + SGD and clip_grad_norm_ against torch.optim: 50-step parity for every SGD
option, param groups under jit, grad-None skipping, ties, clipping, errors."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jparam
from jparam import nn as jnn
from jparam import optim
from jparam.nn.utils import clip_grad_norm_
from _core_models import B, V, assert_close, classes, pair, rand_idx, randn, to_np

tnn = torch.nn


def _xy(step, n=8):
    return randn(n, 4, seed=1000 + step), randn(n, 3, seed=2000 + step)


def _torch_step(tm, topt, x, y, clip=None):
    topt.zero_grad()
    loss = ((tm(torch.tensor(x)) - torch.tensor(y)) ** 2).mean()
    loss.backward()
    norm = None
    if clip is not None:
        norm = torch.nn.utils.clip_grad_norm_(tm.parameters(), clip)
    topt.step()
    return loss.detach(), norm


def _make_jit_step(clip=None):
    traces = []

    @jax.jit
    def train_step(model, opt, x, y):
        traces.append(1)
        model = model.zero_grad()
        loss, model = jparam.backward(lambda m, x, y: jnp.mean((m(x) - y) ** 2), model, x, y)
        norm = clip_grad_norm_(model.parameters(), clip) if clip is not None else None
        model, opt = opt.step(model)
        return model, opt, loss, norm

    return train_step, traces


def _assert_params_close(jm, tm, rtol=1e-5, atol=1e-6, what=""):
    for (n, tp), (jn, jp) in zip(tm.named_parameters(), jm.named_parameters()):
        assert n == jn
        assert_close(jp, tp, rtol=rtol, atol=atol, what=f"{what} {n}")


SGD_CONFIGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, weight_decay=0.5),
    dict(lr=1e-2, momentum=0.9),
    dict(lr=1e-2, momentum=0.9, dampening=0.5),
    dict(lr=1e-2, momentum=0.9, nesterov=True),
    dict(lr=1e-2, momentum=0.9, nesterov=True, weight_decay=0.1),
    dict(lr=1e-2, momentum=0.9, weight_decay=0.1),
    dict(lr=1e-2, weight_decay=0.1, maximize=True),
    # gradient ascent on an MSE with momentum diverges at lr=1e-2 (chaotic float noise): 1e-3
    dict(lr=1e-3, momentum=0.9, dampening=0.3, weight_decay=0.05, maximize=True),
]


@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_sgd_50_steps_matches_torch(cfg):
    tm, jm = pair("MLP", seed=11)
    topt = torch.optim.SGD(tm.parameters(), **cfg)
    jopt = optim.SGD(jm.parameters(), **cfg)
    train_step, traces = _make_jit_step()
    for step in range(50):
        x, y = _xy(step)
        tl, _ = _torch_step(tm, topt, x, y)
        jm, jopt, jl, _ = train_step(jm, jopt, jnp.asarray(x), jnp.asarray(y))
        assert_close(jl, tl, rtol=1e-5, atol=1e-6, what=f"loss step {step}")
    assert len(traces) == 1
    _assert_params_close(jm, tm)
    # grads consumed by step are cleared, like a set_to_none zero_grad before the next backward
    assert all(p.grad is None for p in jm.parameters())
    # optimizer state in torch's names
    if cfg.get("momentum", 0):
        tsd, jsd = topt.state_dict(), jopt.state_dict()
        assert sorted(jsd["state"]) == sorted(tsd["state"])
        for i, st in tsd["state"].items():
            assert_close(jsd["state"][i]["momentum_buffer"], st["momentum_buffer"], rtol=1e-5,
                         atol=1e-6, what=f"momentum_buffer {i}")
        assert [g["params"] for g in jsd["param_groups"]] == [g["params"] for g in tsd["param_groups"]]


def test_sgd_eager_matches_torch():
    tm, jm = pair("MLP", seed=12)
    cfg = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)
    topt = torch.optim.SGD(tm.parameters(), **cfg)
    jopt = optim.SGD(jm.parameters(), **cfg)
    for step in range(10):
        x, y = _xy(step)
        _torch_step(tm, topt, x, y)
        jm = jm.zero_grad()
        _, jm = jparam.backward(lambda m, x, y: jnp.mean((m(x) - y) ** 2), jm, jnp.asarray(x), jnp.asarray(y))
        jm, jopt = jopt.step(jm)
    _assert_params_close(jm, tm)


def test_param_groups_under_jit_match_torch():
    tm, jm = pair("MLP", seed=13)
    topt = torch.optim.SGD([{"params": tm.base.parameters()},
                            {"params": tm.head.parameters(), "lr": 1e-3}], lr=1e-2, momentum=0.9)
    jopt = optim.SGD([{"params": jm.base.parameters()},
                      {"params": jm.head.parameters(), "lr": 1e-3}], lr=1e-2, momentum=0.9)
    assert len(jopt.param_groups) == 2
    assert float(jopt.param_groups[0]["lr"]) == pytest.approx(1e-2)
    assert float(jopt.param_groups[1]["lr"]) == pytest.approx(1e-3)
    assert float(jopt.param_groups[1]["momentum"]) == pytest.approx(0.9)
    assert [len(g["params"]) for g in jopt.param_groups] == [len(g["params"]) for g in topt.param_groups]
    train_step, traces = _make_jit_step()
    for step in range(20):
        x, y = _xy(step)
        _torch_step(tm, topt, x, y)
        jm, jopt, _, _ = train_step(jm, jopt, jnp.asarray(x), jnp.asarray(y))
    assert len(traces) == 1
    _assert_params_close(jm, tm)
    # changing one group's lr between jitted steps: no recompile, follows torch
    jopt.param_groups[1]["lr"] = 0.5
    topt.param_groups[1]["lr"] = 0.5
    for step in range(20, 23):
        x, y = _xy(step)
        _torch_step(tm, topt, x, y)
        jm, jopt, _, _ = train_step(jm, jopt, jnp.asarray(x), jnp.asarray(y))
    assert len(traces) == 1
    _assert_params_close(jm, tm)
    # state_dict group layout like torch
    jsd, tsd = jopt.state_dict(), topt.state_dict()
    assert [g["params"] for g in jsd["param_groups"]] == [g["params"] for g in tsd["param_groups"]]
    assert [g["lr"] for g in jsd["param_groups"]] == pytest.approx([g["lr"] for g in tsd["param_groups"]])


def test_param_with_grad_none_is_skipped():
    """A parameter whose grad is None gets no decay, no momentum, no step (torch semantics)."""
    tm, jm = pair("MLP", seed=14)
    cfg = dict(lr=0.1, momentum=0.9, weight_decay=0.1)
    topt = torch.optim.SGD(tm.parameters(), **cfg)
    jopt = optim.SGD(jm.parameters(), **cfg)
    for step in range(4):
        x, y = _xy(step)
        topt.zero_grad()
        ((tm(torch.tensor(x)) - torch.tensor(y)) ** 2).mean().backward()
        jm = jm.zero_grad()
        _, jm = jparam.backward(lambda m, x, y: jnp.mean((m(x) - y) ** 2), jm, jnp.asarray(x), jnp.asarray(y))
        if step in (1, 2):  # the head's grads are dropped on these steps
            tm.head.weight.grad = None
            jm.head.weight.grad = None
        topt.step()
        jm, jopt = jopt.step(jm)
        _assert_params_close(jm, tm, what=f"step {step}")
    tsd, jsd = topt.state_dict(), jopt.state_dict()
    for i, st in tsd["state"].items():
        assert_close(jsd["state"][i]["momentum_buffer"], st["momentum_buffer"], what=str(i))


def test_param_never_given_a_grad_has_no_state():
    tm, jm = pair("MLP", seed=15)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    jopt = optim.SGD(jm.parameters(), lr=0.1, momentum=0.9)
    x, y = _xy(0)
    topt.zero_grad()
    ((tm(torch.tensor(x)) - torch.tensor(y)) ** 2).mean().backward()
    tm.head.bias.grad = None
    topt.step()
    jm = jm.zero_grad()
    _, jm = jparam.backward(lambda m, x, y: jnp.mean((m(x) - y) ** 2), jm, jnp.asarray(x), jnp.asarray(y))
    jm.head.bias.grad = None
    before = np.asarray(jm.head.bias.data).copy()
    jm, jopt = jopt.step(jm)
    np.testing.assert_array_equal(np.asarray(jm.head.bias.data), before)
    _assert_params_close(jm, tm)
    tsd, jsd = topt.state_dict(), jopt.state_dict()
    assert sorted(jsd["state"]) == sorted(tsd["state"])  # head.bias (index 5) has no state


class _TUnused(tnn.Module):
    def __init__(self):
        super().__init__()
        self.fc = tnn.Linear(4, 3)
        self.unused = tnn.Parameter(torch.ones(3))

    def forward(self, x):
        return self.fc(x)


class _JUnused(jnn.Module):
    def __init__(self):
        super().__init__()
        self.fc = jnn.Linear(4, 3)
        self.unused = jnn.Parameter(jnp.ones(3))

    def forward(self, x):
        return self.fc(x)


def test_unused_parameter_is_not_decayed():
    tm, jm = _TUnused(), _JUnused()
    jm.load_state_dict(tm.state_dict())
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, weight_decay=0.5)
    jopt = optim.SGD(jm.parameters(), lr=0.1, weight_decay=0.5)
    x, y = _xy(0)
    _torch_step(tm, topt, x, y)
    assert tm.unused.grad is None
    _, jm = jparam.backward(lambda m, x, y: jnp.mean((m(x) - y) ** 2), jm, jnp.asarray(x), jnp.asarray(y))
    jm, jopt = jopt.step(jm)
    assert_close(jm.fc.weight, tm.fc.weight)
    assert_close(jm.unused, tm.unused)  # torch: still ones


def test_frozen_parameter_untouched_by_weight_decay_and_momentum():
    tm, jm = pair("MLP", seed=16)
    tm.base[0].weight.requires_grad_(False)
    jm.base[0].weight.requires_grad_(False)
    cfg = dict(lr=0.1, momentum=0.9, weight_decay=0.3)
    topt = torch.optim.SGD(tm.parameters(), **cfg)
    jopt = optim.SGD(jm.parameters(), **cfg)
    w0 = np.asarray(jm.base[0].weight.data).copy()
    train_step, _ = _make_jit_step()
    for step in range(5):
        x, y = _xy(step)
        _torch_step(tm, topt, x, y)
        jm, jopt, _, _ = train_step(jm, jopt, jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_array_equal(np.asarray(jm.base[0].weight.data), w0)
    _assert_params_close(jm, tm)


def test_tied_parameter_updated_once_and_stays_tied():
    tm, jm = pair(seed=17)
    cfg = dict(lr=0.05, momentum=0.9, weight_decay=0.1)
    topt = torch.optim.SGD(tm.parameters(), **cfg)
    jopt = optim.SGD(jm.parameters(), **cfg)
    assert sum(len(g["params"]) for g in jopt.param_groups) == len(list(tm.parameters()))

    @jax.jit
    def step(m, o, idx, r):
        m = m.zero_grad()
        loss, m = jparam.backward(lambda m, i: jnp.mean((m(i)[0] - r) ** 2) + jnp.mean(m(i)[1] ** 2),
                                  m, idx)
        m, o = o.step(m)
        return m, o

    for s in range(5):
        idx = rand_idx(60 + s)
        r = randn(B, V, seed=70 + s)
        topt.zero_grad()
        ti = torch.tensor(idx)
        (((tm(ti)[0] - torch.tensor(r)) ** 2).mean() + (tm(ti)[1] ** 2).mean()).backward()
        topt.step()
        jm, jopt = step(jm, jopt, jnp.asarray(idx), jnp.asarray(r))
        assert jm.head.weight is jm.emb.weight
    _assert_params_close(jm, tm, rtol=1e-4, atol=1e-5)
    assert_close(jm.head.weight, tm.head.weight, rtol=1e-4, atol=1e-5)


def test_gradient_accumulation_then_clip_then_step_matches_torch():
    tm, jm = pair("MLP", seed=18)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.5)
    jopt = optim.SGD(jm.parameters(), lr=0.1, momentum=0.5)

    @jax.jit
    def step(m, o, x1, y1, x2, y2):
        m = m.zero_grad()
        f = lambda m, x, y: jnp.mean((m(x) - y) ** 2) * 10
        _, m = jparam.backward(f, m, x1, y1)
        _, m = jparam.backward(f, m, x2, y2)
        norm = clip_grad_norm_(m.parameters(), 0.5)
        m, o = o.step(m)
        return m, o, norm

    for s in range(5):
        (x1, y1), (x2, y2) = _xy(2 * s), _xy(2 * s + 1)
        topt.zero_grad()
        for x, y in ((x1, y1), (x2, y2)):
            (((tm(torch.tensor(x)) - torch.tensor(y)) ** 2).mean() * 10).backward()
        tn = torch.nn.utils.clip_grad_norm_(tm.parameters(), 0.5)
        topt.step()
        jm, jopt, jn = step(jm, jopt, *map(jnp.asarray, (x1, y1, x2, y2)))
        assert_close(jn, tn, rtol=1e-5)
        assert float(jn) > 0.5  # clipping was active
    _assert_params_close(jm, tm)


def test_clip_grad_norm_exact_torch_value_inside_jit():
    tp = [tnn.Parameter(torch.zeros(3)), tnn.Parameter(torch.zeros(3))]
    tp[0].grad = torch.tensor([3.0, 0.0, 0.0])
    tp[1].grad = torch.tensor([0.0, 4.0, 0.0])
    tn = torch.nn.utils.clip_grad_norm_(tp, 1.0)

    class J(jnn.Module):
        def __init__(self):
            super().__init__()
            self.a = jnn.Parameter(jnp.zeros(3))
            self.b = jnn.Parameter(jnp.zeros(3))

    m = J()
    _, m = jparam.backward(lambda m: jnp.dot(m.a, jnp.array([3.0, 0, 0])) +
                           jnp.dot(m.b, jnp.array([0, 4.0, 0])), m)

    @jax.jit
    def clip(m):
        n = clip_grad_norm_(m.parameters(), 1.0)
        return m, n

    m2, jn = clip(m)
    assert float(jn) == float(tn) == 5.0  # the pre-clip norm
    np.testing.assert_array_equal(np.asarray(m2.a.grad), to_np(tp[0].grad))
    np.testing.assert_array_equal(np.asarray(m2.b.grad), to_np(tp[1].grad))
    # torch's 1e-6 in the denominator: one float32 ulp-step below 0.6 (optax's clip gives 0.6)
    assert float(m2.a.grad[0]) == pytest.approx(0.59999988, abs=6e-8)
    assert np.float32(m2.a.grad[0]) < np.float32(0.6)
    # the input model's grads are untouched by the jitted clip
    assert float(m.a.grad[0]) == 3.0
    # max_norm above the norm: no change (coef capped at 1)
    m3, n3 = jax.jit(lambda m: (m, clip_grad_norm_(m.parameters(), 10.0)))(m)
    np.testing.assert_array_equal(np.asarray(m3.b.grad), np.array([0, 4.0, 0], np.float32))
    # inf-norm and 1-norm like torch
    for nt in (1.0, float("inf")):
        tq = [tnn.Parameter(torch.zeros(3)), tnn.Parameter(torch.zeros(3))]
        tq[0].grad = torch.tensor([3.0, -1.0, 0.0])
        tq[1].grad = torch.tensor([0.0, 4.0, -2.0])
        tnn_ = torch.nn.utils.clip_grad_norm_(tq, 1.0, norm_type=nt)
        _, mq = jparam.backward(lambda m: jnp.dot(m.a, jnp.array([3.0, -1.0, 0])) +
                                jnp.dot(m.b, jnp.array([0, 4.0, -2.0])), J())
        jq = jax.jit(lambda m: (m, clip_grad_norm_(m.parameters(), 1.0, norm_type=nt)))(mq)
        assert_close(jq[1], tnn_)
        assert_close(jq[0].a.grad, tq[0].grad)
        assert_close(jq[0].b.grad, tq[1].grad)


def test_optimizer_errors_like_torch():
    jm = classes("jparam")["MLP"]()
    tm = classes("torch")["MLP"]()
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        torch.optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        optim.SGD(iter([]), lr=0.1)
    with pytest.raises(TypeError):
        torch.optim.SGD(tm.head.weight, lr=0.1)
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(jm.head.weight, lr=0.1)
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(jnp.ones(3), lr=0.1)
    msg = "some parameters appear in more than one parameter group"
    with pytest.raises(ValueError, match=msg):
        torch.optim.SGD([{"params": tm.base.parameters()}, {"params": [tm.base[0].weight]}], lr=0.1)
    with pytest.raises(ValueError, match=msg):
        optim.SGD([{"params": jm.base.parameters()}, {"params": [jm.base[0].weight]}], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.SGD(jm.parameters(), lr=-1.0)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(jm.parameters(), lr=0.1, nesterov=True)
    opt = optim.SGD(jm.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=msg):
        opt.add_param_group({"params": [jm.head.bias]})
    with pytest.raises(TypeError):
        optim.SGD([jnp.ones(3)], lr=0.1)


def test_add_param_group_then_step():
    tm, jm = pair("MLP", seed=19)
    topt = torch.optim.SGD(tm.base.parameters(), lr=0.05, momentum=0.9)
    jopt = optim.SGD(jm.base.parameters(), lr=0.05, momentum=0.9)
    topt.add_param_group({"params": tm.head.parameters(), "lr": 0.2})
    jopt.add_param_group({"params": jm.head.parameters(), "lr": 0.2})
    train_step, _ = _make_jit_step()
    for step in range(5):
        x, y = _xy(step)
        _torch_step(tm, topt, x, y)
        jm, jopt, _, _ = train_step(jm, jopt, jnp.asarray(x), jnp.asarray(y))
    _assert_params_close(jm, tm)


def test_optimizer_for_part_of_model_leaves_rest_alone():
    tm, jm = pair("MLP", seed=20)
    topt = torch.optim.SGD(tm.head.parameters(), lr=0.1)
    jopt = optim.SGD(jm.head.parameters(), lr=0.1)
    b0 = np.asarray(jm.base[0].weight.data).copy()
    train_step, _ = _make_jit_step()
    for step in range(3):
        x, y = _xy(step)
        _torch_step(tm, topt, x, y)
        jm, jopt, _, _ = train_step(jm, jopt, jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_array_equal(np.asarray(jm.base[0].weight.data), b0)
    _assert_params_close(jm, tm)


def test_optimizer_state_dict_interop_with_torch():
    tm, jm = pair("MLP", seed=21)
    cfg = dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)
    topt = torch.optim.SGD(tm.parameters(), **cfg)
    jopt = optim.SGD(jm.parameters(), **cfg)
    assert jopt.state_dict()["state"] == topt.state_dict()["state"] == {}  # nothing before a step
    for step in range(3):
        x, y = _xy(step)
        _torch_step(tm, topt, x, y)
    # load torch's model and optimizer state into a fresh jparam pair, continue both
    jm.load_state_dict(tm.state_dict())
    jopt.load_state_dict(topt.state_dict())
    jsd, tsd = jopt.state_dict(), topt.state_dict()
    assert sorted(jsd["state"]) == sorted(tsd["state"])
    for i in tsd["state"]:
        assert_close(jsd["state"][i]["momentum_buffer"], tsd["state"][i]["momentum_buffer"])
    for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"):
        assert jsd["param_groups"][0][k] == pytest.approx(tsd["param_groups"][0][k]), k
    train_step, _ = _make_jit_step()
    for step in range(3, 8):
        x, y = _xy(step)
        _torch_step(tm, topt, x, y)
        jm, jopt, _, _ = train_step(jm, jopt, jnp.asarray(x), jnp.asarray(y))
    _assert_params_close(jm, tm)
    # and back into torch
    topt2 = torch.optim.SGD(tm.parameters(), **cfg)
    topt2.load_state_dict({"state": {i: {k: torch.from_numpy(np.array(v)) for k, v in s.items()}
                                     for i, s in jopt.state_dict()["state"].items()},
                           "param_groups": jopt.state_dict()["param_groups"]})
    for i, s in topt.state_dict()["state"].items():
        assert_close(topt2.state_dict()["state"][i]["momentum_buffer"], s["momentum_buffer"], rtol=1e-5)


@pytest.mark.parametrize("key,value", [("momentum", 0.9), ("dampening", 0.5)])
def test_enabling_momentum_or_dampening_later_follows_torch(key, value):
    tm, jm = pair("MLP", seed=22)
    base = dict(lr=0.05, momentum=0.0 if key == "momentum" else 0.9)
    topt = torch.optim.SGD(tm.parameters(), **base)
    jopt = optim.SGD(jm.parameters(), **base)
    train_step, _ = _make_jit_step()
    for step in range(4):
        if step == 1:
            topt.param_groups[0][key] = value
            jopt.param_groups[0][key] = value
        x, y = _xy(step)
        _torch_step(tm, topt, x, y)
        jm, jopt, _, _ = train_step(jm, jopt, jnp.asarray(x), jnp.asarray(y))
    _assert_params_close(jm, tm)


class _JWrap(jnn.Module):
    def __init__(self, m):
        super().__init__()
        self.inner = m

    def forward(self, x):
        return self.inner(x)


class _TWrap(tnn.Module):
    def __init__(self, m):
        super().__init__()
        self.inner = m

    def forward(self, x):
        return self.inner(x)


def test_model_wrapped_after_optimizer_creation():
    tm, jm = pair("MLP", seed=23)
    topt = torch.optim.SGD(tm.head.parameters(), lr=0.1, momentum=0.9)
    jopt = optim.SGD(jm.head.parameters(), lr=0.1, momentum=0.9)
    tw, jw = _TWrap(tm), _JWrap(jm)
    train_step, _ = _make_jit_step()
    for step in range(3):
        x, y = _xy(step)
        _torch_step(tw, topt, x, y)
        jw, jopt, _, _ = train_step(jw, jopt, jnp.asarray(x), jnp.asarray(y))
    _assert_params_close(jw, tw)


def _one_optimizer_two_models(jit: bool):
    """torch's `Adam(list(g.parameters()) + list(d.parameters()))` ports as one optimizer over a
    ModuleDict holding both models (jparam's step updates one model)."""
    tg, g = pair("MLP", seed=24)
    td, d = pair("MLP", seed=25)
    both = jnn.ModuleDict({"g": g, "d": d})
    topt = torch.optim.SGD(list(tg.parameters()) + list(td.parameters()), lr=0.1, momentum=0.9)
    jopt = optim.SGD(list(g.parameters()) + list(d.parameters()), lr=0.1, momentum=0.9)

    def step(m, o, x, y):
        m = m.zero_grad()
        loss = lambda m, x, y: jnp.mean((m["g"](x) - y) ** 2) + jnp.mean((m["d"](x) - y) ** 2)
        _, m = jparam.backward(loss, m, x, y)
        return o.step(m)

    step = jax.jit(step) if jit else step
    for s in range(3):
        x, y = _xy(s)
        topt.zero_grad()
        for tmod in (tg, td):
            ((tmod(torch.tensor(x)) - torch.tensor(y)) ** 2).mean().backward()
        topt.step()
        both, jopt = step(both, jopt, jnp.asarray(x), jnp.asarray(y))
    _assert_params_close(both["g"], tg, what="g")
    _assert_params_close(both["d"], td, what="d")


def test_one_optimizer_over_two_models_eager():
    _one_optimizer_two_models(jit=False)


def test_one_optimizer_over_two_models_jit():
    _one_optimizer_two_models(jit=True)


def test_optimizer_over_two_separate_models_raises():
    _, g = pair("MLP", seed=24)
    _, d = pair("MLP", seed=25)
    with pytest.raises(ValueError, match="must belong to one model.*ModuleDict"):
        optim.SGD(list(g.parameters()) + list(d.parameters()), lr=0.1)


def test_layer_inserted_after_optimizer_creation_is_refused():
    """torch would update exactly the parameters it was given; jparam binds parameters by their
    position in the model, so a model changed after the optimizer was built is refused clearly
    (never silently mis-updated)."""
    js = jnn.Sequential(jnn.Linear(4, 4), jnn.Linear(4, 4))
    jopt = optim.SGD(js.parameters(), lr=0.1)
    js.insert(0, jnn.Linear(4, 4))
    x, y = randn(8, 4, seed=1), randn(8, 4, seed=2)
    _, js = jparam.backward(lambda m: jnp.mean((m(jnp.asarray(x)) - y) ** 2), js)
    with pytest.raises(ValueError, match="differ from those of the model this optimizer was built from"):
        jopt.step(js)


def test_clip_on_full_model_with_ties_and_frozen_matches_torch():
    tm, jm = pair(seed=26)
    idx = rand_idx(27)
    r = randn(B, V, seed=28)
    ((tm(torch.tensor(idx))[0] * torch.tensor(r)).sum()).backward()
    tn = torch.nn.utils.clip_grad_norm_(tm.parameters(), 0.3)
    _, jm = jparam.backward(lambda m, i: jnp.sum(m(i)[0] * r), jm, jnp.asarray(idx))
    jn = jax.jit(lambda m: (m, clip_grad_norm_(m.parameters(), 0.3)))(jm)
    assert_close(jn[1], tn, rtol=1e-5)
    for (n, tp), (_, jp) in zip(tm.named_parameters(), jn[0].named_parameters()):
        if tp.grad is None:
            assert jp.grad is None, n
        else:
            assert_close(jp.grad, tp.grad, rtol=1e-5, atol=1e-7, what=n)


def test_clip_grad_value_and_nonfinite_like_torch():
    class J(jnn.Module):
        def __init__(self):
            super().__init__()
            self.a = jnn.Parameter(jnp.zeros(4))

    g = np.array([3.0, -0.2, 0.05, -7.0], np.float32)
    tp = tnn.Parameter(torch.zeros(4))
    tp.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_value_([tp], 0.1)
    _, m = jparam.backward(lambda m: jnp.dot(m.a, jnp.asarray(g)), J())
    from jparam.nn.utils import clip_grad_value_
    clip_grad_value_(m.parameters(), 0.1)
    assert_close(m.a.grad, tp.grad)
    tq = tnn.Parameter(torch.zeros(2))
    tq.grad = torch.tensor([float("inf"), 1.0])
    with pytest.raises(RuntimeError, match="non-finite") as et:
        torch.nn.utils.clip_grad_norm_([tq], 1.0, error_if_nonfinite=True)
    _, mq = jparam.backward(lambda m: jnp.dot(m.a, jnp.array([jnp.inf, 1.0, 0.0, 0.0])), J())
    with pytest.raises(RuntimeError, match="non-finite") as ej:
        clip_grad_norm_(mq.parameters(), 1.0, error_if_nonfinite=True)
    assert str(ej.value) == str(et.value)
