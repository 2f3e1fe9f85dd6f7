import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jparam.nn.functional as F
from _fcompare import assert_close, check, randn


@pytest.mark.parametrize("idx_shape", [(5,), (2, 3)])
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding(idx_shape, padding_idx):
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 6, idx_shape)
    idx.flat[0] = 2
    idx.flat[-1] = 5
    w = randn(rng, 6, 4)
    check(F.embedding, TF.embedding, [idx, w], diff=[1], kwargs=dict(padding_idx=padding_idx),
          family="embedding")


def test_embedding_max_norm():
    rng = np.random.default_rng(1)
    idx = np.array([0, 1, 3, 1])
    w = randn(rng, 5, 4, scale=2.0)
    tw = torch.tensor(w, requires_grad=True)
    ty = TF.embedding(torch.tensor(idx), tw, max_norm=1.5)
    jy = F.embedding(jnp.asarray(idx), jnp.asarray(w), max_norm=1.5)
    assert_close(jy, ty.detach().numpy(), family="embedding")


def test_one_hot():
    t = np.array([[0, 3], [2, 1]])
    np.testing.assert_array_equal(np.asarray(F.one_hot(jnp.asarray(t))), TF.one_hot(torch.tensor(t)).numpy())
    np.testing.assert_array_equal(np.asarray(F.one_hot(jnp.asarray(t), 6)),
                                  TF.one_hot(torch.tensor(t), 6).numpy())
    with pytest.raises(TypeError, match="index tensor"):
        F.one_hot(jnp.ones(3))


@pytest.mark.parametrize("name,shape", [("dropout", (200, 50)), ("dropout1d", (20, 30, 8)),
                                        ("dropout2d", (20, 30, 4, 4)), ("dropout3d", (20, 30, 2, 2, 2))])
def test_dropout_statistics(name, shape):
    x = jnp.ones(shape)
    y = getattr(F, name)(x, p=0.3, key=jax.random.key(0))
    vals = np.unique(np.asarray(y))
    np.testing.assert_allclose(sorted(vals), [0.0, 1 / 0.7], rtol=1e-6)
    keep = float(np.mean(np.asarray(y) != 0))
    assert abs(keep - 0.7) < 0.03, keep
    if name != "dropout":  # whole channels dropped
        y2 = np.asarray(y).reshape(shape[0], shape[1], -1)
        assert np.all((y2 == 0).all(-1) | (y2 != 0).all(-1))
    assert getattr(F, name)(x, 0.3, training=False) is x
    with pytest.raises(ValueError, match="key"):
        getattr(F, name)(x, 0.3)
    with pytest.raises(ValueError, match="between 0 and 1"):
        getattr(F, name)(x, 1.5, key=jax.random.key(0))


def test_dropout_grad_matches_mask():
    x = jnp.asarray(randn(np.random.default_rng(2), 50, 20))
    k = jax.random.key(3)
    g = jax.grad(lambda x: jnp.sum(F.dropout(x, 0.4, key=k)))(x)
    y = F.dropout(x, 0.4, key=k)
    np.testing.assert_allclose(np.asarray(g), np.where(np.asarray(y) != 0, 1 / 0.6, 0), rtol=1e-6)


@pytest.mark.parametrize("name", ["alpha_dropout", "feature_alpha_dropout"])
def test_alpha_dropout_statistics(name):
    x = jax.random.normal(jax.random.key(1), (400, 50, 4))
    y = getattr(F, name)(x, 0.2, training=True, key=jax.random.key(2))
    # torch's correction keeps zero mean and unit variance for standard-normal input.
    assert abs(float(jnp.mean(y))) < 0.05 and abs(float(jnp.std(y)) - 1) < 0.05
    assert getattr(F, name)(x, 0.2) is x
    tx = torch.tensor(np.asarray(x))
    ty = getattr(TF, name)(tx, 0.2, training=True)
    assert abs(float(ty.std()) - float(jnp.std(y))) < 0.05


PADS = [
    ((2, 3, 5), (1, 2), "constant"), ((2, 3, 5), (2, 1, 1, 0), "constant"),
    ((2, 3, 5), (-1, 2), "constant"), ((2, 3, 4, 5), (1, 2, 3, 0), "reflect"),
    ((2, 3, 5), (2, 3), "reflect"), ((2, 3, 4, 5), (1, 2, 3, 1), "replicate"),
    ((2, 3, 4, 5, 3), (1, 2, 0, 1, 2, 1), "replicate"), ((2, 3, 4, 5), (1, 2, 3, 1), "circular"),
    ((2, 3, 5), (2, 1), "circular"), ((2, 3, 4, 3, 3), (1, 1, 2, 0, 1, 2), "reflect"),
]


@pytest.mark.parametrize("shape,pad,mode", PADS)
def test_pad(shape, pad, mode):
    x = randn(np.random.default_rng(4), *shape)
    kw = dict(mode=mode)
    if mode == "constant":
        kw["value"] = 1.5
    check(F.pad, TF.pad, [x, pad], kwargs=kw, family="pad")


INTERP = [
    ((2, 3, 7), dict(size=13, mode="nearest")), ((2, 3, 7), dict(scale_factor=2.5, mode="nearest")),
    ((2, 3, 8), dict(size=3, mode="nearest")), ((2, 3, 6), dict(size=12, mode="nearest")),
    ((2, 3, 7), dict(size=10, mode="nearest-exact")),
    ((2, 3, 7), dict(size=11, mode="linear")), ((2, 3, 7), dict(size=4, mode="linear", align_corners=True)),
    ((2, 3, 5, 6), dict(size=(9, 4), mode="bilinear")),
    ((2, 3, 5, 6), dict(scale_factor=(1.7, 2.3), mode="bilinear")),
    ((2, 3, 5, 6), dict(scale_factor=1.7, mode="bilinear", recompute_scale_factor=True)),
    ((2, 3, 5, 6), dict(size=(8, 11), mode="bilinear", align_corners=True)),
    ((2, 3, 5, 6), dict(size=(8, 11), mode="bicubic")),
    ((2, 3, 5, 6), dict(size=(3, 11), mode="bicubic", align_corners=True)),
    ((2, 3, 5, 6), dict(scale_factor=3, mode="nearest")),
    ((2, 3, 5, 6), dict(size=(7, 4), mode="nearest")),
    ((2, 3, 9, 6), dict(size=(4, 4), mode="area")),
    ((1, 2, 3, 4, 5), dict(size=(5, 6, 4), mode="trilinear")),
    ((1, 2, 3, 4, 5), dict(scale_factor=2, mode="trilinear", align_corners=True)),
    ((1, 2, 3, 4, 5), dict(size=(5, 6, 4), mode="nearest")),
]


@pytest.mark.parametrize("shape,kw", INTERP, ids=range(len(INTERP)))
def test_interpolate(shape, kw):
    x = randn(np.random.default_rng(5), *shape)
    check(F.interpolate, TF.interpolate, [x], kwargs=kw, family="upsampling")


@pytest.mark.parametrize("shape,r", [((2, 8, 3, 4), 2), ((12, 2, 2), 2), ((1, 2, 18, 3, 3), 3)])
def test_pixel_shuffle(shape, r):
    x = randn(np.random.default_rng(6), *shape)
    check(F.pixel_shuffle, TF.pixel_shuffle, [x, r], family="pixelshuffle")
    y = np.asarray(F.pixel_shuffle(jnp.asarray(x), r))
    check(F.pixel_unshuffle, TF.pixel_unshuffle, [y, r], family="pixelshuffle")


@pytest.mark.parametrize("s1,s2,dim", [((4, 5), (4, 5), 1), ((3, 4, 5), (1, 4, 5), -1), ((6,), (6,), 0)])
def test_cosine_similarity(s1, s2, dim):
    rng = np.random.default_rng(7)
    check(F.cosine_similarity, TF.cosine_similarity, [randn(rng, *s1), randn(rng, *s2)],
          kwargs=dict(dim=dim), family="distance")


@pytest.mark.parametrize("p", [2.0, 1.0, 3.0])
@pytest.mark.parametrize("keepdim", [False, True])
def test_pairwise_distance(p, keepdim):
    rng = np.random.default_rng(8)
    check(F.pairwise_distance, TF.pairwise_distance, [randn(rng, 4, 5), randn(rng, 4, 5)],
          kwargs=dict(p=p, keepdim=keepdim), family="distance")


@pytest.mark.parametrize("p", [2.0, 1.0])
def test_cdist_pdist(p):
    rng = np.random.default_rng(9)
    check(F.cdist, torch.cdist, [randn(rng, 4, 3), randn(rng, 5, 3)], kwargs=dict(p=p), family="distance")
    check(F.pdist, TF.pdist, [randn(rng, 5, 3)], kwargs=dict(p=p), family="distance")
