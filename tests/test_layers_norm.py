import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn as tnn

import jparam
from jparam import nn
from _fcompare import randn
from _lcompare import bf16_smoke, compare_layer


def _rand_affine(tm):
    with torch.no_grad():
        for p in tm.parameters():
            p.copy_(torch.randn(p.shape))
        for name, b in tm.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape))
    return tm


BN = [("BatchNorm1d", (8, 4)), ("BatchNorm1d", (4, 4, 6)), ("BatchNorm2d", (3, 4, 5, 5)),
      ("BatchNorm3d", (2, 4, 3, 3, 3))]


@pytest.mark.parametrize("name,shape", BN)
@pytest.mark.parametrize("kw", [{}, dict(momentum=None), dict(affine=False), dict(momentum=0.3, eps=1e-3),
                                dict(track_running_stats=False), dict(bias=False)])
def test_batchnorm(name, shape, kw):
    torch.manual_seed(0)
    x = randn(np.random.default_rng(len(shape)), *shape, scale=2.0) + 1.0
    compare_layer(_rand_affine(getattr(tnn, name)(4, **kw)), getattr(nn, name)(4, **kw), [x], "norm",
                  steps=3)


def test_batchnorm_jit_stats_and_errors():
    m = nn.BatchNorm2d(3)
    x = jnp.asarray(randn(np.random.default_rng(0), 4, 3, 2, 2))
    step = jax.jit(lambda m, x: jparam.call(m, x))
    _, m = step(m, x)
    _, m = step(m, x)
    assert int(m.num_batches_tracked) == 2
    with pytest.raises(ValueError, match="expected 4D input"):
        m(jnp.ones((2, 3)))


@pytest.mark.parametrize("ns,shape", [(6, (4, 6)), ((4, 5), (2, 3, 4, 5))])
@pytest.mark.parametrize("kw", [{}, dict(elementwise_affine=False), dict(bias=False), dict(eps=1e-3)])
def test_layernorm(ns, shape, kw):
    torch.manual_seed(0)
    x = randn(np.random.default_rng(1), *shape, scale=2.0)
    compare_layer(_rand_affine(tnn.LayerNorm(ns, **kw)), nn.LayerNorm(ns, **kw), [x], "norm", steps=1)


@pytest.mark.parametrize("g,c,shape", [(2, 4, (3, 4, 5)), (4, 8, (2, 8, 3, 3)), (1, 6, (2, 6))])
@pytest.mark.parametrize("kw", [{}, dict(affine=False), dict(bias=False)])
def test_groupnorm(g, c, shape, kw):
    torch.manual_seed(0)
    x = randn(np.random.default_rng(2), *shape, scale=2.0)
    compare_layer(_rand_affine(tnn.GroupNorm(g, c, **kw)), nn.GroupNorm(g, c, **kw), [x], "norm",
                  steps=1)


@pytest.mark.parametrize("name,shape", [("InstanceNorm1d", (3, 4, 7)), ("InstanceNorm1d", (4, 7)),
                                        ("InstanceNorm2d", (2, 4, 5, 5)), ("InstanceNorm3d", (2, 4, 3, 3, 3))])
@pytest.mark.parametrize("kw", [{}, dict(affine=True), dict(affine=True, track_running_stats=True)])
def test_instancenorm(name, shape, kw):
    torch.manual_seed(0)
    x = randn(np.random.default_rng(3), *shape, scale=2.0)
    compare_layer(_rand_affine(getattr(tnn, name)(4, **kw)), getattr(nn, name)(4, **kw), [x], "norm",
                  steps=2)


@pytest.mark.parametrize("ns,shape", [(6, (4, 6)), ((4, 5), (2, 3, 4, 5))])
@pytest.mark.parametrize("kw", [{}, dict(eps=1e-5), dict(elementwise_affine=False)])
def test_rmsnorm(ns, shape, kw):
    torch.manual_seed(0)
    x = randn(np.random.default_rng(4), *shape, scale=2.0)
    compare_layer(_rand_affine(tnn.RMSNorm(ns, **kw)), nn.RMSNorm(ns, **kw), [x], "norm", steps=1)


def test_local_response_norm():
    x = randn(np.random.default_rng(5), 2, 6, 4, 4, scale=3.0)
    compare_layer(tnn.LocalResponseNorm(3, alpha=0.1, k=2.0), nn.LocalResponseNorm(3, alpha=0.1, k=2.0),
                  [x], "norm", steps=1)


def test_default_init_and_bf16():
    for m in [nn.BatchNorm2d(5), nn.LayerNorm(5), nn.GroupNorm(1, 5), nn.InstanceNorm1d(5, affine=True),
              nn.RMSNorm(5)]:
        np.testing.assert_array_equal(np.asarray(m.weight.data), np.ones(5))
        if getattr(m, "bias", None) is not None:
            np.testing.assert_array_equal(np.asarray(m.bias.data), np.zeros(5))
    bn = nn.BatchNorm1d(5)
    assert bn.num_batches_tracked.dtype in (jnp.int32, jnp.int64)
    x = randn(np.random.default_rng(0), 4, 5)
    for m in [nn.LayerNorm(5), nn.RMSNorm(5), nn.GroupNorm(1, 5), nn.BatchNorm1d(5).eval()]:
        bf16_smoke(m, x)
    assert nn.LayerNorm(5, dtype=jnp.bfloat16).weight.data.dtype == jnp.bfloat16
