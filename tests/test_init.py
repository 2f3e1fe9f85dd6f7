import math

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jparam
from jparam.nn import Parameter, init


def P(*shape, dtype=jnp.float32):
    return Parameter(jnp.zeros(shape, dtype))


def stats(p):
    a = np.asarray(p.data, np.float64)
    return a.min(), a.max(), a.mean(), a.std()


@pytest.mark.parametrize("nl,param", [("linear", None), ("conv2d", None), ("sigmoid", None),
                                      ("tanh", None), ("relu", None), ("leaky_relu", None),
                                      ("leaky_relu", 0.2), ("selu", None)])
def test_calculate_gain(nl, param):
    assert init.calculate_gain(nl, param) == pytest.approx(torch.nn.init.calculate_gain(nl, param))


@pytest.mark.parametrize("shape", [(3, 4), (5, 3, 2), (6, 4, 3, 3), (2, 3, 2, 2, 2)])
def test_fans(shape):
    assert init._calculate_fan_in_and_fan_out(jnp.zeros(shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(jnp.zeros(3))


def test_uniform_normal_constant():
    jparam.manual_seed(0)
    lo, hi, m, s = stats(init.uniform_(P(200, 500), -0.5, 1.5))
    assert lo >= -0.5 and hi <= 1.5 and abs(m - 0.5) < 0.01 and abs(s - 2 / math.sqrt(12)) < 0.01
    _, _, m, s = stats(init.normal_(P(200, 500), 1.0, 0.3))
    assert abs(m - 1.0) < 0.005 and abs(s - 0.3) < 0.005
    assert np.all(np.asarray(init.constant_(P(3, 2), 0.7).data) == np.float32(0.7))
    assert np.all(np.asarray(init.ones_(P(3)).data) == 1)
    assert np.all(np.asarray(init.zeros_(Parameter(jnp.ones(3))).data) == 0)


def test_trunc_normal():
    jparam.manual_seed(1)
    p = init.trunc_normal_(P(300, 400), mean=0.1, std=1.0, a=-1.0, b=1.5)
    t = torch.nn.init.trunc_normal_(torch.empty(300, 400), mean=0.1, std=1.0, a=-1.0, b=1.5)
    lo, hi, m, s = stats(p)
    assert lo >= -1.0 and hi <= 1.5
    assert abs(m - t.mean().item()) < 0.01 and abs(s - t.std().item()) < 0.01


def test_eye_dirac():
    np.testing.assert_array_equal(np.asarray(init.eye_(P(3, 5)).data),
                                  torch.nn.init.eye_(torch.empty(3, 5)).numpy())
    for shape, g in [((4, 4, 3, 3), 1), ((6, 3, 3), 2), ((4, 2, 3, 3, 3), 2)]:
        np.testing.assert_array_equal(np.asarray(init.dirac_(P(*shape), g).data),
                                      torch.nn.init.dirac_(torch.empty(shape), g).numpy())


@pytest.mark.parametrize("shape", [(300, 500), (64, 32, 5, 5)])
def test_xavier(shape):
    jparam.manual_seed(2)
    fan_in, fan_out = init._calculate_fan_in_and_fan_out(jnp.zeros(shape))
    a = 2.0 * math.sqrt(6 / (fan_in + fan_out))
    lo, hi, m, s = stats(init.xavier_uniform_(P(*shape), gain=2.0))
    assert -a <= lo and hi <= a and abs(s - a / math.sqrt(3)) < 0.02 * a and abs(m) < 0.01 * a
    std = 0.5 * math.sqrt(2 / (fan_in + fan_out))
    _, _, m, s = stats(init.xavier_normal_(P(*shape), gain=0.5))
    assert abs(s - std) < 0.02 * std and abs(m) < 0.01 * std


@pytest.mark.parametrize("shape", [(300, 500), (64, 32, 5, 5)])
@pytest.mark.parametrize("a,mode,nl", [(0, "fan_in", "leaky_relu"), (math.sqrt(5), "fan_in", "leaky_relu"),
                                       (0, "fan_out", "relu"), (0.1, "fan_out", "leaky_relu")])
def test_kaiming(shape, a, mode, nl):
    jparam.manual_seed(3)
    fan_in, fan_out = init._calculate_fan_in_and_fan_out(jnp.zeros(shape))
    fan = fan_in if mode == "fan_in" else fan_out
    std = torch.nn.init.calculate_gain(nl, a) / math.sqrt(fan)
    bound = math.sqrt(3) * std
    lo, hi, m, s = stats(init.kaiming_uniform_(P(*shape), a=a, mode=mode, nonlinearity=nl))
    assert -bound <= lo and hi <= bound and lo < -0.95 * bound and hi > 0.95 * bound
    assert abs(s - std) < 0.02 * std
    _, _, m, s = stats(init.kaiming_normal_(P(*shape), a=a, mode=mode, nonlinearity=nl))
    assert abs(s - std) < 0.02 * std and abs(m) < 0.01 * std
    if a == math.sqrt(5):
        assert bound == pytest.approx(1 / math.sqrt(fan_in))


@pytest.mark.parametrize("shape", [(6, 10), (10, 6), (4, 3, 2, 2)])
def test_orthogonal(shape):
    jparam.manual_seed(4)
    w = np.asarray(init.orthogonal_(P(*shape), gain=2.0).data, np.float64).reshape(shape[0], -1)
    if w.shape[0] <= w.shape[1]:
        np.testing.assert_allclose(w @ w.T, 4 * np.eye(w.shape[0]), atol=1e-5)
    else:
        np.testing.assert_allclose(w.T @ w, 4 * np.eye(w.shape[1]), atol=1e-5)


def test_sparse():
    jparam.manual_seed(5)
    w = np.asarray(init.sparse_(P(10, 40), 0.3, std=0.1).data)
    assert np.all((w == 0).sum(0) == 3)


def test_bfloat16_and_seed():
    p = init.kaiming_uniform_(P(8, 8, dtype=jnp.bfloat16), a=math.sqrt(5))
    assert p.data.dtype == jnp.bfloat16
    jparam.manual_seed(7)
    a = np.asarray(init.normal_(P(5, 5)).data)
    jparam.manual_seed(7)
    b = np.asarray(init.normal_(P(5, 5)).data)
    np.testing.assert_array_equal(a, b)


def test_errors():
    with pytest.raises(TypeError, match="Parameter"):
        init.normal_(jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(P(3, 3), mode="fan_avg")
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")


def test_traced_construction_draws_with_jax_random_in_torchs_distributions(monkeypatch):
    """Under jax.jit / jax.eval_shape (materialize, meta init) the initialisers draw with
    jax.random, never a host NumPy array; the distributions are torch's formulas."""
    import jax
    import jparam._random as jrandom
    from jparam import nn

    def no_host_draw(*a, **k):
        raise AssertionError("a NumPy draw on the host while traced")

    monkeypatch.setattr(jrandom, "_host_rng", no_host_draw)
    jparam.manual_seed(0)
    shapes = jax.eval_shape(lambda: nn.Linear(300, 200))
    assert shapes.weight.shape == (200, 300)
    lin, emb, conv = jax.jit(lambda: (nn.Linear(300, 200), nn.Embedding(100, 64), nn.Conv2d(8, 16, 3)))()
    for w, fan_in in ((lin.weight, 300), (lin.bias, 300), (conv.weight, 72), (conv.bias, 72)):
        w = np.asarray(w, np.float64)
        bound = 1 / math.sqrt(fan_in)          # kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))
        assert np.abs(w).max() <= bound
        assert abs(w.mean()) < 4 * bound / math.sqrt(3 * w.size)
        if w.size > 1000:
            assert np.abs(w).max() > 0.99 * bound
            assert abs(w.std() - bound / math.sqrt(3)) < 0.03 * bound / math.sqrt(3)
    e = np.asarray(emb.weight, np.float64)
    assert abs(e.mean()) < 4 / math.sqrt(e.size) and abs(e.std() - 1) < 0.03
    monkeypatch.undo()
    # eagerly, the NumPy stream (torch-equal values elsewhere in this file) is unchanged
    jparam.manual_seed(0)
    a = np.asarray(nn.Linear(300, 200).weight)
    jparam.manual_seed(0)
    assert np.array_equal(a, np.asarray(nn.Linear(300, 200).weight))
    assert not np.array_equal(a, np.asarray(lin.weight))
