"""``jparam.amp.GradScaler`` step for step against ``torch.amp.GradScaler("cpu")`` on a float16
autocast run whose first steps overflow, inside one ``jax.jit`` that traces once."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF

import jparam
import jparam.nn.functional as F
from jparam import nn, optim

STEPS = 14


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 12)).astype(np.float32)
    y = rng.integers(0, 5, size=(16,)).astype(np.int64)
    return x, y


def _torch_run(init_scale, growth_interval, clip):
    torch.manual_seed(0)
    model = tnn.Sequential(tnn.Linear(12, 32), tnn.ReLU(), tnn.Linear(32, 5))
    sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=growth_interval)
    x, y = (torch.from_numpy(a) for a in _data())
    scales, losses, params = [], [], []
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.float16):
            loss = TF.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        if clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
        losses.append(float(loss.detach()))
        params.append({k: v.detach().numpy().copy() for k, v in model.state_dict().items()})
    return sd, scales, losses, params, scaler.state_dict()


def _jparam_run(sd, init_scale, growth_interval, clip):
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 5))
    model.load_state_dict(sd)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = jparam.amp.GradScaler("cuda", init_scale=init_scale, growth_interval=growth_interval)
    x, y = (jnp.asarray(a) for a in _data())
    traces = []

    def loss_fn(m, x, y):
        with jparam.autocast("cuda", dtype=jnp.float16):
            return F.cross_entropy(m(x), y)

    @jax.jit
    def step(model, opt, scaler, x, y):
        traces.append(1)
        model = model.zero_grad()
        loss, model = jparam.backward(lambda m, x, y: scaler.scale(loss_fn(m, x, y)), model, x, y)
        if clip:
            model, scaler = scaler.unscale_(opt, model)
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        model, opt, scaler = scaler.step(opt, model)
        return model, opt, scaler.update(), loss / scaler.get_scale()

    scales, losses, params = [], [], []
    for _ in range(STEPS):
        model, opt, scaler, loss = step(model, opt, scaler, x, y)
        scales.append(scaler.get_scale())
        losses.append(float(loss))
        params.append({k: np.asarray(v) for k, v in model.state_dict().items()})
    return scales, losses, params, scaler.state_dict(), len(traces)


@pytest.mark.parametrize("clip", [False, True])
def test_matches_torch_step_for_step_through_overflow(clip):
    init, interval = 2.0 ** 24, 3
    sd, t_scales, t_losses, t_params, t_sd = _torch_run(init, interval, clip)
    j_scales, j_losses, j_params, j_sd, n_traces = _jparam_run(sd, init, interval, clip)
    assert n_traces == 1                              # the scale changes, the program does not
    assert j_scales == t_scales, (j_scales, t_scales)
    assert min(t_scales) < init / 4 and max(np.diff(t_scales)) > 0   # backed off, then grew
    assert j_sd == t_sd
    np.testing.assert_allclose(j_losses, t_losses, rtol=2e-3)
    for jp, tp in zip(j_params, t_params):
        for k in tp:
            np.testing.assert_allclose(jp[k], tp[k], rtol=2e-3, atol=2e-3, err_msg=k)
    # the skipped steps really were skipped: the first ones left the weights untouched
    assert all(np.array_equal(j_params[0][k], sd[k]) for k in sd)
    assert not all(np.array_equal(j_params[-1][k], sd[k]) for k in sd)


def test_skipped_step_keeps_optimizer_state_and_clears_grads():
    model = nn.Linear(3, 2)
    opt = optim.Adam(model.parameters(), lr=0.1)
    scaler = jparam.amp.GradScaler(init_scale=4.0)
    x = jnp.ones((2, 3))
    _, good = jparam.backward(lambda m: scaler.scale(m(x).sum()), model)
    model1, opt1, s1 = scaler.step(opt, good)
    assert not np.array_equal(np.asarray(model1.weight.data), np.asarray(model.weight.data))
    _, bad = jparam.backward(lambda m: scaler.scale(m(x).sum() * jnp.nan), model1)
    model2, opt2, s2 = s1.update().step(opt1, bad)
    np.testing.assert_array_equal(np.asarray(model2.weight.data), np.asarray(model1.weight.data))
    assert model2.weight.grad is None and model2.bias.grad is None
    for a, b in zip(jax.tree_util.tree_leaves(opt2), jax.tree_util.tree_leaves(opt1)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert s2.update().get_scale() == 2.0 and s1.update().get_scale() == 4.0


def test_unscale_divides_grads_and_is_pure():
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    scaler = jparam.amp.GradScaler(init_scale=8.0)
    _, scaled = jparam.backward(lambda m: scaler.scale(m(jnp.ones((1, 3))).sum()), model)
    unscaled, s = scaler.unscale_(opt, scaled)
    np.testing.assert_allclose(np.asarray(unscaled.weight.grad), np.ones((2, 3)))
    np.testing.assert_allclose(np.asarray(scaled.weight.grad), 8 * np.ones((2, 3)))   # untouched
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt, unscaled)
    with pytest.raises(RuntimeError, match="no inf checks"):
        scaler.update()


def test_two_scalers_and_two_models_in_one_jitted_step():
    def make(seed):
        jparam.manual_seed(seed)
        m = nn.Linear(3, 1)
        return m, optim.SGD(m.parameters(), lr=0.1), jparam.amp.GradScaler(init_scale=2.0 ** 10)

    (m1, o1, s1), (m2, o2, s2) = make(0), make(1)

    @jax.jit
    def step(a, b, x):
        out = []
        for (m, o, s), bad in ((a, False), (b, True)):
            _, m = jparam.backward(lambda m: s.scale(m(x).sum() * (jnp.inf if bad else 1.0)), m)
            m, o, s = s.step(o, m)
            out.append((m, o, s.update()))
        return out

    (n1, _, t1), (n2, _, t2) = step((m1, o1, s1), (m2, o2, s2), jnp.ones((2, 3)))
    assert t1.get_scale() == 2.0 ** 10 and t2.get_scale() == 2.0 ** 9
    assert not np.array_equal(np.asarray(n1.weight.data), np.asarray(m1.weight.data))
    np.testing.assert_array_equal(np.asarray(n2.weight.data), np.asarray(m2.weight.data))


def test_state_dict_round_trips_with_torch():
    t = torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=7)
    s = jparam.amp.GradScaler()
    s.load_state_dict(t.state_dict())
    assert s.state_dict() == t.state_dict()
    t2 = torch.amp.GradScaler("cpu")
    t2.load_state_dict(s.state_dict())
    assert t2.get_scale() == 512.0


def test_disabled_is_a_pass_through_and_bad_args_raise():
    s = jparam.amp.GradScaler(enabled=False)
    assert s.scale(jnp.float32(3.0)) == 3.0 and s.get_scale() == 1.0 and s.state_dict() == {}
    with pytest.raises(ValueError, match="growth_factor"):
        jparam.amp.GradScaler(growth_factor=0.5)
    with pytest.raises(ValueError, match="backoff_factor"):
        jparam.amp.GradScaler(backoff_factor=2.0)
    with pytest.raises(ValueError, match="growth_interval"):
        jparam.amp.GradScaler(growth_interval=0)
    with pytest.raises(KeyError, match="_growth_tracker"):
        jparam.amp.GradScaler().load_state_dict({"scale": 1.0, "growth_factor": 2.0,
                                                 "backoff_factor": 0.5, "growth_interval": 3})
    with pytest.raises(TypeError, match="optimizer"):
        jparam.amp.GradScaler().step(object(), nn.Linear(2, 2))
