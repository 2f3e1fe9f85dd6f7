"""jparam.optim.lr_scheduler against torch.optim.lr_scheduler, epoch by epoch.

Each case drives a torch scheduler (on a real torch SGD/Adam with two param groups) and ours
(on a minimal stand-in with a ``param_groups`` list) for 3*T epochs and compares
``get_last_lr()``, the groups' lr (and momentum / betas) every epoch (relative 1e-7), and the
jitted closed form ``lr_at(k)`` with a traced ``k`` (float32: within 1e-6 of the group's
largest lr).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import torch

from jparam.optim import lr_scheduler as jls  # noqa: E402

T = 10


class Stub:
    """The least a scheduler needs: ``param_groups`` (and ``defaults`` for OneCycleLR)."""

    def __init__(self, groups, defaults):
        self.param_groups = [dict(g) for g in groups]
        self.defaults = dict(defaults)


def make_pair(opt_name="SGD"):
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    if opt_name == "SGD":
        topt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1, momentum=0.9)
    else:
        topt = torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1, betas=(0.9, 0.99))
    groups = [{k: v for k, v in g.items() if k != "params"} for g in topt.param_groups]
    return topt, Stub(groups, topt.defaults)


CASES = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=3, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.3),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=T),
    "CosineAnnealingLR-eta_min": lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=1e-3),
    "LinearLR": lambda m, o: m.LinearLR(o),
    "LinearLR-warmup": lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=8),
    "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=4),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=12, power=0.9),
    "PolynomialLR-linear": lambda m, o: m.PolynomialLR(o),
    "LambdaLR": lambda m, o: m.LambdaLR(o, lambda e: 0.95 ** e),
    "LambdaLR-list": lambda m, o: m.LambdaLR(o, [lambda e: 1.0 / (e + 1), lambda e: 0.9 ** e]),
    "SequentialLR": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=4), m.CosineAnnealingLR(o, T_max=12)], milestones=[4]),
    "SequentialLR-3": lambda m, o: m.SequentialLR(
        o, [m.ConstantLR(o, factor=0.2, total_iters=3), m.ExponentialLR(o, gamma=0.8),
            m.StepLR(o, step_size=2, gamma=0.5)], milestones=[3, 9]),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=0.2, total_steps=3 * T),
    "OneCycleLR-linear-3phase": lambda m, o: m.OneCycleLR(
        o, max_lr=[0.2, 0.05], total_steps=3 * T, anneal_strategy="linear", three_phase=True),
    "OneCycleLR-pct": lambda m, o: m.OneCycleLR(o, max_lr=0.1, epochs=5, steps_per_epoch=6, pct_start=0.25,
                                                div_factor=10.0, final_div_factor=100.0),
}
ADAM_CASES = {"OneCycleLR-adam": CASES["OneCycleLR"], "StepLR-adam": CASES["StepLR"]}


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _momentum(g):
    return g["betas"][0] if "betas" in g else g["momentum"]


def _epochs(name):
    return 3 * T if name.startswith("OneCycle") else 3 * T + 1


@pytest.mark.parametrize("name", list(CASES) + list(ADAM_CASES))
def test_epoch_by_epoch(name):
    build = {**CASES, **ADAM_CASES}[name]
    topt, stub = make_pair("Adam" if name.endswith("-adam") else "SGD")
    ts, ours = build(torch.optim.lr_scheduler, topt), build(jls, stub)
    torch_lrs = [ts.get_last_lr()]
    assert ours.get_last_lr() == ts.get_last_lr()
    for epoch in range(_epochs(name) - 1):
        topt.step()
        ts.step()
        ours.step()
        torch_lrs.append(ts.get_last_lr())
        assert ours.last_epoch == ts.last_epoch
        assert ours.get_last_lr() == ts.get_last_lr(), (epoch, ours.get_last_lr(), ts.get_last_lr())
        for g, tg in zip(stub.param_groups, topt.param_groups):
            assert rel(g["lr"], tg["lr"]) <= 1e-7
            assert rel(_momentum(g), _momentum(tg)) <= 1e-7
            assert g.get("initial_lr") == tg.get("initial_lr")
    # the closed form under jit, with a traced step: one trace for all steps
    traces = []

    @jax.jit
    def lr_at(k):
        traces.append(1)
        return jnp.stack(ours.lr_at(k))

    got = np.stack([np.asarray(lr_at(jnp.int32(k))) for k in range(len(torch_lrs))])
    ref = np.asarray(torch_lrs)
    scale = np.max(np.abs(ref), axis=0)
    assert np.all(np.abs(got - ref) <= 1e-6 * scale), np.max(np.abs(got - ref) / scale)
    assert len(traces) == 1


def test_cosine_rises_past_T_max():
    topt, stub = make_pair()
    ours = jls.CosineAnnealingLR(stub, T_max=4)
    lrs = [ours.get_last_lr()[0]]
    for _ in range(8):
        ours.step()
        lrs.append(ours.get_last_lr()[0])
    assert lrs[4] < 1e-12 and lrs[6] > lrs[5] > lrs[4] and abs(lrs[8] - 0.1) < 1e-12
    assert abs(float(ours.lr_at(6)[0]) - lrs[6]) < 1e-7


def test_onecycle_past_total_steps():
    topt, stub = make_pair()
    ours = jls.OneCycleLR(stub, max_lr=0.1, total_steps=5)
    for _ in range(5):
        ours.step()
    with pytest.raises(ValueError, match="Tried to step 6 times. The specified number of total steps is 5"):
        ours.step()
    assert np.isnan(float(ours.lr_at(6)[0])) and not np.isnan(float(ours.lr_at(5)[0]))
    assert abs(float(ours.momentum_at(0)[0]) - 0.95) < 1e-7


def test_reduce_on_plateau():
    metrics = [1.0, 0.9, 0.9, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.79999, 0.7, 0.7, 0.7, 0.7, 0.7] * 2
    for kw in [dict(patience=2), dict(patience=1, cooldown=2, factor=0.5, min_lr=[0.02, 0.001]),
               dict(mode="max", patience=1, threshold=0.1, threshold_mode="abs"),
               dict(mode="min", patience=0, threshold_mode="abs", eps=0.05)]:
        topt, stub = make_pair()
        ts, ours = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw), jls.ReduceLROnPlateau(stub, **kw)
        for m in metrics:
            ts.step(m)
            ours.step(jnp.float32(m) if m == 0.7 else m)  # a 0-d array works like torch's 0-d tensor
            assert ours.get_last_lr() == ts.get_last_lr(), kw
            assert (ours.num_bad_epochs, ours.cooldown_counter, ours.last_epoch) == \
                (ts.num_bad_epochs, ts.cooldown_counter, ts.last_epoch)
    with pytest.raises(NotImplementedError, match="no closed form"):
        ours.lr_at(3)


@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR", "SequentialLR", "OneCycleLR", "LinearLR"])
def test_state_dict_both_ways(name):
    build = CASES[name]
    topt, stub = make_pair()
    ts, ours = build(torch.optim.lr_scheduler, topt), build(jls, stub)
    for _ in range(7):
        topt.step()
        ts.step()
        ours.step()
    tsd, osd = ts.state_dict(), ours.state_dict()
    strip = lambda d: {k for k in d if not k.startswith("_") or k in ("_last_lr", "_step_count")}  # noqa: E731
    assert strip(osd) == strip(tsd)
    # torch's state -> a fresh one of ours, on groups resumed from torch's -> continue
    _, stub2 = make_pair()
    ours2 = build(jls, stub2)
    for g, tg in zip(stub2.param_groups, topt.param_groups):
        g.update({k: v for k, v in tg.items() if k != "params"})
    ours2.load_state_dict(ts.state_dict())
    # ours -> a fresh torch scheduler
    topt3, _ = make_pair()
    ts3 = build(torch.optim.lr_scheduler, topt3)
    for g, og in zip(topt3.param_groups, stub.param_groups):
        g.update(og)
    ts3.load_state_dict(ours.state_dict())
    for _ in range(8):
        topt.step()
        ts.step()
        ours2.step()
        ts3.step()
        assert ours2.get_last_lr() == ts.get_last_lr()
        assert rel(ts3.get_last_lr(), ts.get_last_lr()) <= 1e-7


def test_multiplicative_lr():
    topt, stub = make_pair()
    fns = [lambda e: 0.9, lambda e: 1.0 - 0.01 * e]
    ts, ours = torch.optim.lr_scheduler.MultiplicativeLR(topt, fns), jls.MultiplicativeLR(stub, fns)
    for _ in range(3 * T):
        topt.step()
        ts.step()
        ours.step()
        assert ours.get_last_lr() == ts.get_last_lr()
    with pytest.raises(NotImplementedError, match="no closed form"):
        ours.lr_at(2)


def test_schedule_and_errors():
    topt, stub = make_pair()
    s = jls.ExponentialLR(stub, gamma=0.5)
    f = s.schedule(group=1)
    assert abs(float(f(3)) - 0.01 * 0.125) < 1e-9
    with pytest.raises(TypeError, match="not an Optimizer"):
        jls.StepLR(object(), step_size=2)
    with pytest.raises(KeyError, match="initial_lr"):
        jls.StepLR(Stub([{"lr": 0.1}], {}), step_size=2, last_epoch=3)
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        jls.LambdaLR(stub, [lambda e: 1.0])
    with pytest.raises(ValueError, match="one more than the number of milestone"):
        jls.SequentialLR(stub, [jls.StepLR(stub, 2)], milestones=[3])
    assert math.isclose(s.get_last_lr()[0], 0.1)
