import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jparam.nn.functional as F
from _fcompare import assert_close, check, randn


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5), (2, 3, 4, 5), (2, 3, 2, 3, 4)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_train(shape, affine):
    rng = np.random.default_rng(len(shape))
    x = randn(rng, *shape, scale=2.0) + 0.5
    c = shape[1]
    rm, rv = randn(rng, c), np.abs(randn(rng, c)) + 0.5
    w, b = (randn(rng, c), randn(rng, c)) if affine else (None, None)
    trm, trv = torch.tensor(rm), torch.tensor(rv)

    def tfn(x, w, b):
        return TF.batch_norm(x, trm, trv, w, b, training=True, momentum=0.3)

    def jfn(x, w, b):
        return F.batch_norm(x, jnp.asarray(rm), jnp.asarray(rv), w, b, training=True, momentum=0.3)[0]

    check(jfn, tfn, [x, w, b], family="norm")
    _, nrm, nrv = F.batch_norm(jnp.asarray(x), jnp.asarray(rm), jnp.asarray(rv), training=True,
                               momentum=0.3)
    assert_close(nrm, trm.numpy(), what="running_mean", family="norm")
    assert_close(nrv, trv.numpy(), what="running_var", family="norm")


@pytest.mark.parametrize("shape", [(8, 3), (2, 3, 4, 5)])
def test_batch_norm_eval_and_no_stats(shape):
    rng = np.random.default_rng(7)
    x = randn(rng, *shape)
    c = shape[1]
    rm, rv, w, b = randn(rng, c), np.abs(randn(rng, c)) + 0.5, randn(rng, c), randn(rng, c)
    check(F.batch_norm, TF.batch_norm, [x, rm, rv, w, b], diff=[0, 3, 4], family="norm")
    check(lambda x: F.batch_norm(x, None, None, training=True),
          lambda x: TF.batch_norm(x, None, None, training=True), [x], family="norm")


def test_batch_norm_errors():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(jnp.ones((1, 3)), jnp.zeros(3), jnp.ones(3), training=True)
    with pytest.raises(ValueError, match="running_mean must have shape"):
        F.batch_norm(jnp.ones((2, 3)), jnp.zeros(4), jnp.ones(4))


@pytest.mark.parametrize("shape,ns", [((4, 6), (6,)), ((2, 3, 4, 5), (4, 5)), ((3, 7), (7,))])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(shape, ns, affine):
    rng = np.random.default_rng(11)  # not the cotangent's seed: x = 3·ct + 1 has zero grad
    x = randn(rng, *shape, scale=3.0) + 1.0
    w, b = (randn(rng, *ns), randn(rng, *ns)) if affine else (None, None)
    check(F.layer_norm, TF.layer_norm, [x, ns, w, b], family="norm")


@pytest.mark.parametrize("shape,g", [((4, 12), 3), ((2, 6, 5), 2), ((2, 4, 3, 3), 4), ((2, 4, 3, 3), 1)])
def test_group_norm(shape, g):
    rng = np.random.default_rng(2)
    x = randn(rng, *shape, scale=2.0)
    c = shape[1]
    check(F.group_norm, TF.group_norm, [x, g, randn(rng, c), randn(rng, c)], family="norm")
    check(F.group_norm, TF.group_norm, [x, g], family="norm")


@pytest.mark.parametrize("shape", [(2, 3, 6), (2, 3, 4, 5)])
def test_instance_norm(shape):
    rng = np.random.default_rng(3)
    x = randn(rng, *shape, scale=2.0)
    c = shape[1]
    check(F.instance_norm, TF.instance_norm, [x, None, None, randn(rng, c), randn(rng, c)],
          family="norm")
    rm, rv = randn(rng, c), np.abs(randn(rng, c)) + 0.5
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    ty = TF.instance_norm(torch.tensor(x), trm, trv, momentum=0.2)
    jy, nrm, nrv = F.instance_norm(jnp.asarray(x), jnp.asarray(rm), jnp.asarray(rv), momentum=0.2)
    assert_close(jy, ty.numpy(), family="norm")
    assert_close(nrm, trm.numpy(), family="norm")
    assert_close(nrv, trv.numpy(), family="norm")
    check(F.instance_norm, TF.instance_norm, [x, rm, rv], kwargs=dict(use_input_stats=False),
          diff=[0], family="norm")


@pytest.mark.parametrize("shape,ns", [((4, 6), (6,)), ((2, 3, 4, 5), (4, 5))])
@pytest.mark.parametrize("eps", [None, 1e-5])
def test_rms_norm(shape, ns, eps):
    rng = np.random.default_rng(4)
    x = randn(rng, *shape, scale=2.0)
    check(F.rms_norm, TF.rms_norm, [x, ns, randn(rng, *ns)], kwargs=dict(eps=eps), family="norm")
    check(F.rms_norm, TF.rms_norm, [x, ns], family="norm")


@pytest.mark.parametrize("shape,size", [((2, 6, 5), 3), ((2, 5, 4, 4), 2), ((1, 4, 2, 3, 3), 3)])
def test_local_response_norm(shape, size):
    x = randn(np.random.default_rng(5), *shape, scale=3.0)
    check(F.local_response_norm, TF.local_response_norm, [x, size], kwargs=dict(alpha=0.1, k=2.0),
          family="norm")


@pytest.mark.parametrize("p,dim", [(2.0, 1), (1.0, -1), (3.0, 0)])
def test_normalize(p, dim):
    x = randn(np.random.default_rng(6), 4, 5, 3)
    check(F.normalize, TF.normalize, [x], kwargs=dict(p=p, dim=dim), family="norm")


def test_batch_norm_jit():
    x = jnp.asarray(randn(np.random.default_rng(0), 8, 3))
    f = jax.jit(lambda x, m, v: F.batch_norm(x, m, v, training=True))
    y, m, v = f(x, jnp.zeros(3), jnp.ones(3))
    assert y.shape == (8, 3) and m.shape == (3,) and v.shape == (3,)
