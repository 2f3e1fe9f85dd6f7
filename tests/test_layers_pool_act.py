import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn as tnn

from jparam import nn
from _fcompare import randn
from _lcompare import bf16_smoke, compare_layer

POOLS = [
    ("MaxPool1d", (3,), dict(stride=2, padding=1, dilation=2, ceil_mode=True), (2, 3, 11)),
    ("MaxPool2d", (2,), {}, (2, 3, 8, 8)),
    ("MaxPool2d", ((3, 2),), dict(stride=(2, 1), padding=1, ceil_mode=True), (2, 3, 9, 7)),
    ("MaxPool3d", (2,), dict(ceil_mode=True), (1, 2, 5, 4, 5)),
    ("AvgPool1d", (3,), dict(stride=2, padding=1, count_include_pad=False), (2, 3, 10)),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True), (2, 3, 9, 8)),
    ("AvgPool2d", (2,), dict(divisor_override=3), (2, 3, 8, 8)),
    ("AvgPool3d", (2,), dict(stride=1, padding=1), (1, 2, 3, 4, 3)),
    ("AdaptiveAvgPool1d", (4,), {}, (2, 3, 10)),
    ("AdaptiveAvgPool2d", ((3, None),), {}, (2, 3, 7, 6)),
    ("AdaptiveAvgPool2d", (1,), {}, (2, 3, 7, 6)),
    ("AdaptiveAvgPool3d", ((2, 3, 2),), {}, (1, 2, 5, 6, 4)),
    ("AdaptiveMaxPool1d", (3,), {}, (2, 3, 10)),
    ("AdaptiveMaxPool2d", (4,), {}, (2, 3, 9, 7)),
    ("AdaptiveMaxPool3d", (2,), {}, (1, 2, 5, 4, 4)),
    ("LPPool1d", (2, 3), dict(stride=2), (2, 3, 10)),
    ("LPPool2d", (3, 2), {}, (2, 3, 8, 8)),
]


@pytest.mark.parametrize("name,args,kw,shape", POOLS, ids=range(len(POOLS)))
def test_pool(name, args, kw, shape):
    x = randn(np.random.default_rng(0), *shape)
    if name.startswith("LP"):
        x = np.abs(x) + 0.1
    compare_layer(getattr(tnn, name)(*args, **kw), getattr(nn, name)(*args, **kw), [x], "pool",
                  modes=(True,), steps=1)
    bf16_smoke(getattr(nn, name)(*args, **kw), x)


def test_maxpool_return_indices():
    x = randn(np.random.default_rng(1), 2, 3, 7, 7)
    tv, ti = tnn.MaxPool2d(3, 2, return_indices=True)(torch.tensor(x))
    jv, ji = nn.MaxPool2d(3, 2, return_indices=True)(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(ji), ti.numpy())
    assert repr(nn.MaxPool2d(3, 2, return_indices=True)) == repr(tnn.MaxPool2d(3, 2, return_indices=True))


ACTS = [
    ("ReLU", (), {}), ("ReLU", (), dict(inplace=True)), ("ReLU6", (), {}), ("LeakyReLU", (0.2,), {}),
    ("LeakyReLU", (), dict(inplace=True)), ("ELU", (0.5,), {}), ("SELU", (), {}), ("CELU", (2.0,), {}),
    ("GELU", (), {}), ("GELU", (), dict(approximate="tanh")), ("SiLU", (), {}), ("Mish", (), {}),
    ("Sigmoid", (), {}), ("Tanh", (), {}), ("Hardtanh", (-0.5, 2.0), {}), ("Hardsigmoid", (), {}),
    ("Hardswish", (), {}), ("Hardshrink", (0.3,), {}), ("Softshrink", (), {}), ("Tanhshrink", (), {}),
    ("Softplus", (2.0, 1.0), {}), ("Softsign", (), {}), ("Softmax", (), dict(dim=1)),
    ("Softmin", (), dict(dim=-1)), ("LogSoftmax", (1,), {}), ("Softmax2d", (), {}), ("GLU", (1,), {}),
    ("Threshold", (0.1, 2.0), {}), ("LogSigmoid", (), {}), ("PReLU", (), {}), ("PReLU", (4,), {}),
    ("PReLU", (4,), dict(init=0.1)),
]


@pytest.mark.parametrize("name,args,kw", ACTS, ids=[f"{a[0]}-{i}" for i, a in enumerate(ACTS)])
@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (2, 4)])
def test_activation(name, args, kw, shape):
    if name == "Softmax2d" and len(shape) < 3:
        return
    x = randn(np.random.default_rng(2), *shape, scale=3.0)
    tm = getattr(tnn, name)(*args, **kw)
    if kw.get("inplace"):  # torch can't differentiate an in-place op on a leaf: repr only
        assert repr(getattr(nn, name)(*args, **kw)) == repr(tm)
        return
    if name == "PReLU":
        with torch.no_grad():
            tm.weight.copy_(torch.randn(tm.weight.shape) * 0.3)
    compare_layer(tm, getattr(nn, name)(*args, **kw), [x], "activation", modes=(True,), steps=1)
    bf16_smoke(getattr(nn, name)(*args, **kw), x)


def test_rrelu():
    x = randn(np.random.default_rng(3), 4, 5)
    compare_layer(tnn.RReLU(0.1, 0.3), nn.RReLU(0.1, 0.3), [x], "activation", modes=(False,), steps=1)
    m = nn.RReLU(0.1, 0.3)
    y = np.asarray(m(jnp.asarray(x)))
    neg = x < 0
    slope = y[neg] / x[neg]
    assert np.all((slope >= 0.1 - 1e-6) & (slope <= 0.3 + 1e-6)) and np.all(y[~neg] == x[~neg])
