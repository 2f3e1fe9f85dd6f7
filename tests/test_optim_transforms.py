"""Torch-exact optax transforms (jparam.optim._transforms) against real torch.optim.

Each case feeds the same fixed sequence of random float32 gradients to torch (``p.grad = g;
opt.step()``) and to the transform (``u, s = update(g, s, p); p = p + u``) and compares the
parameter after every step. Metric: ``max|p_jax - p_torch| / max|p_torch|`` per step (a
relative error on the tensor's scale; an element-by-element ratio is meaningless where a
parameter crosses zero). Run this file as a script to print the worst value per optimizer.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import jax
import jax.numpy as jnp

import torch

from jparam.optim import transforms as T  # noqa: E402

STEPS = 120
TOL = 1e-5

# torch's own test matrix (torch/testing/_internal/common_optimizers.py), minus capturable/
# tensor-lr variants, plus torch's defaults.
MATRIX = [
    ("SGD", {}), ("SGD", {"lr": 1e-2}), ("SGD", {"weight_decay": 0.5}), ("SGD", {"momentum": 0.9}),
    ("SGD", {"weight_decay": 0.1, "maximize": True}), ("SGD", {"momentum": 0.9, "dampening": 0.5}),
    ("SGD", {"momentum": 0.9, "weight_decay": 0.1}),
    ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("Adam", {}), ("Adam", {"lr": 1e-2}), ("Adam", {"weight_decay": 0.1}),
    ("Adam", {"weight_decay": 0.1, "maximize": True}), ("Adam", {"weight_decay": 0.1, "amsgrad": True}),
    ("Adam", {"betas": (0.9, 0.99), "amsgrad": True, "eps": 0.1}),
    ("AdamW", {}), ("AdamW", {"lr": 1e-2}), ("AdamW", {"weight_decay": 0.1, "maximize": True}),
    ("AdamW", {"weight_decay": 0.1, "amsgrad": True}),
    ("Adamax", {}), ("Adamax", {"lr": 0.1}), ("Adamax", {"weight_decay": 0.1}), ("Adamax", {"maximize": True}),
    ("Adamax", {"weight_decay": 0.1, "maximize": True}),
    ("NAdam", {}), ("NAdam", {"lr": 1e-3}), ("NAdam", {"momentum_decay": 6e-3}),
    ("NAdam", {"weight_decay": 0.1}), ("NAdam", {"weight_decay": 0.1, "momentum_decay": 6e-3}),
    ("NAdam", {"weight_decay": 0.1, "momentum_decay": 6e-3, "decoupled_weight_decay": True}),
    ("NAdam", {"weight_decay": 0.1, "maximize": True}),
    ("RAdam", {}), ("RAdam", {"lr": 2e-3}), ("RAdam", {"eps": 1e-6}), ("RAdam", {"weight_decay": 0.1}),
    ("RAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {"weight_decay": 0.1, "maximize": True}),
    ("RMSprop", {}), ("RMSprop", {"lr": 1e-3}), ("RMSprop", {"weight_decay": 0.1}),
    ("RMSprop", {"maximize": True}), ("RMSprop", {"weight_decay": 0.1, "centered": True}),
    ("RMSprop", {"weight_decay": 0.1, "maximize": True}),
    ("RMSprop", {"weight_decay": 0.1, "centered": True, "momentum": 0.1}),
    ("RMSprop", {"weight_decay": 0.1, "centered": True, "momentum": 0.1, "maximize": True}),
    ("RMSprop", {"momentum": 0.9, "alpha": 0.9}),
    ("Adagrad", {}), ("Adagrad", {"weight_decay": 0.1}), ("Adagrad", {"weight_decay": 0.1, "maximize": True}),
    ("Adagrad", {"lr": 0.1}), ("Adagrad", {"initial_accumulator_value": 0.1, "weight_decay": 0.1}),
    ("Adagrad", {"lr": 0.1, "lr_decay": 0.5, "weight_decay": 0.1}),
    ("Adadelta", {}), ("Adadelta", {"lr": 0.01}), ("Adadelta", {"weight_decay": 0.1}),
    ("Adadelta", {"maximize": True}), ("Adadelta", {"weight_decay": 0.1, "maximize": True}),
    ("Adadelta", {"rho": 0.95, "weight_decay": 0.9}),
]

_FACTORY = {"SGD": T.sgd, "Adam": T.adam, "AdamW": T.adamw, "Adamax": T.adamax, "NAdam": T.nadam,
            "RAdam": T.radam, "RMSprop": T.rmsprop, "Adagrad": T.adagrad, "Adadelta": T.adadelta}
_STATIC = {"nesterov", "amsgrad", "centered", "maximize", "decoupled_weight_decay"}


def split(name, kw):
    """torch kwargs -> (numeric hyperparameters, static options) for the factory."""
    num = {k: v for k, v in kw.items() if k not in _STATIC}
    static = {k: v for k, v in kw.items() if k in _STATIC}
    if name in ("SGD", "RMSprop"):
        static["has_momentum"] = (kw.get("momentum", 0) != 0) if name == "SGD" else kw.get("momentum", 0) > 0
    return num, static


def make_tx(name, kw, num=None):
    n, static = split(name, kw)
    return _FACTORY[name](**(n if num is None else num), **static)


def torch_opt(name, kw, p0):
    tp = torch.nn.Parameter(torch.tensor(p0))
    return tp, getattr(torch.optim, name)([tp], **kw)


def data(seed, shape=(6, 5), steps=STEPS):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32), rng.standard_normal((steps,) + shape).astype(np.float32)


def torch_run(tp, opt, grads, lrs=None):
    out = []
    for k, g in enumerate(grads):
        if lrs is not None:
            opt.param_groups[0]["lr"] = float(lrs[k])
        tp.grad = torch.tensor(g)
        opt.step()
        out.append(tp.detach().numpy().copy())
    return np.stack(out)


def jax_run(tx, p, s, grads):
    def body(carry, g):
        p, s = carry
        u, s = tx.update(g, s, p)
        p = (p + u).astype(p.dtype)  # as the Optimizer base and optax.apply_updates do
        return (p, s), p
    (p, s), ps = jax.jit(lambda p, s, gs: jax.lax.scan(body, (p, s), gs))(p, s, jnp.asarray(grads))
    return np.asarray(ps), p, s


def rel(a, b):
    """Per step: max|a - b| / max|b|; returns the worst step."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ax = tuple(range(1, a.ndim))
    return float(np.max(np.max(np.abs(a - b), axis=ax) / np.max(np.abs(b), axis=ax)))


WORST: dict = {}


def _case_id(c):
    return c[0] + "-" + (",".join(f"{k}={v}" for k, v in c[1].items()) or "default")


@pytest.mark.parametrize("name,kw", MATRIX, ids=[_case_id(c) for c in MATRIX])
def test_matches_torch(name, kw):
    p0, grads = data(zlib.crc32(_case_id((name, kw)).encode()))
    tp, opt = torch_opt(name, kw, p0)
    ref = torch_run(tp, opt, grads)
    tx = make_tx(name, kw)
    ours, _, _ = jax_run(tx, jnp.asarray(p0), tx.init(jnp.asarray(p0)), grads)
    r = rel(ours, ref)
    WORST[name] = max(WORST.get(name, 0.0), r)
    assert r <= TOL, f"{name}{kw}: max relative difference {r:.3e} > {TOL}"
    assert np.max(np.abs(ref[-1] - p0)) > 1e-4, "the run must actually move the parameter"


def _traced_hps(name, kw):
    num, static = split(name, kw)
    sig = __import__("inspect").signature(_FACTORY[name])
    full = {k: v.default for k, v in sig.parameters.items() if v.kind == v.POSITIONAL_OR_KEYWORD}
    full.update(num)
    return {k: (tuple(jnp.float32(x) for x in v) if isinstance(v, tuple) else jnp.float32(v))
            for k, v in full.items()}, static


TRACED = [("SGD", {"momentum": 0.9, "dampening": 0.5, "weight_decay": 0.1}),
          ("SGD", {"momentum": 0.9, "nesterov": True}), ("Adam", {"weight_decay": 0.1, "amsgrad": True}),
          ("AdamW", {"maximize": True}), ("Adamax", {"weight_decay": 0.1}),
          ("NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}), ("RAdam", {"weight_decay": 0.1}),
          ("RMSprop", {"centered": True, "momentum": 0.1}), ("Adagrad", {"lr_decay": 0.5, "initial_accumulator_value": 0.1}),
          ("Adadelta", {"rho": 0.95})]


@pytest.mark.parametrize("name,kw", TRACED, ids=[_case_id(c) for c in TRACED])
def test_traced_hyperparameters_and_no_recompile(name, kw):
    """Hyperparameters as jit arguments: same numbers as torch; a new lr every step, one trace."""
    hps, static = _traced_hps(name, kw)
    traces = []

    @jax.jit
    def step(hps, g, s, p):
        traces.append(1)
        tx = _FACTORY[name](**hps, **static)
        u, s = tx.update(g, s, p)
        return p + u, s

    p0, grads = data(7)
    base_lr = float(hps["lr"])
    lrs = base_lr * (1.0 + 0.5 * np.cos(np.arange(STEPS) / 7.0))
    tp, opt = torch_opt(name, kw, p0)
    ref = torch_run(tp, opt, grads, lrs)
    p = jnp.asarray(p0)
    s = _FACTORY[name](**hps, **static).init(p)
    ours = []
    for k, g in enumerate(grads):
        hps = dict(hps, lr=jnp.float32(lrs[k]))
        p, s = step(hps, jnp.asarray(g), s, p)
        ours.append(np.asarray(p))
    assert len(traces) == 1, f"changing lr retraced the step {len(traces)} times"
    r = rel(np.stack(ours), ref)
    assert r <= TOL, f"{name}{kw} with traced hyperparameters: {r:.3e}"


def test_init_structure_independent_of_values():
    p = jnp.zeros((3, 2))
    for name, kw in TRACED:
        a = make_tx(name, kw).init(p)
        num, static = split(name, kw)
        num2 = {k: (tuple(x * 0.5 for x in v) if isinstance(v, tuple) else v * 0.5) for k, v in num.items()}
        num2.setdefault("lr", 0.123)
        b = _FACTORY[name](**num2, **static).init(p)
        assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b), name


ROUND = [c for c in MATRIX if c[1] in ({}, ) or "amsgrad" in c[1] or "centered" in c[1]
         or "momentum" in c[1] or "initial_accumulator_value" in c[1]]


@pytest.mark.parametrize("name,kw", ROUND, ids=[_case_id(c) for c in ROUND])
def test_torch_state_round_trip(name, kw):
    """Mid-run: torch state -> ours -> continue; and ours -> torch -> continue."""
    p0, grads = data(11, steps=60)
    tx = make_tx(name, kw)
    tp, opt = torch_opt(name, kw, p0)
    torch_run(tp, opt, grads[:30])
    # torch -> ours: resume from torch's state and parameter
    st = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in opt.state[tp].items()}
    p_mid = tp.detach().numpy().copy()
    s = tx.from_torch_state(st, jnp.asarray(p_mid))
    back = tx.to_torch_state(s)
    assert list(back) == list(st), f"keys/order {list(back)} != torch's {list(st)}"
    for k in st:
        np.testing.assert_array_equal(np.asarray(back[k]), st[k].numpy(), err_msg=k)
        assert np.asarray(back[k]).dtype == np.float32 and np.asarray(back[k]).shape == tuple(st[k].shape)
    ours, p_end, s_end = jax_run(tx, jnp.asarray(p_mid), s, grads[30:])
    ref = torch_run(tp, opt, grads[30:])
    assert rel(ours, ref) <= TOL
    # ours -> torch: a fresh torch optimizer loads our state and continues identically
    tp2, opt2 = torch_opt(name, kw, np.asarray(p_end))
    sd = opt2.state_dict()
    sd["state"] = {0: {k: torch.tensor(np.array(v)) for k, v in tx.to_torch_state(s_end).items()}}
    opt2.load_state_dict(sd)
    more = data(12, steps=20)[1]
    ref2 = torch_run(tp2, opt2, more)
    ours2, _, _ = jax_run(tx, p_end, s_end, more)
    assert rel(ours2, ref2) <= TOL


def test_empty_state_before_first_step_and_errors():
    p = jnp.ones((2,))
    assert T.adam().to_torch_state(T.adam().init(p)) == {}
    assert set(T.adagrad().to_torch_state(T.adagrad().init(p))) == {"step", "sum"}  # eager in torch
    tx = T.adam(amsgrad=True)
    with pytest.raises(KeyError, match="max_exp_avg_sq"):
        tx.from_torch_state({"step": 1.0, "exp_avg": np.zeros(2), "exp_avg_sq": np.zeros(2)}, p)
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(2,\)"):
        T.adam().from_torch_state({"step": 1.0, "exp_avg": np.zeros(3), "exp_avg_sq": np.zeros(3)}, p)


def test_pytree_params():
    """update() takes any pytree; one step count for the tree."""
    rng = np.random.default_rng(3)
    params = {"w": jnp.asarray(rng.standard_normal((3, 2)), jnp.float32), "b": jnp.zeros((2,))}
    grads = jax.tree_util.tree_map(lambda x: jnp.ones_like(x) * 0.5, params)
    tx = T.adam(1e-2, amsgrad=True)
    s = tx.init(params)
    u, s = tx.update(grads, s, params)
    single_u, _ = tx.update(grads["w"], tx.init(params["w"]), params["w"])
    np.testing.assert_array_equal(np.asarray(u["w"]), np.asarray(single_u))
    assert float(s.step) == 1.0


@pytest.mark.parametrize("name,kw", TRACED, ids=[_case_id(c) for c in TRACED])
def test_bfloat16_params_keep_state_dtype(name, kw):
    """float32 hyperparameters must not promote a bf16 parameter's state (the jit carry is stable)."""
    p0, grads = data(5, steps=8)
    p = jnp.asarray(p0, jnp.bfloat16)
    tx = make_tx(name, kw)
    s0 = tx.init(p)
    ours, p_end, s_end = jax_run(tx, p, s0, jnp.asarray(grads, jnp.bfloat16))
    same = jax.tree_util.tree_map(lambda a, b: a.dtype == b.dtype and a.shape == b.shape, s0, s_end)
    assert all(jax.tree_util.tree_leaves(same)), name
    ref, _, _ = jax_run(tx, jnp.asarray(p0), tx.init(jnp.asarray(p0)), grads)
    assert p_end.dtype == jnp.bfloat16 and rel(np.asarray(ours, np.float32), ref) < 0.05


if __name__ == "__main__":  # print the worst relative difference per optimizer
    for name, kw in MATRIX:
        test_matches_torch(name, kw)
    for k, v in WORST.items():
        print(f"{k:10s} {v:.2e}")
