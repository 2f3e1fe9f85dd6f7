"""jparam.backward / value_and_grad / grad / call against torch autograd: gradients of every
parameter (tied, shared, frozen), accumulation, has_aux, BatchNorm running statistics, purity."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jparam
from jparam import nn as jnn
from _core_models import B, V, assert_close, pair, rand_idx, randn, to_np

tnn = torch.nn
R1 = randn(B, V, seed=11)
R2 = randn(B, 3, seed=12)


def t_loss(out):
    logits, aux = out
    return (logits * torch.tensor(R1)).sum() + (aux ** 2 * torch.tensor(R2)).sum()


def j_loss(m, idx):
    logits, aux = m(idx)
    return jnp.sum(logits * R1) + jnp.sum(aux ** 2 * R2)


def _snapshot(m):
    return ([(n, to_np(p).copy(), p.grad) for n, p in m.named_parameters()],
            [(n, to_np(b).copy()) for n, b in m.named_buffers()])


def _assert_unchanged(m, snap):
    ps, bs = snap
    now = list(m.named_parameters())
    assert [n for n, _ in now] == [n for n, _, _ in ps]
    for (n, a, g), (_, p) in zip(ps, now):
        np.testing.assert_array_equal(to_np(p), a, err_msg=n)
        assert p.grad is g, n
    for (n, a), (_, b) in zip(bs, m.named_buffers()):
        np.testing.assert_array_equal(to_np(b), a, err_msg=n)


# A bias feeding BatchNorm in training mode has gradient zero in exact arithmetic: torch and
# jparam both return rounding noise there, of different size (jparam's normalisation backward
# projects last, torch centres last), so it is checked to be zero at float32 rounding of its
# layer's gradients (1e-5 of the weight's largest), not compared entry by entry.
_ZERO_IN_EXACT_ARITHMETIC = {"seq.0.bias": "seq.0.weight"}


def _assert_grads_match(tm, jm):
    grads = {n: p.grad for n, p in jm.named_parameters()}
    for (n, tp), (jn, jp) in zip(tm.named_parameters(), jm.named_parameters()):
        assert n == jn
        if tp.grad is None:
            assert jp.grad is None, n
        elif n in _ZERO_IN_EXACT_ARITHMETIC and jm.seq[1].training:
            scale = float(np.abs(to_np(grads[_ZERO_IN_EXACT_ARITHMETIC[n]])).max())
            for g in (jp.grad, tp.grad):
                assert float(np.abs(to_np(g)).max()) <= 1e-5 * scale, (n, to_np(g), scale)
        else:
            assert jp.grad is not None, n
            assert_close(jp.grad, tp.grad, rtol=1e-5, atol=1e-5, what=n)


def test_backward_grads_match_torch_all_params_tied_frozen():
    tm, jm = pair()
    idx = rand_idx()
    snap = _snapshot(jm)
    tl = t_loss(tm(torch.tensor(idx)))
    tl.backward()
    jl, jm2 = jparam.backward(j_loss, jm, jnp.asarray(idx))
    assert_close(jl, tl.detach())
    _assert_grads_match(tm, jm2)
    assert tm.frozen.grad is None and jm2.frozen.grad is None
    # the tied parameter: one object, one grad = sum of both uses
    assert jm2.head.weight is jm2.emb.weight
    assert jm2.shared2 is jm2.shared
    assert_close(jm2.head.weight.grad, tm.head.weight.grad, atol=1e-5)
    # buffers updated by the forward (BatchNorm, train mode)
    for (n, tb), (_, jb) in zip(tm.named_buffers(), jm2.named_buffers()):
        assert_close(jb, tb, what=n)
    assert int(jm2.seq[1].num_batches_tracked) == 1
    # the input model is never mutated
    _assert_unchanged(jm, snap)
    assert int(jm.seq[1].num_batches_tracked) == 0


def test_backward_eval_mode_uses_running_stats():
    tm, jm = pair(seed=4)
    tm.eval()
    jm.eval()
    idx = rand_idx(7)
    t_loss(tm(torch.tensor(idx))).backward()
    _, jm2 = jparam.backward(j_loss, jm, jnp.asarray(idx))
    _assert_grads_match(tm, jm2)
    for (n, tb), (_, jb) in zip(tm.named_buffers(), jm2.named_buffers()):
        assert_close(jb, tb, what=n)
    assert int(jm2.seq[1].num_batches_tracked) == 0


def test_backward_accumulates_like_torch():
    tp = tnn.Parameter(torch.tensor(randn(3, seed=5)))
    (3 * tp).sum().backward()
    (3 * tp).sum().backward()
    np.testing.assert_array_equal(to_np(tp.grad), np.full(3, 6.0, np.float32))

    class J(jnn.Module):
        def __init__(self):
            super().__init__()
            self.p = jnn.Parameter(jnp.asarray(randn(3, seed=5)))

    m = J()
    _, m = jparam.backward(lambda m: jnp.sum(3 * m.p), m)
    _, m = jparam.backward(lambda m: jnp.sum(3 * m.p), m)
    np.testing.assert_array_equal(np.asarray(m.p.grad), np.full(3, 6.0, np.float32))
    m = m.zero_grad()
    assert m.p.grad is None
    _, m = jparam.backward(lambda m: jnp.sum(3 * m.p), m)
    np.testing.assert_array_equal(np.asarray(m.p.grad), np.full(3, 3.0, np.float32))


def test_backward_accumulation_full_model_two_batches():
    tm, jm = pair(seed=6)
    i1, i2 = rand_idx(21), rand_idx(22)
    t_loss(tm(torch.tensor(i1))).backward()
    t_loss(tm(torch.tensor(i2))).backward()
    _, jm = jparam.backward(j_loss, jm, jnp.asarray(i1))
    _, jm = jparam.backward(j_loss, jm, jnp.asarray(i2))
    _assert_grads_match(tm, jm)
    for (n, tb), (_, jb) in zip(tm.named_buffers(), jm.named_buffers()):
        assert_close(jb, tb, what=n)
    assert int(jm.seq[1].num_batches_tracked) == 2


def test_frozen_via_constructor_and_requires_grad_():
    tm, jm = pair()
    tm.blocks[0].requires_grad_(False)
    jm.blocks[0].requires_grad_(False)
    tm.z.requires_grad_(False)
    jm.z.requires_grad_(False)
    idx = rand_idx(8)
    t_loss(tm(torch.tensor(idx))).backward()
    _, jm2 = jparam.backward(j_loss, jm, jnp.asarray(idx))
    _assert_grads_match(tm, jm2)
    assert jm2.blocks[0].lin.weight.grad is None and jm2.z.grad is None
    p = jnn.Parameter(jnp.ones(2), requires_grad=False)
    assert p.requires_grad is False


def test_has_aux():
    tm, jm = pair()
    idx = jnp.asarray(rand_idx())

    def f(m, i):
        logits, aux = m(i)
        return jnp.sum(logits * R1) + jnp.sum(aux ** 2 * R2), {"logits": logits, "n": 3}

    (loss, extra), jm2 = jparam.backward(f, jm, idx, has_aux=True)
    loss2, jm3 = jparam.backward(j_loss, jm, idx)
    assert_close(loss, loss2)
    assert set(extra) == {"logits", "n"} and extra["n"] == 3
    assert_close(extra["logits"], jm(idx)[0])
    for (n, a), (_, b) in zip(jm2.named_parameters(), jm3.named_parameters()):
        if a.grad is None:
            assert b.grad is None
        else:
            assert_close(a.grad, b.grad, what=n)
    with pytest.raises(TypeError, match="pair"):
        jparam.backward(lambda m, i: j_loss(m, i), jm, idx, has_aux=True)


def test_backward_rejects_non_scalar_and_non_module():
    jm = pair()[1]
    idx = jnp.asarray(rand_idx())
    with pytest.raises(TypeError, match="scalar"):
        jparam.backward(lambda m, i: m(i)[0], jm, idx)
    with pytest.raises(TypeError, match="Module"):
        jparam.backward(j_loss, {"w": jnp.ones(2)}, idx)


def test_value_and_grad_and_grad_structure():
    tm, jm = pair(seed=2)
    idx = rand_idx(9)
    t_loss(tm(torch.tensor(idx))).backward()
    val, g = jparam.value_and_grad(j_loss)(jm, jnp.asarray(idx))
    g2 = jparam.grad(j_loss)(jm, jnp.asarray(idx))
    assert isinstance(g, type(jm)) and isinstance(g2, type(jm))
    # same names and order as the model; grads in .data, frozen ones None
    assert [n for n, _ in g.named_parameters()] == [n for n, _ in tm.named_parameters()]
    for (n, tp), (_, gp), (_, gp2) in zip(tm.named_parameters(), g.named_parameters(),
                                          g2.named_parameters()):
        if tp.grad is None:
            assert gp.data is None and gp2.data is None, n
        else:
            assert_close(gp.data, tp.grad, atol=1e-5, what=n)
            np.testing.assert_array_equal(np.asarray(gp.data), np.asarray(gp2.data))
    assert g.head.weight is g.emb.weight
    # buffers and plain arrays are None in the gradient module; the input is untouched
    assert g.seq[1].running_mean is None and g.blocks[0].plain is None
    assert int(jm.seq[1].num_batches_tracked) == 0
    assert all(p.grad is None for p in jm.parameters())
    # the gradient module is a pytree with one leaf per trainable parameter
    n_train = sum(1 for p in jm.parameters() if p.requires_grad)
    assert len(jax.tree_util.tree_leaves(g)) == n_train
    # has_aux
    (v, aux), g3 = jparam.value_and_grad(lambda m, i: (j_loss(m, i), 7), has_aux=True)(jm, jnp.asarray(idx))
    assert aux == 7 and and_close(v, val)
    g4, aux4 = jparam.grad(lambda m, i: (j_loss(m, i), "x"), has_aux=True)(jm, jnp.asarray(idx))
    assert aux4 == "x"
    assert_close(g4.emb.weight.data, g.emb.weight.data)


def and_close(a, b):
    return np.allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


def test_value_and_grad_under_jit():
    tm, jm = pair(seed=2)
    idx = rand_idx(9)
    t_loss(tm(torch.tensor(idx))).backward()
    v, g = jax.jit(jparam.value_and_grad(j_loss))(jm, jnp.asarray(idx))
    assert_close(g.emb.weight.data, tm.emb.weight.grad, atol=1e-5)
    assert_close(g.seq[0].weight.data, tm.seq[0].weight.grad, atol=1e-5)


@pytest.mark.parametrize("momentum", [0.1, None, 0.5])
def test_batchnorm_running_stats_match_torch(momentum):
    tb = tnn.BatchNorm1d(4, momentum=momentum)
    jb = jnn.BatchNorm1d(4, momentum=momentum)
    with torch.no_grad():
        tb.weight.copy_(torch.tensor(randn(4, seed=1)))
        tb.bias.copy_(torch.tensor(randn(4, seed=2)))
    jb.load_state_dict(tb.state_dict())
    for step in range(3):
        x = randn(8, 4, seed=30 + step) * (step + 1) + step
        rr = randn(8, 4, seed=40 + step)
        (tb(torch.tensor(x)) * torch.tensor(rr)).sum().backward()
        jb = jb.zero_grad() if step == 0 else jb
        _, jb = jparam.backward(lambda m, x: jnp.sum(m(x) * rr), jb, jnp.asarray(x))
        assert_close(jb.running_mean, tb.running_mean, what=f"rm step {step}")
        assert_close(jb.running_var, tb.running_var, what=f"rv step {step}")
        assert int(jb.num_batches_tracked) == int(tb.num_batches_tracked) == step + 1
        assert_close(jb.weight.grad, tb.weight.grad, atol=1e-5)
        assert_close(jb.bias.grad, tb.bias.grad, atol=1e-5)
    # 3D input (N, C, L)
    x3 = randn(5, 4, 3, seed=50)
    tb.train()
    jb.train()
    with torch.no_grad():
        t3 = tb(torch.tensor(x3))
    j3, jb = jparam.call(jb, jnp.asarray(x3))
    assert_close(j3, t3, atol=1e-5)
    assert_close(jb.running_var, tb.running_var)
    # eval mode normalises with the running statistics and updates nothing
    tb.eval()
    jb.eval()
    x = randn(8, 4, seed=60)
    with torch.no_grad():
        te = tb(torch.tensor(x))
    je, jb2 = jparam.call(jb, jnp.asarray(x))
    assert_close(je, te, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(jb2.running_mean), np.asarray(jb.running_mean))
    assert int(jb2.num_batches_tracked) == int(tb.num_batches_tracked) == 4


def test_batchnorm_without_running_stats():
    tb = tnn.BatchNorm1d(3, track_running_stats=False)
    jb = jnn.BatchNorm1d(3, track_running_stats=False)
    assert list(jb.state_dict()) == list(tb.state_dict())
    x = randn(6, 3, seed=3)
    tb.eval()
    jb.eval()
    with torch.no_grad():
        assert_close(jb(jnp.asarray(x)), tb(torch.tensor(x)), atol=1e-5)


def test_call_returns_updated_buffers_and_leaves_input_unchanged():
    tm, jm = pair(seed=8)
    idx = rand_idx(12)
    snap = _snapshot(jm)
    with torch.no_grad():
        tout = tm(torch.tensor(idx))
    out, jm2 = jparam.call(jm, jnp.asarray(idx))
    for a, b in zip(out, tout):
        assert_close(a, b)
    _assert_unchanged(jm, snap)
    for (n, tb), (_, jb) in zip(tm.named_buffers(), jm2.named_buffers()):
        assert_close(jb, tb, what=n)
    assert int(jm2.seq[1].num_batches_tracked) == 1
    assert jm2.head.weight is jm2.emb.weight
    # under jit too
    out3, jm3 = jax.jit(jparam.call)(jm, jnp.asarray(idx))
    assert_close(out3[0], tout[0])
    assert_close(jm3.seq[1].running_mean, tm.seq[1].running_mean)
    _assert_unchanged(jm, snap)


def test_backward_does_not_mutate_model_with_existing_grads():
    jm = pair()[1]
    idx = jnp.asarray(rand_idx())
    _, jm1 = jparam.backward(j_loss, jm, idx)
    snap = _snapshot(jm1)
    _, jm2 = jparam.backward(j_loss, jm1, idx)
    _assert_unchanged(jm1, snap)
    assert_close(jm2.emb.weight.grad, 2 * jm1.emb.weight.grad)
    # inside jit, the argument model is not mutated either
    snap0 = _snapshot(jm)
    jax.jit(lambda m, i: jparam.backward(j_loss, m, i))(jm, idx)
    _assert_unchanged(jm, snap0)


def test_gradients_of_plain_array_and_buffers_are_stopped():
    class J(jnn.Module):
        def __init__(self):
            super().__init__()
            self.w = jnn.Parameter(jnp.asarray(randn(3, seed=1)))
            self.register_buffer("b", jnp.asarray(randn(3, seed=2)))
            self.a = jnp.asarray(randn(3, seed=3))

        def forward(self, x):
            return jnp.sum(self.w * self.b * self.a * x)

    class T(tnn.Module):
        def __init__(self):
            super().__init__()
            self.w = tnn.Parameter(torch.tensor(randn(3, seed=1)))
            self.register_buffer("b", torch.tensor(randn(3, seed=2)))
            self.a = torch.tensor(randn(3, seed=3))

        def forward(self, x):
            return (self.w * self.b * self.a * x).sum()

    x = randn(3, seed=4)
    t = T()
    t(torch.tensor(x)).backward()
    loss, j = jparam.backward(lambda m, x: m(x), J(), jnp.asarray(x))
    assert_close(j.w.grad, t.w.grad)
    # the buffer and array carry no grads and stay arrays
    assert isinstance(j.b, jax.Array) and isinstance(j.a, jax.Array)
    # differentiating through a closure over x works and x is not a parameter
    g = jax.grad(lambda x: jparam.backward(lambda m, x: m(x), J(), x)[0])(jnp.asarray(x))
    assert_close(g, to_np(t.w * t.b * t.a))


def test_has_aux_accepts_non_array_aux_like_jax_grad():
    """jax.grad(has_aux=True) passes any aux through unchanged; so does jparam.backward."""
    jm = pair()[1]
    idx = jnp.asarray(rand_idx())
    ref = jax.grad(lambda x: (x ** 2, {"n": 3, "s": "x"}), has_aux=True)(1.0)[1]

    def f(m, i):
        logits, _ = m(i)
        return jnp.sum(logits * R1), {"n": 3, "s": "x", "none": None, "logits": logits}

    (loss, extra), jm2 = jparam.backward(f, jm, idx, has_aux=True)
    assert extra["n"] == ref["n"] == 3 and type(extra["n"]) is int
    assert extra["s"] == "x" and extra["none"] is None
    assert_close(extra["logits"], jm(idx)[0])
    assert jm2.emb.weight.grad is not None
    # and under jit (static aux values cannot leave jit, so return only arrays from it)
    out = jax.jit(lambda m, i: jparam.backward(f, m, i, has_aux=True)[0][1]["logits"])(jm, idx)
    assert_close(out, extra["logits"])


def test_unused_parameter_gets_no_grad_like_torch():
    class T(tnn.Module):
        def __init__(self):
            super().__init__()
            self.a = tnn.Parameter(torch.tensor(randn(3, seed=1)))
            self.b = tnn.Parameter(torch.tensor(randn(3, seed=2)))

        def forward(self, x):
            return (self.a * x).sum()

    class J(jnn.Module):
        def __init__(self):
            super().__init__()
            self.a = jnn.Parameter(jnp.asarray(randn(3, seed=1)))
            self.b = jnn.Parameter(jnp.asarray(randn(3, seed=2)))

        def forward(self, x):
            return jnp.sum(self.a * x)

    x = randn(3, seed=3)
    t = T()
    t(torch.tensor(x)).backward()
    _, j = jparam.backward(lambda m, x: m(x), J(), jnp.asarray(x))
    assert t.b.grad is None and j.b.grad is None
    assert_close(j.a.grad, t.a.grad)
    # multiplied by zero is still "used": a zero grad, not None (torch)
    t2 = T()
    (t2.a * torch.tensor(x)).sum().add((t2.b * 0).sum()).backward()
    _, j2 = jparam.backward(lambda m, x: jnp.sum(m.a * x) + jnp.sum(m.b * 0), J(), jnp.asarray(x))
    assert t2.b.grad is not None and j2.b.grad is not None
    assert_close(j2.b.grad, t2.b.grad)
    # under jit as well
    _, j3 = jax.jit(lambda m, x: jparam.backward(lambda m, x: m(x), m, x))(J(), jnp.asarray(x))
    assert j3.b.grad is None and j3.a.grad is not None


def test_grad_mask_traces_forward_once_unless_a_parameter_is_unreached():
    """The mask comes from the vjp's linear jaxpr; the forward is re-traced (forward only)
    only to classify parameters whose tangent does not reach the loss: ``round`` reads the
    parameter (zero grad, as torch's round backward), an unused one gets ``None``."""
    calls = []

    class J(jnn.Module):
        def __init__(self):
            super().__init__()
            self.a = jnn.Parameter(jnp.asarray(randn(3, seed=1)))
            self.r = jnn.Parameter(jnp.asarray(randn(3, seed=2) * 3))
            self.u = jnn.Parameter(jnp.asarray(randn(3, seed=4)))

        def forward(self, x, use_r):
            calls.append(1)
            out = jnp.sum(self.a * x)
            return out + jnp.sum(jnp.round(self.r) * x) if use_r else out

    class T(tnn.Module):
        def __init__(self):
            super().__init__()
            self.a = tnn.Parameter(torch.tensor(randn(3, seed=1)))
            self.r = tnn.Parameter(torch.tensor(randn(3, seed=2) * 3))
            self.u = tnn.Parameter(torch.tensor(randn(3, seed=4)))

    x = randn(3, seed=3)
    t = T()
    ((t.a * torch.tensor(x)).sum() + (torch.round(t.r) * torch.tensor(x)).sum()).backward()
    _, j = jparam.backward(lambda m, x: m(x, True), J(), jnp.asarray(x))
    assert len(calls) == 2  # u is unreached: one forward-only trace to classify it
    assert t.u.grad is None and j.u.grad is None
    assert_close(j.r.grad, t.r.grad)  # zeros
    np.testing.assert_array_equal(np.asarray(j.r.grad), 0.0)
    assert_close(j.a.grad, t.a.grad)
    calls.clear()

    class K(jnn.Module):
        def __init__(self):
            super().__init__()
            self.a = jnn.Parameter(jnp.asarray(randn(3, seed=1)))
            self.b = jnn.Parameter(jnp.asarray(randn(3, seed=2)))

        def forward(self, x):
            calls.append(1)
            return jnp.sum(jnp.tanh(self.a * x) * self.b)

    _, k = jax.jit(lambda m, x: jparam.backward(lambda m, x: m(x), m, x))(K(), jnp.asarray(x))
    assert len(calls) == 1  # every parameter reached: the forward is traced once
    a, b = randn(3, seed=1), randn(3, seed=2)
    th = np.tanh(a * x)
    assert_close(k.b.grad, th)
    assert_close(k.a.grad, (1 - th ** 2) * x * b)


def test_same_layer_twice_in_sequential_like_torch():
    tl = tnn.Linear(3, 3)
    ts = tnn.Sequential(tl, tnn.Tanh(), tl)
    jl = jnn.Linear(3, 3)
    jl.load_state_dict(tl.state_dict())

    class JTanh(jnn.Module):
        def forward(self, x):
            return jnp.tanh(x)

    js = jnn.Sequential(jl, JTanh(), jl)
    assert [n for n, _ in js.named_parameters()] == [n for n, _ in ts.named_parameters()] == \
        ["0.weight", "0.bias"]
    assert list(js.state_dict()) == list(ts.state_dict())
    assert [n for n, _ in js.named_children()] == [n for n, _ in ts.named_children()]
    assert len(js) == len(ts) == 3
    x = randn(4, 3, seed=5)
    ts(torch.tensor(x)).pow(2).sum().backward()
    _, js2 = jparam.backward(lambda m, x: jnp.sum(m(x) ** 2), js, jnp.asarray(x))
    assert js2[0] is js2[2]
    assert_close(js2[0].weight.grad, tl.weight.grad, atol=1e-6)
    assert_close(js2[2].bias.grad, tl.bias.grad, atol=1e-6)


def test_backward_passes_kwargs_and_dropout_edge_probabilities():
    tm, jm = pair("MLP", seed=3)
    x, y = randn(5, 4, seed=1), randn(5, 3, seed=2)
    ((tm(torch.tensor(x)) - torch.tensor(y)) ** 2).mean().backward()
    _, jm2 = jparam.backward(lambda m, x, *, y: jnp.mean((m(x) - y) ** 2), jm, jnp.asarray(x),
                             y=jnp.asarray(y))
    for (n, a), (_, b) in zip(jm2.named_parameters(), tm.named_parameters()):
        assert_close(a.grad, b.grad, atol=1e-6, what=n)
    z = randn(3, 4, seed=3)
    for p in (0.0, 1.0):
        td, jd = tnn.Dropout(p), jnn.Dropout(p)
        out, _ = jparam.call(jd, jnp.asarray(z))
        assert_close(out, td(torch.tensor(z)))
    with pytest.raises(ValueError, match="dropout probability"):
        tnn.Dropout(1.5)
    with pytest.raises(ValueError, match="dropout probability"):
        jnn.Dropout(1.5)
