import math

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn as tnn

import jparam
from jparam import nn
from _fcompare import randn
from _lcompare import bf16_smoke, compare_layer

CONV_TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(5,), (4, 5), (2, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(shape, bias):
    torch.manual_seed(0)
    compare_layer(tnn.Linear(5, 3, bias=bias), nn.Linear(5, 3, bias=bias),
                  [randn(np.random.default_rng(0), *shape)], "linear")


@pytest.mark.parametrize("bias", [True, False])
def test_bilinear(bias):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    compare_layer(tnn.Bilinear(4, 3, 5, bias=bias), nn.Bilinear(4, 3, 5, bias=bias),
                  [randn(rng, 6, 4), randn(rng, 6, 3)], "linear")


def test_identity_flatten():
    x = randn(np.random.default_rng(2), 2, 3, 4, 5)
    for tm, jm in [(tnn.Identity(3, a=1), nn.Identity(3, a=1)), (tnn.Flatten(), nn.Flatten()),
                   (tnn.Flatten(0, 2), nn.Flatten(0, 2)), (tnn.Flatten(-2), nn.Flatten(-2))]:
        compare_layer(tm, jm, [x], "linear", modes=(True,), steps=1)
    compare_layer(tnn.Unflatten(1, (3, 4)), nn.Unflatten(1, (3, 4)),
                  [randn(np.random.default_rng(3), 2, 12, 5)], "linear", modes=(True,), steps=1)


CONVS = [
    ("Conv1d", (3, 6, 3), {}, (2, 3, 10)),
    ("Conv1d", (4, 6, 3), dict(stride=2, padding=2, dilation=2, groups=2), (2, 4, 11)),
    ("Conv1d", (3, 5, 4), dict(padding="same", padding_mode="reflect"), (2, 3, 9)),
    ("Conv1d", (3, 5, 3), dict(padding=2, padding_mode="circular", bias=False), (3, 9)),
    ("Conv2d", (3, 8, 3), dict(padding=1), (2, 3, 8, 8)),
    ("Conv2d", (4, 8, (3, 2)), dict(stride=(2, 1), padding=(1, 0), groups=4), (2, 4, 9, 7)),
    ("Conv2d", (3, 4, 3), dict(padding="same", padding_mode="replicate", dilation=2), (1, 3, 7, 6)),
    ("Conv2d", (3, 4, 3), dict(padding=1, padding_mode="reflect", bias=False), (2, 3, 6, 6)),
    ("Conv2d", (3, 4, 3), dict(padding="valid"), (2, 3, 6, 6)),
    ("Conv3d", (2, 4, 3), dict(padding=1, stride=2), (1, 2, 5, 6, 5)),
    ("Conv3d", (2, 4, (2, 3, 1)), dict(padding="same", padding_mode="circular"), (1, 2, 4, 5, 3)),
    ("ConvTranspose1d", (3, 4, 3), dict(stride=2, output_padding=1), (2, 3, 7)),
    ("ConvTranspose1d", (4, 6, 3), dict(stride=2, padding=1, groups=2, dilation=2, bias=False), (2, 4, 5)),
    ("ConvTranspose2d", (4, 2, 2), dict(stride=2), (2, 4, 5, 5)),
    ("ConvTranspose2d", (4, 6, 3), dict(stride=(2, 3), padding=1, output_padding=(1, 2), groups=2), (2, 4, 4, 5)),
    ("ConvTranspose3d", (2, 3, 3), dict(stride=2, padding=1), (1, 2, 3, 4, 3)),
]


@pytest.mark.parametrize("name,args,kw,shape", CONVS, ids=range(len(CONVS)))
def test_conv(name, args, kw, shape):
    torch.manual_seed(1)
    compare_layer(getattr(tnn, name)(*args, **kw), getattr(nn, name)(*args, **kw),
                  [randn(np.random.default_rng(4), *shape)], "conv", steps=1, **CONV_TOL)


def test_conv_transpose_output_size():
    torch.manual_seed(2)
    tm, jm = tnn.ConvTranspose2d(3, 2, 3, stride=2, padding=1), nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    jm.load_state_dict(tm.state_dict())
    x = randn(np.random.default_rng(5), 1, 3, 4, 4)
    for size in [(7, 7), (8, 8), (1, 2, 8, 7)]:
        t = tm(torch.tensor(x), output_size=size).detach().numpy()
        j = np.asarray(jm(jnp.asarray(x), output_size=size))
        np.testing.assert_allclose(j, t, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="valid sizes"):
        jm(jnp.asarray(x), output_size=(10, 10))


def test_conv_errors():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="strided"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="zeros"):
        nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect")


@pytest.mark.parametrize("make,fan_in", [
    (lambda: nn.Linear(400, 300), 400), (lambda: nn.Conv2d(16, 64, 5), 16 * 25),
    (lambda: nn.ConvTranspose2d(64, 16, 5), 16 * 25), (lambda: nn.Conv1d(32, 256, 3, groups=4), 8 * 3),
    (lambda: nn.Bilinear(50, 30, 200), 50)])
def test_default_init(make, fan_in):
    jparam.manual_seed(0)
    m = make()
    bound = 1 / math.sqrt(fan_in)
    w = np.asarray(m.weight.data)
    assert w.min() >= -bound and w.max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.03 * bound and abs(w.mean()) < 0.03 * bound
    b = np.asarray(m.bias.data)
    assert b.min() >= -bound and b.max() <= bound and b.std() > 0.4 * bound


@pytest.mark.parametrize("make,shape", [(lambda d: nn.Linear(8, 4, dtype=d), (3, 8)),
                                        (lambda d: nn.Conv2d(3, 4, 3, dtype=d), (1, 3, 6, 6)),
                                        (lambda d: nn.ConvTranspose1d(3, 4, 3, dtype=d), (1, 3, 6)),
                                        (lambda d: nn.Bilinear(3, 3, 2, dtype=d), None)])
def test_dtype_and_bf16(make, shape):
    m = make(jnp.bfloat16)
    assert m.weight.data.dtype == jnp.bfloat16
    if shape is not None:
        bf16_smoke(make(None), randn(np.random.default_rng(0), *shape))
