import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jparam.nn.functional as F
from _fcompare import check, randn

RED = ["mean", "sum", "none"]


@pytest.mark.parametrize("reduction", RED)
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 4)])
def test_regression(reduction, shape):
    rng = np.random.default_rng(0)
    x, y = randn(rng, *shape, scale=2), randn(rng, *shape, scale=2)
    kw = dict(reduction=reduction)
    for name in ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"]:
        check(getattr(F, name), getattr(TF, name), [x, y], kwargs=kw, family="loss")
    check(F.soft_margin_loss, TF.soft_margin_loss, [x, np.sign(y)], diff=[0], kwargs=kw, family="loss")
    check(F.smooth_l1_loss, TF.smooth_l1_loss, [x, y], kwargs=dict(kw, beta=0.5), family="loss")
    check(F.smooth_l1_loss, TF.smooth_l1_loss, [x, y], kwargs=dict(kw, beta=0.0), family="loss")
    check(F.huber_loss, TF.huber_loss, [x, y], kwargs=dict(kw, delta=2.0), family="loss")


def test_legacy_reduction_args():
    rng = np.random.default_rng(1)
    x, y = randn(rng, 3, 4), randn(rng, 3, 4)
    check(F.mse_loss, TF.mse_loss, [x, y], kwargs=dict(size_average=False), family="loss")
    check(F.mse_loss, TF.mse_loss, [x, y], kwargs=dict(reduce=False), family="loss")
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(x, y, reduction="avg")


CE_SHAPES = [((5,), ()), ((4, 5), (4,)), ((2, 5, 3), (2, 3)), ((2, 5, 3, 2), (2, 3, 2))]


@pytest.mark.parametrize("xs,ts", CE_SHAPES)
@pytest.mark.parametrize("reduction", RED)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_cross_entropy_indices(xs, ts, reduction, weighted, ls):
    rng = np.random.default_rng(2)
    x = randn(rng, *xs, scale=2)
    t = rng.integers(0, 5, ts)
    if t.ndim:
        t.flat[0] = -100
    w = np.abs(randn(rng, 5)) + 0.2 if weighted else None
    kw = dict(weight=w, reduction=reduction, label_smoothing=ls)
    check(F.cross_entropy, TF.cross_entropy, [x, t], diff=[0], kwargs=dict(kw, weight=w),
          tkwargs=dict(kw, weight=None if w is None else torch.tensor(w)), family="loss")


@pytest.mark.parametrize("xs", [(5,), (4, 5), (2, 5, 3)])
@pytest.mark.parametrize("reduction", RED)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_cross_entropy_probs(xs, reduction, weighted, ls):
    rng = np.random.default_rng(3)
    x = randn(rng, *xs)
    cd = 0 if len(xs) == 1 else 1
    p = np.exp(randn(rng, *xs))
    p = (p / p.sum(axis=cd, keepdims=True)).astype(np.float32)
    w = np.abs(randn(rng, 5)) + 0.2 if weighted else None
    kw = dict(reduction=reduction, label_smoothing=ls)
    check(F.cross_entropy, TF.cross_entropy, [x, p], kwargs=dict(kw, weight=w),
          tkwargs=dict(kw, weight=None if w is None else torch.tensor(w)), family="loss")


@pytest.mark.parametrize("xs,ts", CE_SHAPES[1:])
@pytest.mark.parametrize("reduction", RED)
def test_nll_loss(xs, ts, reduction):
    rng = np.random.default_rng(4)
    x = randn(rng, *xs)
    t = rng.integers(0, 5, ts)
    t.flat[-1] = 1
    t.flat[0] = 3
    w = np.abs(randn(rng, 5)) + 0.2
    check(F.nll_loss, TF.nll_loss, [x, t], diff=[0], kwargs=dict(reduction=reduction, ignore_index=1),
          family="loss")
    check(F.nll_loss, TF.nll_loss, [x, t], diff=[0], kwargs=dict(reduction=reduction, weight=w),
          tkwargs=dict(reduction=reduction, weight=torch.tensor(w)), family="loss")


def test_nll_errors():
    import jax.numpy as jnp
    with pytest.raises(ValueError, match="expected target of shape"):
        F.nll_loss(jnp.ones((4, 3)), jnp.zeros((3,), jnp.int32))


@pytest.mark.parametrize("reduction", RED)
@pytest.mark.parametrize("shape", [(6,), (3, 4)])
def test_bce(reduction, shape):
    rng = np.random.default_rng(5)
    x = 1 / (1 + np.exp(-randn(rng, *shape, scale=2)))
    y = rng.uniform(size=shape).astype(np.float32)
    w = np.abs(randn(rng, *shape))
    check(F.binary_cross_entropy, TF.binary_cross_entropy, [x.astype(np.float32), y],
          kwargs=dict(reduction=reduction), family="loss")
    check(F.binary_cross_entropy, TF.binary_cross_entropy, [x.astype(np.float32), y],
          kwargs=dict(reduction=reduction, weight=w), tkwargs=dict(reduction=reduction,
                                                                  weight=torch.tensor(w)), family="loss")


@pytest.mark.parametrize("reduction", RED)
@pytest.mark.parametrize("shape", [(6,), (3, 4)])
def test_bce_logits(reduction, shape):
    rng = np.random.default_rng(6)
    x = randn(rng, *shape, scale=3)
    y = rng.uniform(size=shape).astype(np.float32)
    pw = np.abs(randn(rng, shape[-1])) + 0.5
    w = np.abs(randn(rng, *shape))
    check(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits, [x, y],
          kwargs=dict(reduction=reduction), family="loss")
    check(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits, [x, y],
          kwargs=dict(reduction=reduction, pos_weight=pw, weight=w),
          tkwargs=dict(reduction=reduction, pos_weight=torch.tensor(pw), weight=torch.tensor(w)),
          family="loss")


@pytest.mark.parametrize("reduction", RED + ["batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    rng = np.random.default_rng(7)
    x = np.log(np.abs(randn(rng, 4, 5)) + 0.1).astype(np.float32)
    t = np.abs(randn(rng, 4, 5)).astype(np.float32) + 0.05
    if log_target:
        t = np.log(t).astype(np.float32)
    check(F.kl_div, TF.kl_div, [x, t], kwargs=dict(reduction=reduction, log_target=log_target),
          family="loss")


@pytest.mark.parametrize("reduction", RED)
def test_pair_losses(reduction):
    rng = np.random.default_rng(8)
    a, b = randn(rng, 6, 5), randn(rng, 6, 5)
    y = np.array([1, -1, 1, -1, -1, 1], np.float32)
    check(F.cosine_embedding_loss, TF.cosine_embedding_loss, [a, b, y], diff=[0, 1],
          kwargs=dict(reduction=reduction, margin=-0.2), family="loss")
    x1, x2 = randn(rng, 6), randn(rng, 6)
    check(F.margin_ranking_loss, TF.margin_ranking_loss, [x1, x2, y], diff=[0, 1],
          kwargs=dict(reduction=reduction, margin=0.3), family="loss")
    check(F.hinge_embedding_loss, TF.hinge_embedding_loss, [x1, y], diff=[0],
          kwargs=dict(reduction=reduction, margin=0.5), family="loss")
    n = randn(rng, 6, 5)
    for kw in [dict(), dict(p=1, swap=True, margin=0.5)]:
        check(F.triplet_margin_loss, TF.triplet_margin_loss, [a, b, n],
              kwargs=dict(kw, reduction=reduction), family="loss")


@pytest.mark.parametrize("reduction", RED)
def test_other_losses(reduction):
    rng = np.random.default_rng(9)
    x = randn(rng, 4, 5)
    tgt = (rng.uniform(size=(4, 5)) > 0.5).astype(np.float32)
    check(F.multilabel_soft_margin_loss, TF.multilabel_soft_margin_loss, [x, tgt],
          kwargs=dict(reduction=reduction), family="loss")
    t = rng.integers(0, 5, (4,))
    for p in (1, 2):
        check(F.multi_margin_loss, TF.multi_margin_loss, [x, t], diff=[0],
              kwargs=dict(reduction=reduction, p=p, margin=0.7), family="loss")
    lam = np.abs(randn(rng, 4, 5)) * 3
    check(F.poisson_nll_loss, TF.poisson_nll_loss, [x, lam], kwargs=dict(reduction=reduction),
          family="loss")
    check(F.poisson_nll_loss, TF.poisson_nll_loss, [np.abs(x) + 0.1, lam],
          kwargs=dict(reduction=reduction, log_input=False, full=True), family="loss")
    var = np.abs(randn(rng, 4, 5)) + 0.1
    var[0, 0] = 1e-8
    check(F.gaussian_nll_loss, TF.gaussian_nll_loss, [x, randn(rng, 4, 5), var],
          kwargs=dict(reduction=reduction, full=True), family="loss")
