"""jparam.func.functional_call against torch.func.functional_call."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jparam import nn
from jparam.func import functional_call


class TTied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Linear(4, 4, bias=False)
        self.head = torch.nn.Linear(4, 4)
        self.head.weight = self.emb.weight
        self.register_buffer("scale", torch.rand(4) + 0.5)

    def forward(self, x):
        return self.head(torch.tanh(self.emb(x))) * self.scale


class JTied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Linear(4, 4, bias=False)
        self.head = nn.Linear(4, 4)
        self.head.weight = self.emb.weight
        self.register_buffer("scale", jnp.ones(4))

    def forward(self, x):
        return self.head(jnp.tanh(self.emb(x))) * self.scale


@pytest.fixture
def pair():
    torch.manual_seed(0)
    t = TTied()
    j = JTied()
    j.load_state_dict(t.state_dict())
    return t, j


@pytest.mark.parametrize("tie_weights", [True, False])
def test_matches_torch(pair, tie_weights):
    t, j = pair
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    new = {"emb.weight": rng.standard_normal((4, 4)).astype(np.float32),
           "scale": rng.random(4).astype(np.float32)}
    ref = torch.func.functional_call(t, {k: torch.tensor(v) for k, v in new.items()}, (torch.tensor(x),),
                                     tie_weights=tie_weights).detach().numpy()
    out = functional_call(j, {k: jnp.asarray(v) for k, v in new.items()}, (jnp.asarray(x),), tie_weights=tie_weights)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-6)
    # the module itself is unchanged
    np.testing.assert_array_equal(np.asarray(j.emb.weight.data), t.emb.weight.detach().numpy())


def test_grad_through_functional_call(pair):
    t, j = pair
    x = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    params = {k: jnp.asarray(v.detach().numpy()) for k, v in t.named_parameters()}
    g = jax.grad(lambda p: jnp.sum(functional_call(j, p, (jnp.asarray(x),)) ** 2))(params)
    tp = {k: v.detach().clone().requires_grad_(True) for k, v in t.named_parameters()}
    (torch.func.functional_call(t, tp, (torch.tensor(x),)) ** 2).sum().backward()
    for k in params:
        np.testing.assert_allclose(np.asarray(g[k]), tp[k].grad.numpy(), rtol=1e-5, atol=1e-6)


def test_errors(pair):
    _, j = pair
    x = jnp.ones((1, 4))
    with pytest.raises(ValueError, match="tied"):
        functional_call(j, {"emb.weight": jnp.ones((4, 4)), "head.weight": jnp.zeros((4, 4))}, (x,))
    with pytest.raises(ValueError, match="multiple dictionaries"):
        functional_call(j, [{"scale": jnp.ones(4)}, {"scale": jnp.ones(4)}], (x,))
    with pytest.raises(RuntimeError, match="Missing key"):
        functional_call(j, {"scale": jnp.ones(4)}, (x,), strict=True)
    with pytest.raises(KeyError, match="nope"):
        functional_call(j, {"nope": jnp.ones(4)}, (x,))
