import numpy as np
import pytest
import torch.nn.functional as TF

import jparam.nn.functional as F
from _fcompare import check, randn

TOL = dict(rtol=1e-4, atol=1e-5)


def test_linear():
    rng = np.random.default_rng(0)
    for shape in [(5,), (4, 5), (2, 3, 5)]:
        check(F.linear, TF.linear, [randn(rng, *shape), randn(rng, 3, 5), randn(rng, 3)],
              family="linear")
    check(F.linear, TF.linear, [randn(rng, 4, 5), randn(rng, 3, 5)], family="linear")


def test_bilinear():
    rng = np.random.default_rng(1)
    for lead in [(4,), (2, 3)]:
        check(F.bilinear, TF.bilinear, [randn(rng, *lead, 5), randn(rng, *lead, 3),
                                        randn(rng, 2, 5, 3), randn(rng, 2)], family="linear")


CONV = [
    # (dims, N, Cin, spatial, Cout, kernel, kwargs)
    (1, 2, 3, (9,), 4, (3,), {}),
    (1, 2, 4, (10,), 6, (3,), dict(stride=2, padding=1, dilation=2, groups=2)),
    (1, 1, 3, (8,), 2, (4,), dict(padding="same")),
    (1, 1, 3, (8,), 2, (3,), dict(padding="same", dilation=2)),
    (2, 2, 3, (7, 6), 4, (3, 2), {}),
    (2, 2, 4, (9, 8), 8, (3, 3), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=4)),
    (2, 1, 3, (6, 7), 5, (4, 3), dict(padding="same")),
    (2, 1, 3, (6, 7), 5, (3, 3), dict(padding="valid")),
    (3, 1, 2, (5, 6, 4), 3, (3, 2, 2), dict(stride=(1, 2, 1), padding=1)),
    (3, 2, 4, (5, 5, 5), 4, (2, 3, 2), dict(groups=2, dilation=(2, 1, 1))),
]


@pytest.mark.parametrize("case", CONV, ids=range(len(CONV)))
@pytest.mark.parametrize("bias", [True, False])
def test_conv(case, bias):
    n, N, cin, sp, cout, k, kw = case
    g = kw.get("groups", 1)
    rng = np.random.default_rng(sum(sp))
    x = randn(rng, N, cin, *sp)
    w = randn(rng, cout, cin // g, *k)
    args = [x, w] + ([randn(rng, cout)] if bias else [None])
    check(getattr(F, f"conv{n}d"), getattr(TF, f"conv{n}d"), args, diff=[0, 1, 2] if bias else [0, 1],
          kwargs=kw, family="conv", **TOL)


def test_conv_unbatched():
    rng = np.random.default_rng(3)
    check(F.conv2d, TF.conv2d, [randn(rng, 3, 6, 6), randn(rng, 2, 3, 3, 3)], family="conv", **TOL)


CONVT = [
    (1, 2, 3, (7,), 4, (3,), {}),
    (1, 2, 4, (6,), 6, (3,), dict(stride=2, padding=1, output_padding=1, groups=2)),
    (1, 1, 2, (5,), 3, (3,), dict(stride=3, dilation=2, output_padding=1)),
    (2, 2, 3, (5, 4), 4, (3, 2), {}),
    (2, 2, 4, (5, 6), 6, (3, 3), dict(stride=(2, 3), padding=(1, 2), output_padding=(1, 2), groups=2)),
    (2, 1, 3, (4, 4), 2, (2, 2), dict(stride=2)),
    (2, 1, 2, (4, 5), 3, (3, 3), dict(dilation=2, padding=2)),
    (3, 1, 2, (3, 4, 3), 3, (2, 3, 2), dict(stride=2, padding=(0, 1, 0), output_padding=(1, 0, 1))),
]


@pytest.mark.parametrize("case", CONVT, ids=range(len(CONVT)))
@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose(case, bias):
    n, N, cin, sp, cout, k, kw = case
    g = kw.get("groups", 1)
    rng = np.random.default_rng(sum(sp) + 7)
    x = randn(rng, N, cin, *sp)
    w = randn(rng, cin, cout // g, *k)
    args = [x, w] + ([randn(rng, cout)] if bias else [None])
    check(getattr(F, f"conv_transpose{n}d"), getattr(TF, f"conv_transpose{n}d"), args,
          diff=[0, 1, 2] if bias else [0, 1], kwargs=kw, family="conv", **TOL)


def test_conv_errors():
    import jax.numpy as jnp
    with pytest.raises(ValueError, match="channels"):
        F.conv2d(jnp.ones((1, 3, 5, 5)), jnp.ones((2, 4, 3, 3)))
    with pytest.raises(ValueError, match="strided"):
        F.conv1d(jnp.ones((1, 3, 5)), jnp.ones((2, 3, 3)), stride=2, padding="same")
    with pytest.raises(ValueError, match="output padding"):
        F.conv_transpose1d(jnp.ones((1, 3, 5)), jnp.ones((3, 2, 3)), output_padding=1)
