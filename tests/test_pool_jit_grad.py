"""Pooling is differentiable inside jax.jit (its window init values must be concrete)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from jparam.nn import functional as F

CASES = [("max_pool1d", (2, 3, 9), 2), ("max_pool2d", (2, 3, 6, 7), 2), ("max_pool3d", (1, 2, 4, 5, 6), 2),
         ("avg_pool1d", (2, 3, 9), 3), ("avg_pool2d", (2, 3, 6, 7), 2), ("avg_pool3d", (1, 2, 4, 5, 6), 2)]


@pytest.mark.parametrize("name,shape,k", CASES)
def test_grad_under_jit_matches_torch(name, shape, k):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    w = np.random.default_rng(1).standard_normal(getattr(TF, name)(torch.tensor(x), k).shape).astype(np.float32)
    g = jax.jit(jax.grad(lambda a: jnp.sum(getattr(F, name)(a, k) * w)))(jnp.asarray(x))
    tx = torch.tensor(x, requires_grad=True)
    (getattr(TF, name)(tx, k) * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(np.asarray(g), tx.grad.numpy(), rtol=1e-5, atol=1e-6)
