import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as TF

import jparam.nn.functional as F
from _fcompare import check, randn

SHAPES = [(7,), (3, 5), (2, 3, 4, 5)]

CASES = [
    ("relu", {}), ("relu6", {}), ("leaky_relu", {}), ("leaky_relu", {"negative_slope": 0.2}),
    ("elu", {}), ("elu", {"alpha": 0.5}), ("selu", {}), ("celu", {"alpha": 2.0}),
    ("gelu", {}), ("gelu", {"approximate": "tanh"}), ("silu", {}), ("mish", {}),
    ("sigmoid", {}), ("tanh", {}), ("hardtanh", {}), ("hardtanh", {"min_val": -0.5, "max_val": 2.0}),
    ("hardsigmoid", {}), ("hardswish", {}), ("softplus", {}),
    ("softplus", {"beta": 2.0, "threshold": 1.0}), ("softsign", {}), ("logsigmoid", {}),
    ("hardshrink", {}), ("softshrink", {"lambd": 0.3}), ("tanhshrink", {}),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_pointwise(name, kw, shape):
    rng = np.random.default_rng(len(shape))
    x = randn(rng, *shape, scale=3.0)
    check(getattr(F, name), getattr(TF, name), [x], kwargs=kw, family="activation")


@pytest.mark.parametrize("shape,dim", [((5,), 0), ((3, 5), -1), ((3, 5), 0), ((2, 3, 4), 1)])
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmin"])
def test_softmax(name, shape, dim):
    x = randn(np.random.default_rng(1), *shape, scale=3.0)
    check(getattr(F, name), getattr(TF, name), [x], kwargs={"dim": dim}, family="activation")


@pytest.mark.parametrize("shape,dim", [((6,), 0), ((3, 4), -1), ((4, 3, 2), 0)])
def test_glu(shape, dim):
    x = randn(np.random.default_rng(2), *shape)
    check(F.glu, TF.glu, [x], kwargs={"dim": dim}, family="activation")


@pytest.mark.parametrize("shape,nw", [((4, 3), 3), ((2, 3, 5), 3), ((2, 3, 4, 4), 1), ((5,), 1)])
def test_prelu(shape, nw):
    rng = np.random.default_rng(3)
    x = randn(rng, *shape)
    w = randn(rng, nw, scale=0.3)
    check(F.prelu, TF.prelu, [x, w], family="activation")


def test_threshold():
    x = randn(np.random.default_rng(4), 4, 5)
    check(F.threshold, TF.threshold, [x, 0.3, -2.0], family="activation")


def test_rrelu_eval():
    x = randn(np.random.default_rng(5), 4, 5)
    check(F.rrelu, TF.rrelu, [x], family="activation")


def test_errors():
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(jnp.ones(3), approximate="fast")
    with pytest.raises(RuntimeError, match="Halving dimension must be even"):
        F.glu(jnp.ones((3, 5)))
    with pytest.raises(ValueError, match="prelu"):
        F.prelu(jnp.ones((2, 3)), jnp.ones(4))
