import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jparam.nn.functional as F
from _fcompare import check, randn

MAX = [
    (1, (2, 3, 11), dict(kernel_size=3)),
    (1, (2, 3, 11), dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
    (1, (3, 10), dict(kernel_size=4, stride=3, ceil_mode=True)),
    (2, (2, 3, 9, 8), dict(kernel_size=2)),
    (2, (2, 3, 9, 8), dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1), ceil_mode=True)),
    (2, (1, 2, 10, 10), dict(kernel_size=3, stride=2, dilation=2, padding=1)),
    (2, (1, 2, 7, 7), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),
    (3, (1, 2, 6, 7, 5), dict(kernel_size=2, stride=(2, 1, 2), ceil_mode=True)),
    (3, (1, 2, 6, 6, 6), dict(kernel_size=3, stride=2, padding=1)),
]


@pytest.mark.parametrize("case", MAX, ids=range(len(MAX)))
def test_max_pool(case):
    n, shape, kw = case
    x = randn(np.random.default_rng(sum(shape)), *shape)
    check(getattr(F, f"max_pool{n}d"), getattr(TF, f"max_pool{n}d"), [x], kwargs=kw, family="pool")


@pytest.mark.parametrize("case", MAX, ids=range(len(MAX)))
def test_max_pool_indices(case):
    n, shape, kw = case
    x = randn(np.random.default_rng(sum(shape)), *shape)
    import torch
    tv, ti = getattr(TF, f"max_pool{n}d")(torch.tensor(x), return_indices=True, **kw)
    jv, ji = getattr(F, f"max_pool{n}d")(x, return_indices=True, **kw)
    np.testing.assert_array_equal(np.asarray(ji), ti.numpy())
    np.testing.assert_array_equal(np.asarray(jv), tv.numpy())


AVG = [
    (1, (2, 3, 11), dict(kernel_size=3)),
    (1, (2, 3, 11), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (1, (2, 3, 11), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    (2, (2, 3, 9, 8), dict(kernel_size=2)),
    (2, (2, 3, 9, 8), dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1), ceil_mode=True)),
    (2, (2, 3, 9, 8), dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1), ceil_mode=True,
                           count_include_pad=False)),
    (2, (1, 2, 7, 7), dict(kernel_size=3, stride=2, padding=1, divisor_override=5)),
    (2, (2, 7, 7), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    (3, (1, 2, 6, 7, 5), dict(kernel_size=2, stride=(2, 1, 2), ceil_mode=True)),
    (3, (1, 2, 6, 6, 6), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
]


@pytest.mark.parametrize("case", AVG, ids=range(len(AVG)))
def test_avg_pool(case):
    n, shape, kw = case
    x = randn(np.random.default_rng(sum(shape)), *shape)
    check(getattr(F, f"avg_pool{n}d"), getattr(TF, f"avg_pool{n}d"), [x], kwargs=kw, family="pool")


ADA = [
    (1, (2, 3, 10), 5), (1, (2, 3, 10), 3), (1, (3, 7), 4),
    (2, (2, 3, 9, 8), (3, 3)), (2, (2, 3, 9, 8), (4, 5)), (2, (2, 3, 7, 7), 1),
    (2, (2, 3, 7, 6), (None, 4)), (2, (3, 10, 10), 7),
    (3, (1, 2, 5, 6, 7), (2, 3, 4)), (3, (1, 2, 4, 4, 4), 2),
]


@pytest.mark.parametrize("case", ADA, ids=range(len(ADA)))
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_adaptive(case, kind):
    n, shape, out = case
    x = randn(np.random.default_rng(sum(shape)), *shape)
    check(getattr(F, f"adaptive_{kind}_pool{n}d"), getattr(TF, f"adaptive_{kind}_pool{n}d"), [x, out],
          family="pool")


@pytest.mark.parametrize("n,shape,kw", [(1, (2, 3, 10), dict(kernel_size=3, stride=2)),
                                        (2, (2, 3, 8, 8), dict(kernel_size=2)),
                                        (2, (2, 3, 9, 8), dict(kernel_size=(3, 2), ceil_mode=True))])
def test_lp_pool(n, shape, kw):
    x = np.abs(randn(np.random.default_rng(9), *shape)) + 0.1
    check(getattr(F, f"lp_pool{n}d"), getattr(TF, f"lp_pool{n}d"), [x, 2.0], kwargs=kw, family="pool")


# Pooling is differentiable inside jax.jit (its window init values must be concrete).
JIT_GRAD_CASES = [("max_pool1d", (2, 3, 9), 2), ("max_pool2d", (2, 3, 6, 7), 2), ("max_pool3d", (1, 2, 4, 5, 6), 2),
         ("avg_pool1d", (2, 3, 9), 3), ("avg_pool2d", (2, 3, 6, 7), 2), ("avg_pool3d", (1, 2, 4, 5, 6), 2)]


@pytest.mark.parametrize("name,shape,k", JIT_GRAD_CASES)
def test_pool_grad_under_jit_matches_torch(name, shape, k):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    w = np.random.default_rng(1).standard_normal(getattr(TF, name)(torch.tensor(x), k).shape).astype(np.float32)
    g = jax.jit(jax.grad(lambda a: jnp.sum(getattr(F, name)(a, k) * w)))(jnp.asarray(x))
    tx = torch.tensor(x, requires_grad=True)
    (getattr(TF, name)(tx, k) * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(np.asarray(g), tx.grad.numpy(), rtol=1e-5, atol=1e-6)
