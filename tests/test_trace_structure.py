"""The traced training step carries no per-parameter bookkeeping beyond the math itself:
trace and compile time grow with what the model computes, not with jparam's plumbing
(`benchmarks/README.md`, "Time to first step"). Checked as a property that survives
refactors: the step's jaxpr grows with depth no faster than the same step written in pure
JAX with optax (equation counts at two depths), for SGD with momentum and for Adam."""
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jparam
from jparam import nn, optim
from jparam.nn import functional as F

N_LAYERS = 8  # 16 parameters


def _count(jaxpr, out=None):
    out = Counter() if out is None else out
    for e in jaxpr.eqns:
        out[e.primitive.name] += 1
        for v in e.params.values():
            for sub in v if isinstance(v, (list, tuple)) else [v]:
                if hasattr(sub, "eqns"):
                    _count(sub, out)
                elif hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    _count(sub.jaxpr, out)
    return out


def _mlp(n_layers=N_LAYERS):
    jparam.manual_seed(0)
    layers = []
    for i in range(n_layers):
        layers += [nn.Linear(6, 6)] + ([nn.Tanh()] if i < n_layers - 1 else [])
    return nn.Sequential(*layers)


def _train_step(loss_fn):
    """The README's loop: zero_grad, backward, step."""

    def step(model, opt, x, y):
        model = model.zero_grad()
        loss, model = jparam.backward(loss_fn, model, x, y)
        model, opt = opt.step(model)
        return model, opt, loss

    return step


_step = _train_step(lambda m, x, y: F.mse_loss(m(x), y))


def _jparam_eqns(n_layers, kind):
    model = _mlp(n_layers)
    opt = (optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if kind == "sgd"
           else optim.Adam(model.parameters(), lr=1e-3))
    x = y = jnp.ones((5, 6))
    model, opt, _ = jax.jit(_step)(model, opt, x, y)  # momentum buffers, step counts exist from here on
    return _count(jax.make_jaxpr(_step)(model, opt, x, y).jaxpr)


def _pure_jax_eqns(n_layers, kind):
    rng = np.random.default_rng(0)
    params = [{"w": jnp.asarray(rng.standard_normal((6, 6)), jnp.float32), "b": jnp.zeros(6)}
              for _ in range(n_layers)]
    tx = optax.sgd(0.05, momentum=0.9) if kind == "sgd" else optax.adam(1e-3)

    def loss_fn(params, x, y):
        for i, p in enumerate(params):
            x = x @ p["w"].T + p["b"]
            x = jnp.tanh(x) if i < n_layers - 1 else x
        return jnp.mean((x - y) ** 2)

    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    x = y = jnp.ones((5, 6))
    return _count(jax.make_jaxpr(step)(params, tx.init(params), x, y).jaxpr)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_step_grows_with_depth_no_faster_than_pure_jax_with_optax(kind):
    lo, hi = 4, 8
    ours = sum(_jparam_eqns(hi, kind).values()) - sum(_jparam_eqns(lo, kind).values())
    theirs = sum(_pure_jax_eqns(hi, kind).values()) - sum(_pure_jax_eqns(lo, kind).values())
    # per added Linear layer (2 parameters): no more equations than pure JAX + optax needs.
    # Adam may take 5 % more: torch keeps a step count per parameter, so each parameter reads
    # its bias corrections from the group's coefficient vectors (a squeeze each, no kernel)
    # where optax shares one count
    slack = 1.0 if kind == "sgd" else 1.05
    assert ours <= slack * theirs, (kind, ours / (hi - lo), theirs / (hi - lo))


def test_trainable_parameters_are_not_stopped():
    counts = _jparam_eqns(N_LAYERS, "sgd")
    # the trainable parameters are the differentiated inputs: none is wrapped in stop_gradient
    assert counts["stop_gradient"] == 0, counts


def test_only_non_trainable_leaves_are_stopped_and_the_step_matches_torch():
    model = _mlp()
    model[0].weight.requires_grad_(False)
    model.register_buffer("scale", jnp.asarray(1.5))
    opt = optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    t = torch.nn.Sequential(*[torch.nn.Linear(6, 6) if i % 2 == 0 else torch.nn.Tanh()
                              for i in range(2 * N_LAYERS - 1)])
    t.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in model.state_dict().items()
                       if k != "scale"})
    t[0].weight.requires_grad_(False)
    topt = torch.optim.SGD([p for p in t.parameters() if p.requires_grad], lr=0.05, momentum=0.9)

    step = _train_step(lambda m, x, y: F.mse_loss(m(x) * m.scale, y))
    counts = _count(jax.make_jaxpr(step)(model, opt, jnp.zeros((5, 6)), jnp.zeros((5, 6))).jaxpr)
    assert counts["stop_gradient"] == 2, counts  # the frozen weight and the buffer
    rng = np.random.default_rng(1)
    jstep = jax.jit(step)
    for _ in range(3):
        x, y = (rng.standard_normal((5, 6)).astype(np.float32) for _ in range(2))
        model, opt, loss = jstep(model, opt, jnp.asarray(x), jnp.asarray(y))
        topt.zero_grad()
        tloss = torch.nn.functional.mse_loss(t(torch.tensor(x)) * 1.5, torch.tensor(y))
        tloss.backward()
        topt.step()
        np.testing.assert_allclose(float(loss), tloss.item(), rtol=1e-5)
    for (name, p), (tname, tp) in zip(model.named_parameters(), t.named_parameters()):
        assert name == tname
        np.testing.assert_allclose(np.asarray(p), tp.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
