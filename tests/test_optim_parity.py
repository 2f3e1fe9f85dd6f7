"""jparam.optim optimizers on a real model against torch.optim, step for step under jax.jit.

A small MLP is built in torch and in jparam (torch's state_dict loaded), fed the same random
batches; the loop is torch's ``zero_grad / backward / step`` (ours one jitted function) and
every parameter is compared after every step: ``max|p_jax - p_torch| / max|p_torch|`` <= 1e-5.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import torch

import jparam  # noqa: E402
from jparam import nn as jnn, optim  # noqa: E402
from jparam.optim import lr_scheduler as jls  # noqa: E402

TOL = 1e-5
STEPS = 100


class TorchMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16)
        self.fc2 = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class MLP(jnn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = jnn.Linear(8, 16)
        self.fc2 = jnn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(jnp.tanh(self.fc1(x)))


def loss_fn(m, x, y):
    return jnp.mean((m(x) - y) ** 2)


def torch_loss(m, x, y):
    return ((m(torch.tensor(x)) - torch.tensor(y)) ** 2).mean()


def pair(seed=0):
    torch.manual_seed(seed)
    tm = TorchMLP()
    jm = MLP()
    jm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return tm, jm


def batch(k):
    rng = np.random.default_rng(1000 + k)
    return rng.standard_normal((12, 8)).astype(np.float32), rng.standard_normal((12, 4)).astype(np.float32)


def make_step(traces=None, accumulate=1):
    @jax.jit
    def step(model, opt, xs, ys):
        if traces is not None:
            traces.append(1)
        model = opt.zero_grad(model)
        for i in range(accumulate):
            loss, model = jparam.backward(loss_fn, model, xs[i], ys[i])
        model, opt = opt.step(model)
        return model, opt, loss
    return step


def torch_step(tm, topt, xs, ys):
    topt.zero_grad()
    for x, y in zip(xs, ys):
        torch_loss(tm, x, y).backward()
    topt.step()


def rel_params(jm, tm):
    worst = 0.0
    jsd = jm.state_dict()
    for k, v in tm.state_dict().items():
        a, b = np.asarray(jsd[k], np.float64), v.detach().numpy().astype(np.float64)
        worst = max(worst, float(np.max(np.abs(a - b)) / np.max(np.abs(b))))
    return worst


MATRIX = [
    ("SGD", {"lr": 1e-2, "momentum": 0.9, "dampening": 0.5}),
    ("SGD", {"lr": 1e-2, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("Adam", {}), ("Adam", {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True}),
    ("Adam", {"weight_decay": 0.1, "maximize": True}),
    ("AdamW", {}), ("AdamW", {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True}),
    ("Adamax", {}), ("Adamax", {"lr": 0.1, "weight_decay": 0.1, "maximize": True}),
    ("NAdam", {}), ("NAdam", {"weight_decay": 0.1, "momentum_decay": 6e-3, "decoupled_weight_decay": True}),
    ("RAdam", {}), ("RAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RMSprop", {}), ("RMSprop", {"lr": 1e-3, "weight_decay": 0.1, "centered": True, "momentum": 0.1}),
    ("RMSprop", {"lr": 1e-3, "maximize": True, "weight_decay": 0.1}),
    ("Adagrad", {}), ("Adagrad", {"lr": 0.1, "lr_decay": 0.5, "weight_decay": 0.1, "initial_accumulator_value": 0.1}),
    ("Adadelta", {}), ("Adadelta", {"rho": 0.95, "weight_decay": 0.9}),
]

WORST: dict = {}


@pytest.mark.parametrize("name,kw", MATRIX, ids=[f"{n}-{kw}" for n, kw in MATRIX])
def test_mlp_matches_torch(name, kw):
    tm, jm = pair()
    topt = getattr(torch.optim, name)(tm.parameters(), **kw)
    jopt = getattr(optim, name)(jm.parameters(), **kw)
    step = make_step()
    worst = 0.0
    for k in range(STEPS):
        x, y = batch(k)
        torch_step(tm, topt, [x], [y])
        jm, jopt, _ = step(jm, jopt, x[None], y[None])
        worst = max(worst, rel_params(jm, tm))
    WORST[name] = max(WORST.get(name, 0.0), worst)
    assert worst <= TOL, f"{name}{kw}: {worst:.3e}"
    assert float(np.max(np.abs(np.asarray(jm.fc1.weight) - tm.fc1.weight.detach().numpy()))) < 1.0
    # the optimizer state is torch's, key for key
    tsd, jsd = topt.state_dict(), jopt.state_dict()
    assert sorted(tsd["state"]) == sorted(jsd["state"])
    for i, entry in tsd["state"].items():
        assert list(entry) == list(jsd["state"][i]), (list(entry), list(jsd["state"][i]))
        for key, v in entry.items():
            got, ref = np.asarray(jsd["state"][i][key], np.float64), v.numpy().astype(np.float64)
            assert got.shape == ref.shape, key
            assert np.max(np.abs(got - ref)) <= 1e-4 * max(np.max(np.abs(ref)), 1e-30), key
    assert [sorted(g) for g in tsd["param_groups"]] == [sorted(g) for g in jsd["param_groups"]]


@pytest.mark.parametrize("name,kw", MATRIX, ids=[f"{n}-{kw}" for n, kw in MATRIX])
def test_step_counts_differ_within_a_group(name, kw):
    """Every other step only fc1 gets a gradient, so one group holds parameters at different
    steps (torch keeps a count per parameter); the optimizer updates the group in one batch.
    torch steps on jparam's gradients, so this compares the optimizers alone."""
    tm, jm = pair(5)
    topt = getattr(torch.optim, name)(tm.parameters(), **kw)
    jopt = getattr(optim, name)(jm.parameters(), **kw)

    def fc1_only(m, x, y):
        return jnp.mean((jnp.tanh(m.fc1(x))[:, :4] - y) ** 2)

    # opt.step clears the grads it used, so each backward starts from none
    grads = jax.jit(lambda m, x, y, full: jparam.backward(loss_fn if full else fc1_only, m, x, y)[1],
                    static_argnums=3)
    step = jax.jit(lambda m, o: o.step(m))
    for k in range(8):
        x, y = batch(k)
        jm = grads(jm, x, y, k % 2 == 1)
        jg = dict(jm.named_parameters())
        for n, p in tm.named_parameters():
            g = jg[n].grad
            p.grad = None if g is None else torch.tensor(np.asarray(g))
        topt.step()
        jm, jopt = step(jm, jopt)
        assert rel_params(jm, tm) <= TOL, (k, rel_params(jm, tm))
    tsd, jsd = topt.state_dict()["state"], jopt.state_dict()["state"]
    if "step" in tsd[0]:
        assert [float(tsd[i]["step"]) for i in range(4)] == [8.0, 8.0, 4.0, 4.0]
        assert [float(np.asarray(jsd[i]["step"])) for i in range(4)] == [8.0, 8.0, 4.0, 4.0]
    for i, entry in tsd.items():
        for key, v in entry.items():
            ref = v.numpy().astype(np.float64)
            got = np.asarray(jsd[i][key], np.float64)
            assert np.max(np.abs(got - ref)) <= 1e-4 * max(np.max(np.abs(ref)), 1e-30), (i, key)


def test_param_groups_frozen_and_accumulation():
    """Per-group lr, a frozen bias (no decay, no state), two backward calls per step."""
    tm, jm = pair(1)
    tm.fc1.bias.requires_grad_(False)
    jm.fc1.bias.requires_grad_(False)
    kw = dict(lr=1e-3, weight_decay=0.1)
    topt = torch.optim.AdamW([{"params": tm.fc1.parameters()}, {"params": tm.fc2.parameters(), "lr": 1e-2}], **kw)
    jopt = optim.AdamW([{"params": jm.fc1.parameters()}, {"params": jm.fc2.parameters(), "lr": 1e-2}], **kw)
    bias0 = np.asarray(jm.fc1.bias).copy()
    step = make_step(accumulate=2)
    for k in range(40):
        (x1, y1), (x2, y2) = batch(2 * k), batch(2 * k + 1)
        torch_step(tm, topt, [x1, x2], [y1, y2])
        jm, jopt, _ = step(jm, jopt, np.stack([x1, x2]), np.stack([y1, y2]))
        assert rel_params(jm, tm) <= TOL
    np.testing.assert_array_equal(np.asarray(jm.fc1.bias), bias0)
    assert sorted(topt.state_dict()["state"]) == sorted(jopt.state_dict()["state"]) == [0, 2, 3]


@pytest.mark.parametrize("name,kw", [("Adam", {"amsgrad": True}), ("RMSprop", {"momentum": 0.5, "centered": True}),
                                     ("NAdam", {}), ("SGD", {"lr": 0.01, "momentum": 0.9})])
def test_hyperparameter_change_does_not_recompile(name, kw):
    tm, jm = pair(2)
    topt = getattr(torch.optim, name)(tm.parameters(), **kw)
    jopt = getattr(optim, name)(jm.parameters(), **kw)
    traces = []
    step = make_step(traces)
    for k in range(30):
        lr = 1e-3 * (1 + 0.5 * np.sin(k))
        for o in (topt, jopt):
            o.param_groups[0]["lr"] = lr
            if "betas" in o.param_groups[0]:
                o.param_groups[0]["betas"] = (0.9 - 0.01 * (k % 3), 0.999)
            if name in ("RMSprop", "SGD"):
                o.param_groups[0]["momentum"] = 0.5 + 0.01 * k
        x, y = batch(k)
        torch_step(tm, topt, [x], [y])
        jm, jopt, _ = step(jm, jopt, x[None], y[None])
        assert rel_params(jm, tm) <= TOL, k
    assert len(traces) == 1, f"{len(traces)} traces"


@pytest.mark.parametrize("name,kw", [("Adam", {"amsgrad": True, "weight_decay": 0.1}), ("AdamW", {}),
                                     ("NAdam", {}), ("RAdam", {}), ("Adamax", {}),
                                     ("RMSprop", {"momentum": 0.5, "centered": True}), ("Adagrad", {"lr_decay": 0.1}),
                                     ("Adadelta", {})])
def test_state_dict_torch_layout_resume(name, kw):
    """torch -> numpy -> jparam resumes identically; jparam -> torch resumes identically."""
    tm, jm = pair(3)
    topt = getattr(torch.optim, name)(tm.parameters(), **kw)
    for k in range(20):
        x, y = batch(k)
        torch_step(tm, topt, [x], [y])
    sd = topt.state_dict()
    np_sd = {"state": {i: {k: (v.numpy() if torch.is_tensor(v) else v) for k, v in e.items()}
                       for i, e in sd["state"].items()},
             "param_groups": [dict(g) for g in sd["param_groups"]]}
    jm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    jopt = getattr(optim, name)(jm.parameters(), **kw)
    jopt.load_state_dict(np_sd)
    step = make_step()
    for k in range(20, 40):
        x, y = batch(k)
        torch_step(tm, topt, [x], [y])
        jm, jopt, _ = step(jm, jopt, x[None], y[None])
        assert rel_params(jm, tm) <= TOL, k
    # ours -> a fresh torch optimizer on a copy of the model
    tm2 = TorchMLP()
    tm2.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in jm.state_dict().items()})
    topt2 = getattr(torch.optim, name)(tm2.parameters(), **kw)
    jsd = jopt.state_dict()
    topt2.load_state_dict({"state": {i: {k: torch.tensor(np.asarray(v)) for k, v in e.items()}
                                     for i, e in jsd["state"].items()},
                           "param_groups": jsd["param_groups"]})
    for k in range(40, 55):
        x, y = batch(k)
        torch_step(tm, topt, [x], [y])
        torch_step(tm2, topt2, [x], [y])
        jm, jopt, _ = step(jm, jopt, x[None], y[None])
        assert rel_params(jm, tm2) <= TOL, k
        assert rel_params(jm, tm) <= TOL, k


def test_schedulers_drive_a_jparam_optimizer():
    """OneCycleLR per step outside jit (lr and beta1 cycle) == torch; lr_at inside jit == the same."""
    tm, jm = pair(4)
    topt = torch.optim.Adam(tm.parameters(), lr=1e-3)
    jopt = optim.Adam(jm.parameters(), lr=1e-3)
    tsch = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.05, total_steps=30)
    jsch = jls.OneCycleLR(jopt, max_lr=0.05, total_steps=30)
    traces = []
    step = make_step(traces)
    jm2, jopt2 = jm, optim.Adam(jm.parameters(), lr=1e-3)

    @jax.jit
    def step_at(model, opt, k, x, y):
        opt.param_groups[0]["lr"] = jsch.lr_at(k)[0]
        opt.param_groups[0]["betas"] = (jsch.momentum_at(k)[0], opt.param_groups[0]["betas"][1])
        model = opt.zero_grad(model)
        _, model = jparam.backward(loss_fn, model, x, y)
        return opt.step(model)

    # Compile both steps once and discard the results first: the optimizer passed back in must
    # still be the live one afterwards (the first-call case itself is checked by
    # test_scheduler_first_step_after_compile).
    x0, y0 = batch(0)
    step(jm, jopt, x0[None], y0[None])
    step_at(jm2, jopt2, jnp.int32(0), x0, y0)
    for k in range(30):
        x, y = batch(k)
        torch_step(tm, topt, [x], [y])
        tsch.step() if k < 29 else None
        jm, jopt, _ = step(jm, jopt, x[None], y[None])
        jsch.step() if k < 29 else None
        jm2, jopt2 = step_at(jm2, jopt2, jnp.int32(k), x, y)
        assert abs(jsch.get_last_lr()[0] - tsch.get_last_lr()[0]) <= 1e-12
        assert abs(float(jopt.param_groups[0]["betas"][0]) - topt.param_groups[0]["betas"][0]) <= 1e-7
        assert rel_params(jm, tm) <= TOL, k
        assert rel_params(jm2, tm) <= TOL, k
    assert len(traces) == 1 and float(jopt.param_groups[0]["lr"]) == np.float32(tsch.get_last_lr()[0])


def test_scheduler_first_step_after_compile():
    _, jm = pair(5)
    jopt = optim.SGD(jm.parameters(), lr=0.1)
    sched = jls.StepLR(jopt, step_size=1, gamma=0.5)
    x, y = batch(0)
    jm, jopt = make_step()(jm, jopt, x[None], y[None])[:2]
    sched.step()
    assert float(jopt.param_groups[0]["lr"]) == np.float32(0.05)


def test_bad_hyperparameters_raise_like_torch():
    _, jm = pair()
    for cls, kw, msg in [(optim.Adam, {"lr": -1.0}, "Invalid learning rate: -1.0"),
                         (optim.AdamW, {"betas": (1.0, 0.9)}, "Invalid beta parameter at index 0: 1.0"),
                         (optim.RMSprop, {"alpha": -0.1}, "Invalid alpha value: -0.1"),
                         (optim.Adadelta, {"rho": 1.5}, "Invalid rho value: 1.5"),
                         (optim.Adagrad, {"lr_decay": -1}, "Invalid lr_decay value: -1"),
                         (optim.NAdam, {"momentum_decay": -1}, "Invalid momentum_decay value: -1")]:
        with pytest.raises(ValueError, match=msg.replace("(", r"\(")):
            cls(jm.parameters(), **kw)


if __name__ == "__main__":  # print the worst relative difference per optimizer on the MLP
    for name, kw in MATRIX:
        test_mlp_matches_torch(name, kw)
    for k, v in WORST.items():
        print(f"{k:10s} {v:.2e}")
