"""``jparam.utils.checkpoint.checkpoint`` against ``torch.utils.checkpoint.checkpoint``, and
plain ``jax.checkpoint`` around stateful modules (works or raises ``TracerLeakError``)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.utils.checkpoint import checkpoint as tcheckpoint

import jparam
from jparam import nn as jnn
from jparam.utils.checkpoint import checkpoint

tnn = torch.nn


def _block(nn_):
    return nn_.Sequential(nn_.Linear(4, 6), nn_.BatchNorm1d(6), nn_.ReLU(), nn_.Linear(6, 3))


class _TNet(tnn.Module):
    def __init__(self, ckpt):
        super().__init__()
        self.block, self.head, self.ckpt = _block(tnn), tnn.Linear(3, 2), ckpt

    def forward(self, x):
        h = tcheckpoint(self.block, x, use_reentrant=False) if self.ckpt else self.block(x)
        return self.head(h)


class _JNet(jnn.Module):
    def __init__(self, ckpt):
        super().__init__()
        self.block, self.head, self.ckpt = _block(jnn), jnn.Linear(3, 2), ckpt

    def forward(self, x):
        h = checkpoint(self.block, x, use_reentrant=False) if self.ckpt else self.block(x)
        return self.head(h)


def _pair(ckpt):
    torch.manual_seed(0)
    tm, jm = _TNet(ckpt), _JNet(ckpt)
    jm.load_state_dict({k: v.numpy() for k, v in tm.state_dict().items()})
    return tm, jm


def _loss(m, x):
    return jnp.sum(m(x) ** 2)


@pytest.mark.parametrize("jit", [False, True])
def test_checkpoint_matches_torch_outputs_grads_and_stats(jit):
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    tm, jm = _pair(ckpt=True)
    tref, _ = _pair(ckpt=False)
    tm(torch.from_numpy(x)).square().sum().backward()
    tref(torch.from_numpy(x)).square().sum().backward()
    step = (lambda m, x: jparam.backward(_loss, m, x))
    loss, jm = (jax.jit(step) if jit else step)(jm, jnp.asarray(x))
    for n, p in tm.named_parameters():   # gradients: torch's, with and without checkpointing
        np.testing.assert_allclose(np.asarray(jm.get_parameter(n).grad), p.grad.numpy(),
                                   rtol=1e-4, atol=1e-5)
    # running statistics: one update, as an un-checkpointed forward (torch's recomputation
    # in backward updates BatchNorm a second time; jparam's recomputation writes nothing)
    for k, v in tref.state_dict().items():
        np.testing.assert_allclose(np.asarray(jm.state_dict()[k], np.float64), v.numpy(),
                                   rtol=1e-5, atol=1e-6)
    assert int(jm.block[1].num_batches_tracked) == 1


def test_checkpoint_remats_in_the_backward_pass():
    _, jm = _pair(ckpt=True)
    x = jnp.ones((8, 4))
    jaxpr = str(jax.make_jaxpr(lambda m, x: jparam.backward(_loss, m, x)[0])(jm, x))
    assert "checkpoint" in jaxpr or "remat" in jaxpr


def test_checkpoint_bound_method_and_statics_and_eager():
    torch.manual_seed(1)
    tb = _block(tnn)
    jb = _block(jnn)
    jb.load_state_dict({k: v.numpy() for k, v in tb.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    y = checkpoint(jb.forward, jnp.asarray(x))         # eager, bound method
    np.testing.assert_allclose(np.asarray(y), tb(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jb[1].running_mean), tb[1].running_mean.numpy(),
                               rtol=1e-5, atol=1e-6)
    # a plain function of arrays and non-array arguments
    f = lambda a, scale, flag=None: a * scale if flag is None else a  # noqa: E731
    np.testing.assert_allclose(np.asarray(checkpoint(f, jnp.arange(3.0), 2.0)), [0.0, 2.0, 4.0])


def test_checkpoint_refuses_structure_changes():
    class Grows(jnn.Module):
        def forward(self, x):
            self.seen = x
            return x

    with pytest.raises(ValueError, match="changed its structure"):
        checkpoint(Grows(), jnp.ones(2))


def test_plain_jax_checkpoint_around_stateful_module():
    # eager: a module created outside the trace refuses the traced update
    jm = _block(jnn)
    with pytest.raises(jparam.TracerLeakError):
        jax.checkpoint(lambda x: jm(x))(jnp.ones((4, 4)))
    assert int(jm[1].num_batches_tracked) == 0 and not isinstance(jm[1].running_mean, jax.core.Tracer)
    # the module as an argument works when the new module is returned (jparam.call)
    out, new = jax.checkpoint(lambda m, x: jparam.call(m, x))(jm, jnp.ones((4, 4)))
    assert int(new[1].num_batches_tracked) == 1


def test_checkpoint_dropout_same_mask_in_recomputation():
    jparam.manual_seed(0)
    m = jnn.Sequential(jnn.Linear(4, 16), jnn.Dropout(0.5))

    class Net(jnn.Module):
        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, x):
            return checkpoint(self.m, x)

    net, x = Net(), jnp.ones((3, 4))
    loss, g = jparam.backward(lambda n, x: jnp.sum(n(x)), net, x)
    # reference: the same model without checkpoint, from the same key
    ref = jnn.Sequential(jnn.Linear(4, 16), jnn.Dropout(0.5))
    ref.load_state_dict(m.state_dict())
    ref[1]._rng = m[1]._rng
    loss_r, g_r = jparam.backward(lambda n, x: jnp.sum(n(x)), ref, x)
    np.testing.assert_allclose(float(loss), float(loss_r), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g.m[0].weight.grad), np.asarray(g_r[0].weight.grad),
                               rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(g.m[1]._rng), np.asarray(g_r[1]._rng))
    assert not np.array_equal(np.asarray(g.m[1]._rng), np.asarray(m[1]._rng))


class _Captures(jnn.Module):
    """Plain jax.checkpoint around a captured stateful submodule inside the forward."""

    def __init__(self):
        super().__init__()
        self.block = _block(jnn)

    def forward(self, x):
        return jax.checkpoint(lambda x: self.block(x))(x)


@pytest.mark.parametrize("jit", [False, True])
def test_plain_jax_checkpoint_inside_forward_raises_at_the_leak(jit):
    net, x = _Captures(), jnp.ones((4, 4))
    step = (lambda m, x: jparam.backward(lambda m, x: jnp.sum(m(x)), m, x))
    with pytest.raises(jparam.TracerLeakError, match=r"block\.1\.running_mean"):
        (jax.jit(step) if jit else step)(net, x)
    with pytest.raises(jparam.TracerLeakError, match=r"num_batches_tracked|running_mean"):
        jparam.call(net, x)     # eager: the module is outside any trace, refused at the write
    with pytest.raises(jparam.TracerLeakError, match=r"block\.1\.running_mean"):
        jax.jit(jparam.call)(net, x)
    net.eval()   # no state written: works, and matches the un-checkpointed forward
    out, _ = jparam.call(net, x)
    np.testing.assert_allclose(np.asarray(out), np.asarray(net.block(x)), rtol=1e-6)
