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


@pytest.mark.parametrize("kw", [{}, dict(padding_idx=0), dict(padding_idx=-2), dict(max_norm=1.0)])
def test_embedding(kw):
    torch.manual_seed(0)
    idx = np.array([[0, 3, 5], [8, 0, 2]])
    tm = tnn.Embedding(10, 4, **kw)
    compare_layer(tm, nn.Embedding(10, 4, **kw), [idx], "embedding", steps=1)
    if kw.get("padding_idx") is not None:
        pi = kw["padding_idx"] % 10
        assert np.all(np.asarray(nn.Embedding(10, 4, **kw).weight.data)[pi] == 0)


def test_embedding_padding_grad_and_pretrained():
    jparam.manual_seed(0)
    m = nn.Embedding(6, 3, padding_idx=1)
    _, m = jparam.backward(lambda m, i: jnp.sum(m(i) ** 2), m, jnp.array([1, 1, 2]))
    g = np.asarray(m.weight.grad)
    assert np.all(g[1] == 0) and np.any(g[2] != 0)
    w = randn(np.random.default_rng(0), 5, 3)
    e = nn.Embedding.from_pretrained(jnp.asarray(w))
    te = tnn.Embedding.from_pretrained(torch.tensor(w))
    assert e.weight.requires_grad is False and repr(e) == repr(te)
    np.testing.assert_array_equal(np.asarray(e(jnp.array([4, 0]))), te(torch.tensor([4, 0])).numpy())
    assert nn.Embedding.from_pretrained(torch.tensor(w), freeze=False).weight.requires_grad
    with pytest.raises(ValueError, match="2-dimensional"):
        nn.Embedding.from_pretrained(jnp.ones(3))


def test_embedding_init():
    jparam.manual_seed(1)
    w = np.asarray(nn.Embedding(1000, 64).weight.data)
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1) < 0.01
    assert nn.Embedding(4, 2, dtype=jnp.bfloat16).weight.data.dtype == jnp.bfloat16


@pytest.mark.parametrize("name,shape", [("Dropout", (100, 50)), ("Dropout1d", (40, 30, 8)),
                                        ("Dropout2d", (40, 30, 3, 3)), ("Dropout3d", (40, 30, 2, 2, 2)),
                                        ("AlphaDropout", (100, 50)), ("FeatureAlphaDropout", (40, 30, 8))])
def test_dropout_layers(name, shape):
    jparam.manual_seed(0)
    m = getattr(nn, name)(0.3)
    assert repr(m) == repr(getattr(tnn, name)(0.3))
    x = jnp.ones(shape)
    step = jax.jit(lambda m, x: jparam.call(m, x))
    y1, m = step(m, x)
    y2, m = step(m, x)
    assert not np.array_equal(np.asarray(y1), np.asarray(y2))  # fresh mask each step
    if "Alpha" not in name:
        frac = float(jnp.mean(y1 == 0))
        assert abs(frac - 0.3) < 0.05
        if name != "Dropout":
            z = np.asarray(y1).reshape(shape[0], shape[1], -1)
            assert np.all((z == 0).all(-1) | (z != 0).all(-1))
    m.eval()
    assert np.array_equal(np.asarray(m(x)), np.asarray(x))
    with pytest.raises(ValueError, match="between 0 and 1"):
        getattr(nn, name)(1.5)


def test_dropout_backward_uses_mask():
    jparam.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    x = jnp.ones((8, 4))
    _, m2 = jparam.backward(lambda m, x: jnp.sum(m(x)), m, x)
    assert m2[0].weight.grad is not None


PADS = [("ConstantPad1d", (2, 3.5), (2, 3, 5)), ("ConstantPad2d", ((1, 0, 2, 1), -1.0), (2, 3, 4, 4)),
        ("ConstantPad3d", (1, 0.5), (1, 2, 2, 3, 2)), ("ZeroPad1d", ((1, 2),), (2, 3, 4)),
        ("ZeroPad2d", (2,), (2, 3, 4, 4)), ("ZeroPad3d", ((1, 0, 1, 0, 0, 1),), (1, 2, 2, 2, 2)),
        ("ReflectionPad1d", ((2, 1),), (2, 3, 5)), ("ReflectionPad2d", (2,), (2, 3, 4, 5)),
        ("ReflectionPad3d", (1,), (1, 2, 3, 3, 3)), ("ReplicationPad1d", (3,), (2, 3, 4)),
        ("ReplicationPad2d", ((1, 2, 0, 3),), (2, 3, 4, 4)), ("ReplicationPad3d", (1,), (1, 2, 2, 2, 2)),
        ("CircularPad1d", (2,), (2, 3, 4)), ("CircularPad2d", ((1, 2, 2, 0),), (2, 3, 4, 4)),
        ("CircularPad3d", (1,), (1, 2, 2, 3, 2)), ("ZeroPad2d", (1,), (3, 4, 4))]


@pytest.mark.parametrize("name,args,shape", PADS, ids=range(len(PADS)))
def test_padding(name, args, shape):
    x = randn(np.random.default_rng(0), *shape)
    compare_layer(getattr(tnn, name)(*args), getattr(nn, name)(*args), [x], "pad", modes=(True,), steps=1)


UPS = [(dict(scale_factor=2), (2, 3, 4, 4)), (dict(size=(5, 7), mode="bilinear"), (2, 3, 4, 4)),
       (dict(scale_factor=1.5, mode="bilinear", align_corners=True), (2, 3, 4, 5)),
       (dict(size=9, mode="linear"), (2, 3, 4)), (dict(scale_factor=2, mode="bicubic"), (1, 2, 3, 3)),
       (dict(scale_factor=(2, 1, 3), mode="trilinear"), (1, 2, 2, 3, 2)),
       (dict(size=(3, 3), mode="area"), (1, 2, 7, 6))]


@pytest.mark.parametrize("kw,shape", UPS, ids=range(len(UPS)))
def test_upsample(kw, shape):
    x = randn(np.random.default_rng(1), *shape)
    compare_layer(tnn.Upsample(**kw), nn.Upsample(**kw), [x], "upsampling", modes=(True,), steps=1)


def test_upsampling2d():
    x = randn(np.random.default_rng(2), 2, 3, 3, 4)
    for name in ["UpsamplingNearest2d", "UpsamplingBilinear2d"]:
        compare_layer(getattr(tnn, name)(scale_factor=2), getattr(nn, name)(scale_factor=2), [x],
                      "upsampling", modes=(True,), steps=1)
        compare_layer(getattr(tnn, name)(size=(5, 7)), getattr(nn, name)(size=(5, 7)), [x],
                      "upsampling", modes=(True,), steps=1)


def test_pixel_shuffle_layers():
    x = randn(np.random.default_rng(3), 2, 8, 3, 4)
    compare_layer(tnn.PixelShuffle(2), nn.PixelShuffle(2), [x], "pixelshuffle", modes=(True,), steps=1)
    y = randn(np.random.default_rng(3), 2, 2, 6, 4)
    compare_layer(tnn.PixelUnshuffle(2), nn.PixelUnshuffle(2), [y], "pixelshuffle", modes=(True,), steps=1)


def test_distance_layers():
    rng = np.random.default_rng(4)
    a, b = randn(rng, 4, 6), randn(rng, 4, 6)
    compare_layer(tnn.CosineSimilarity(), nn.CosineSimilarity(), [a, b], "distance", modes=(True,), steps=1)
    compare_layer(tnn.CosineSimilarity(dim=0, eps=1e-6), nn.CosineSimilarity(dim=0, eps=1e-6), [a, b],
                  "distance", modes=(True,), steps=1)
    compare_layer(tnn.PairwiseDistance(p=1.0, keepdim=True), nn.PairwiseDistance(p=1.0, keepdim=True),
                  [a, b], "distance", modes=(True,), steps=1)


def test_bf16_misc():
    x = randn(np.random.default_rng(5), 2, 4, 4, 4)
    for m in [nn.ReflectionPad2d(1), nn.Upsample(scale_factor=2, mode="bilinear"), nn.PixelShuffle(2),
              nn.Dropout2d(0.2)]:
        bf16_smoke(m, x)
