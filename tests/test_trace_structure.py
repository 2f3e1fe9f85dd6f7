"""The traced training step carries no per-parameter bookkeeping beyond the math itself:
trace and compile time grow with what the model computes, not with jparam's plumbing
(`benchmarks/README.md`, "Time to first step"). Counted on the jaxpr, so deterministic."""
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
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


def _mlp():
    jparam.manual_seed(0)
    layers = []
    for i in range(N_LAYERS):
        layers += [nn.Linear(6, 6)] + ([nn.Tanh()] if i < N_LAYERS - 1 else [])
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


def test_sgd_step_slices_no_state_per_parameter_and_stops_no_parameter():
    model = _mlp()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    x, y = (jnp.asarray(rng.standard_normal((5, 6)), jnp.float32) for _ in range(2))
    model, opt, _ = jax.jit(_step)(model, opt, x, y)  # momentum buffers exist from here on
    counts = _count(jax.make_jaxpr(_step)(model, opt, x, y).jaxpr)
    n_params = 2 * N_LAYERS
    # the group's 4 hyperparameters come out of one vector: a slice each; the group's 16
    # momentum flags come out of one vector with one split (not a slice per parameter), and
    # go back as one shared flag (not split again)
    assert counts["slice"] == 4, counts
    assert counts["split"] == 1, counts
    assert counts["squeeze"] == 4 + n_params, counts
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
