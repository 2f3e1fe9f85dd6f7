"""Modules under JAX transforms: the contract training loop compiles once, static attributes
retrace, equal tree structures, vmap over an ensemble, scan with a model in the carry, dropout
keys under jit, tracer-leak detection, lr changes without recompiling, ties through jit/step."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jparam
from jparam import nn as jnn
from jparam import optim
from _core_models import B, V, assert_close, classes, pair, rand_idx, randn
from jparam.nn.utils import clip_grad_norm_

tnn = torch.nn


def mse(m, x, y):
    return jnp.mean((m(x) - y) ** 2)


def make_train_step(counter):
    @jax.jit
    def train_step(model, opt, x, y):
        counter.append(1)
        model = model.zero_grad()
        loss, model = jparam.backward(lambda m, x, y: jnp.mean((m(x) - y) ** 2), model, x, y)
        model, opt = opt.step(model)
        return model, opt, loss

    return train_step


class DropMLP(jnn.Module):
    def __init__(self, p=0.5):
        super().__init__()
        self.fc1 = jnn.Linear(4, 16)
        self.drop = jnn.Dropout(p)
        self.bn = jnn.BatchNorm1d(16)
        self.fc2 = jnn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(self.bn(self.drop(jnp.tanh(self.fc1(x)))))


def _data(seed=0, n=8):
    return jnp.asarray(randn(n, 4, seed=seed)), jnp.asarray(randn(n, 3, seed=seed + 100))


def test_contract_loop_compiles_once_and_matches_eager():
    traces = []
    train_step = make_train_step(traces)
    tm, model = pair("MLP", seed=1)
    ref = classes("jparam")["MLP"]()
    ref.load_state_dict(tm.state_dict())
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ropt = optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    losses, rlosses = [], []
    for step in range(5):
        x, y = _data(step)
        model, opt, loss = train_step(model, opt, x, y)
        losses.append(float(loss))
        # the same step, eagerly
        ref = ref.zero_grad()
        rl, ref = jparam.backward(mse, ref, x, y)
        ref, ropt = ropt.step(ref)
        rlosses.append(float(rl))
    assert len(traces) == 1, f"train_step traced {len(traces)} times"
    assert train_step._cache_size() == 1
    np.testing.assert_allclose(losses, rlosses, rtol=1e-5)
    for (n, a), (_, b) in zip(model.named_parameters(), ref.named_parameters()):
        assert_close(a, b, what=n)
    assert losses[-1] < losses[0]


def test_contract_loop_full_model_once_ties_survive_and_matches_torch():
    """The contract loop on the model with ties, shared modules, BatchNorm, frozen params."""
    traces = []

    @jax.jit
    def train_step(model, opt, idx, y):
        traces.append(1)
        model = model.zero_grad()
        loss, model = jparam.backward(
            lambda m, i, y: jnp.mean((m(i)[0] - y) ** 2) + jnp.mean(m(i)[1] ** 2), model, idx, y)
        model, opt = opt.step(model)
        return model, opt, loss

    tm, jm = pair(seed=3)
    topt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    jopt = optim.SGD(jm.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    for step in range(5):
        idx = rand_idx(40 + step)
        y = randn(B, V, seed=50 + step)
        topt.zero_grad()
        out = tm(torch.tensor(idx))
        out2 = tm(torch.tensor(idx))
        tl = ((out[0] - torch.tensor(y)) ** 2).mean() + (out2[1] ** 2).mean()
        tl.backward()
        topt.step()
        jm, jopt, jl = train_step(jm, jopt, jnp.asarray(idx), jnp.asarray(y))
        assert_close(jl, tl.detach(), rtol=1e-5, atol=1e-6)
        assert jm.head.weight is jm.emb.weight
        assert jm.shared2 is jm.shared
    assert len(traces) == 1
    for (n, tp), (_, jp) in zip(tm.named_parameters(), jm.named_parameters()):
        assert_close(jp, tp, rtol=1e-4, atol=1e-5, what=n)
    for (n, tb), (_, jb) in zip(tm.named_buffers(), jm.named_buffers()):
        assert_close(jb, tb, rtol=1e-4, atol=1e-5, what=n)
    assert int(jm.seq[1].num_batches_tracked) == 10
    # the frozen parameter never moved (no weight decay either)
    assert_close(jm.frozen, tm.frozen)
    # state_dict of the trained model still lists the tied weight under both names
    sd = jm.state_dict()
    np.testing.assert_array_equal(np.asarray(sd["head.weight"]), np.asarray(sd["emb.weight"]))


def test_changing_training_retraces_and_back_hits_cache():
    traces = []
    train_step = make_train_step(traces)
    model = DropMLP()
    opt = optim.SGD(model.parameters(), lr=0.01)
    x, y = _data(1)
    model, opt, _ = train_step(model, opt, x, y)
    model, opt, _ = train_step(model, opt, x, y)
    assert len(traces) == 1
    model.eval()
    assert not model.bn.training
    model, opt, _ = train_step(model, opt, x, y)
    assert len(traces) == 2
    assert not model.bn.training and not model.training  # static flag preserved through jit
    model.train()
    model, opt, _ = train_step(model, opt, x, y)
    assert len(traces) == 2  # back to the first compiled program


def test_same_architecture_twice_equal_tree_structure():
    jparam.manual_seed(0)
    a = classes("jparam")["Net"]()
    b = classes("jparam")["Net"]()
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    assert hash(jax.tree_util.tree_structure(a)) == hash(jax.tree_util.tree_structure(b))
    # a different static attribute or architecture is a different structure
    b.eval()
    assert jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b)
    c = classes("jparam")["Net"](d=6)
    assert jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(c)
    # the tie is one leaf: leaves == unique params + buffers + plain arrays
    leaves = jax.tree_util.tree_leaves(a)
    n_params = len(list(a.parameters()))
    n_buf = len(list(a.named_buffers()))
    assert len(leaves) == n_params + n_buf + 2  # + the two Block.plain arrays
    # a second model of the same architecture hits the compiled cache
    traces = []
    f = jax.jit(lambda m, i: (traces.append(1), m(i)[0])[1])
    idx = jnp.asarray(rand_idx())
    f(a, idx)
    f(classes("jparam")["Net"](), idx)
    assert len(traces) == 1
    # the model after a step has the structure of the model before it
    opt = optim.SGD(a.parameters(), lr=0.1)
    _, a2 = jparam.backward(lambda m, i: jnp.sum(m(i)[0]), a, idx)
    a3, _ = opt.step(a2)
    assert jax.tree_util.tree_structure(a3) == jax.tree_util.tree_structure(a)


def test_vmap_over_stacked_ensemble():
    jparam.manual_seed(1)
    m1, m2 = classes("jparam")["MLP"](), classes("jparam")["MLP"]()
    stacked = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), m1, m2)
    assert stacked.base[0].weight.shape == (2,) + m1.base[0].weight.shape
    xs = jnp.asarray(randn(2, 5, 4, seed=3))
    out = jax.vmap(lambda m, x: m(x))(stacked, xs)
    assert_close(out[0], m1(xs[0]))
    assert_close(out[1], m2(xs[1]))
    # same input for both members (in_axes None for x), under jit
    x = xs[0]
    out2 = jax.jit(jax.vmap(lambda m, x: m(x), in_axes=(0, None)))(stacked, x)
    assert_close(out2[0], m1(x))
    assert_close(out2[1], m2(x))
    assert not np.allclose(np.asarray(out2[0]), np.asarray(out2[1]))
    # per-member gradients with vmap(grad)
    y = jnp.asarray(randn(5, 3, seed=4))
    gs = jax.vmap(lambda m: jparam.grad(mse)(m, x, y))(stacked)
    g1 = jparam.grad(mse)(m1, x, y)
    assert_close(gs.head.weight.data[0], g1.head.weight.data)


def test_scan_with_model_in_carry():
    tm, model = pair("MLP", seed=2)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    xs = jnp.asarray(randn(4, 8, 4, seed=5))
    ys = jnp.asarray(randn(4, 8, 3, seed=6))

    def body(carry, xy):
        m, o = carry
        m = m.zero_grad()
        loss, m = jparam.backward(mse, m, *xy)
        m, o = o.step(m)
        return (m, o), loss

    (m_scan, _), losses = jax.lax.scan(body, (model, opt), (xs, ys))
    m_loop, o_loop, loop_losses = model, opt, []
    for i in range(4):
        (m_loop, o_loop), l = body((m_loop, o_loop), (xs[i], ys[i]))
        loop_losses.append(l)
    assert_close(losses, jnp.stack(loop_losses))
    for (n, a), (_, b) in zip(m_scan.named_parameters(), m_loop.named_parameters()):
        assert_close(a, b, what=n)
    # and torch agrees
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    for i in range(4):
        topt.zero_grad()
        ((tm(torch.tensor(np.asarray(xs[i]))) - torch.tensor(np.asarray(ys[i]))) ** 2).mean().backward()
        topt.step()
    for (n, a), (_, b) in zip(m_scan.named_parameters(), tm.named_parameters()):
        assert_close(a, b, what=n)


def test_scan_over_forward_with_batchnorm_state():
    jparam.manual_seed(3)
    model = DropMLP(p=0.0)
    xs = jnp.asarray(randn(3, 8, 4, seed=7))

    def body(m, x):
        out, m = jparam.call(m, x)
        return m, out

    m_end, outs = jax.lax.scan(body, model, xs)
    assert int(m_end.bn.num_batches_tracked) == 3
    m = model
    for i in range(3):
        o, m = jparam.call(m, xs[i])
        assert_close(outs[i], o)
    assert_close(m_end.bn.running_mean, m.bn.running_mean)


def _dropout_run(seed, steps=3):
    jparam.manual_seed(seed)
    drop = jnn.Dropout(0.5)
    x = jnp.ones((64,))
    f = jax.jit(jparam.call)
    outs = []
    for _ in range(steps):
        y, drop = f(drop, x)
        outs.append(np.asarray(y))
    return outs


def test_dropout_fresh_mask_each_step_reproducible_with_manual_seed():
    a = _dropout_run(0)
    for y in a:
        assert set(np.unique(y)) <= {0.0, 2.0}  # kept values scaled by 1/(1-p)
        assert 10 < (y == 0).sum() < 54
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
    b = _dropout_run(0)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    c = _dropout_run(1)
    assert not np.array_equal(a[0], c[0])
    # eval: identity
    d = jnn.Dropout(0.5).eval()
    np.testing.assert_array_equal(np.asarray(d(jnp.ones(8))), np.ones(8))


def test_dropout_in_contract_loop_fresh_masks_no_retrace():
    traces = []

    @jax.jit
    def step(model, opt, x, y):
        traces.append(1)
        model = model.zero_grad()
        (loss, out), model = jparam.backward(lambda m, x, y: (jnp.mean((m(x) - y) ** 2), m(x)),
                                             model, x, y, has_aux=True)
        model, opt = opt.step(model)
        return model, opt, out

    def run():
        jparam.manual_seed(7)
        model = DropMLP(0.5)
        opt = optim.SGD(model.parameters(), lr=0.0)
        x, y = _data(2)
        outs = []
        for _ in range(3):
            model, opt, out = step(model, opt, x, y)
            outs.append(np.asarray(out))
        return outs

    o1 = run()
    assert len(traces) == 1
    assert not np.allclose(o1[0], o1[1])  # lr 0: only the dropout mask changes the output
    assert not np.allclose(o1[1], o1[2])
    o2 = run()
    for u, v in zip(o1, o2):
        np.testing.assert_array_equal(u, v)


def test_closed_over_model_mutated_in_jit_raises_tracer_leak():
    bn = jnn.BatchNorm1d(4)
    x = jnp.asarray(randn(6, 4, seed=1))
    with pytest.raises(jparam.TracerLeakError):
        jax.jit(lambda x: bn(x))(x)
    # the model is not corrupted: its state is still concrete and usable
    assert not isinstance(bn.running_mean, jax.core.Tracer)
    assert int(bn.num_batches_tracked) == 0
    out, bn2 = jparam.call(bn, x)
    assert int(bn2.num_batches_tracked) == 1
    # a whole model with BatchNorm inside, closed over by a jitted jax.grad
    net = DropMLP(0.0)
    with pytest.raises(jparam.TracerLeakError):
        jax.jit(jax.grad(lambda x: jnp.sum(net(x))))(x[:, :4])
    # eager jax.grad: BatchNorm stores stop_gradient'ed (concrete) statistics, as torch would
    jax.grad(lambda x: jnp.sum(net(x)))(x[:, :4])
    assert not isinstance(net.bn.running_mean, jax.core.Tracer) and int(net.bn.num_batches_tracked) == 1
    # eval mode mutates nothing, so closing over is fine
    bn.eval()
    jax.jit(lambda x: bn(x))(x)
    # assigning a traced value to a parameter of an outside model also raises
    lin = jnn.Linear(4, 2)
    with pytest.raises(jparam.TracerLeakError):
        jax.jit(lambda x: setattr(lin, "weight", jnn.Parameter(x[:2])))(x)
    with pytest.raises(jparam.TracerLeakError):
        jax.jit(lambda x: setattr(lin.weight, "data", x[:2]))(x)
    assert isinstance(lin.weight.data, jax.Array) and not isinstance(lin.weight.data, jax.core.Tracer)


def test_lr_change_does_not_recompile_and_changes_update():
    traces = []
    train_step = make_train_step(traces)
    tm, model = pair("MLP", seed=4)
    opt = optim.SGD(model.parameters(), lr=0.1)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1)
    for step, lr in enumerate([0.1, 0.1, 0.5, 0.0, 0.01]):
        opt.param_groups[0]["lr"] = lr
        for g in topt.param_groups:
            g["lr"] = lr
        x, y = _data(10 + step)
        before = [np.asarray(p.data).copy() for p in model.parameters()]
        model, opt, _ = train_step(model, opt, x, y)
        topt.zero_grad()
        ((tm(torch.tensor(np.asarray(x))) - torch.tensor(np.asarray(y))) ** 2).mean().backward()
        topt.step()
        after = [np.asarray(p.data) for p in model.parameters()]
        moved = any(not np.array_equal(a, b) for a, b in zip(before, after))
        assert moved == (lr != 0.0)
        for (n, a), (_, b) in zip(model.named_parameters(), tm.named_parameters()):
            assert_close(a, b, what=f"step {step} {n}")
    assert len(traces) == 1
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(0.01)


def test_ties_survive_jit_identity_and_values():
    jm = pair()[1]
    out = jax.jit(lambda m: m)(jm)
    assert out.head.weight is out.emb.weight
    assert out.shared2 is out.shared
    assert [n for n, _ in out.named_parameters()] == [n for n, _ in jm.named_parameters()]
    assert list(out.state_dict()) == list(jm.state_dict())
    assert out.frozen.requires_grad is False
    # the non-persistent buffer and plain array travel through jit as data
    assert_close(out.blocks[0].nb, jm.blocks[0].nb)
    assert_close(out.blocks[0].plain, jm.blocks[0].plain)
    assert [n for n, _ in out.named_buffers()] == [n for n, _ in jm.named_buffers()]


def test_plain_array_is_traced_not_baked():
    traces = []
    lin = jnn.Linear(2, 2)

    class M(jnn.Module):
        def __init__(self, s):
            super().__init__()
            self.lin = lin
            self.scale = jnp.asarray(s)
            self.k = 3  # static

        def forward(self, x):
            return self.lin(x) * self.scale * self.k

    f = jax.jit(lambda m, x: (traces.append(1), m(x))[1])
    x = jnp.ones((1, 2))
    a = f(M(1.0), x)
    b = f(M(2.0), x)
    assert len(traces) == 1
    assert_close(b, 2 * a)
    m3 = M(1.0)
    m3.k = 4
    f(m3, x)
    assert len(traces) == 2


def test_jit_cache_hit_keeps_second_models_parameter_identity():
    f = jax.jit(lambda m, x: jparam.backward(mse, m, x, jnp.zeros((2, 2)))[1])
    x = jnp.ones((2, 3))
    m1 = jnn.Linear(3, 2)
    f(m1, x)
    m2 = jnn.Linear(3, 2)
    opt2 = optim.SGD(m2.parameters(), lr=0.1)
    m2b = f(m2, x)  # cache hit: same architecture
    m2c, opt2 = opt2.step(m2b)
    assert not np.allclose(np.asarray(m2c.weight.data), np.asarray(m2.weight.data))


def test_fresh_model_and_optimizer_reuse_compiled_step():
    traces = []
    train_step = make_train_step(traces)
    x, y = _data(3)
    for _ in range(2):
        model = classes("jparam")["MLP"]()
        opt = optim.SGD(model.parameters(), lr=0.1)
        train_step(model, opt, x, y)
    assert jax.tree_util.tree_structure(opt) == jax.tree_util.tree_structure(
        optim.SGD(classes("jparam")["MLP"]().parameters(), lr=0.1))
    assert len(traces) == 1


def test_requires_grad_toggle_retraces_and_frozen_param_stays():
    traces = []
    train_step = make_train_step(traces)
    tm, model = pair("MLP", seed=5)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)

    def tstep(x, y):
        topt.zero_grad()
        ((tm(torch.tensor(np.asarray(x))) - torch.tensor(np.asarray(y))) ** 2).mean().backward()
        topt.step()

    x, y = _data(20)
    model, opt, _ = train_step(model, opt, x, y)
    tstep(x, y)
    model.head.requires_grad_(False)
    tm.head.requires_grad_(False)
    frozen = [np.asarray(p.data).copy() for p in model.head.parameters()]
    for s in range(3):
        x, y = _data(21 + s)
        model, opt, _ = train_step(model, opt, x, y)
        tstep(x, y)
    assert len(traces) == 2  # requires_grad is static: one retrace, then cached
    for p, f in zip(model.head.parameters(), frozen):
        np.testing.assert_array_equal(np.asarray(p.data), f)
        assert p.requires_grad is False and p.grad is None
    for (n, a), (_, b) in zip(model.named_parameters(), tm.named_parameters()):
        assert_close(a, b, what=n)


def test_mutating_the_argument_model_inside_jit_returns_updates():
    jparam.manual_seed(4)
    model = DropMLP(0.0)
    x, _ = _data(30)

    @jax.jit
    def f(m, x):
        y = m(x)  # BatchNorm mutates the traced copy: allowed, nothing leaks
        m.fc2.weight = jnn.Parameter(m.fc2.weight.data * 0 + 1.0)
        return m, y

    m2, y = f(model, x)
    assert int(m2.bn.num_batches_tracked) == 1 and int(model.bn.num_batches_tracked) == 0
    assert float(m2.fc2.weight.data.min()) == 1.0
    assert float(model.fc2.weight.data.min()) != 1.0
    _, m3 = jparam.call(model, x)
    assert_close(m2.bn.running_mean, m3.bn.running_mean)


def test_zero_grad_and_opt_zero_grad_inside_jit_keep_ties():
    jm = pair()[1]
    idx = jnp.asarray(rand_idx())
    opt = optim.SGD(jm.parameters(), lr=0.1)

    @jax.jit
    def f(m):
        _, m = jparam.backward(lambda m, i: jnp.sum(m(i)[0] ** 2), m, idx)
        a = m.zero_grad()
        b = opt.zero_grad(m)
        c = m.zero_grad(set_to_none=False)
        return m, a, b, c

    m, a, b, c = f(jm)
    assert m.emb.weight.grad is not None and m.head.weight is m.emb.weight
    assert all(p.grad is None for p in a.parameters()) and a.head.weight is a.emb.weight
    assert all(p.grad is None for p in b.parameters())
    assert float(jnp.abs(c.emb.weight.grad).sum()) == 0.0 and c.frozen.grad is None


def test_accumulation_across_two_jitted_backward_calls():
    tm, jm = pair("MLP", seed=6)
    f = jax.jit(lambda m, x, y: jparam.backward(mse, m, x, y)[1])
    (x1, y1), (x2, y2) = _data(40), _data(41)
    jm = f(f(jm, x1, y1), x2, y2)
    for x, y in ((x1, y1), (x2, y2)):
        ((tm(torch.tensor(np.asarray(x))) - torch.tensor(np.asarray(y))) ** 2).mean().backward()
    for (n, a), (_, b) in zip(jm.named_parameters(), tm.named_parameters()):
        assert_close(a.grad, b.grad, what=n)


def _step_fn(model, opt, x, y):
    model = model.zero_grad()
    loss, model = jparam.backward(lambda m, x, y: jnp.mean((m(x) - y) ** 2), model, x, y)
    model, opt = opt.step(model)
    return model, opt, loss


def test_donated_contract_loop_matches_undonated():
    tm, m1 = pair("MLP", seed=8)
    m2 = classes("jparam")["MLP"]()
    m2.load_state_dict(tm.state_dict())
    o1 = optim.SGD(m1.parameters(), lr=0.1, momentum=0.9)
    o2 = optim.SGD(m2.parameters(), lr=0.1, momentum=0.9)
    donated = jax.jit(_step_fn, donate_argnums=(0, 1))
    plain = jax.jit(_step_fn)
    for s in range(5):
        x, y = _data(60 + s)
        m1, o1, l1 = donated(m1, o1, x, y)
        m2, o2, l2 = plain(m2, o2, x, y)
        assert float(l1) == float(l2)
    for (n, a), (_, b) in zip(m1.named_parameters(), m2.named_parameters()):
        np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data), err_msg=n)


def test_deepcopy_snapshot_survives_donated_steps():
    import copy

    _, model = pair("MLP", seed=9)
    opt = optim.SGD(model.parameters(), lr=0.1)
    snapshot = copy.deepcopy(model)
    before = [np.asarray(p.data).copy() for p in model.parameters()]
    donated = jax.jit(_step_fn, donate_argnums=(0, 1))
    x, y = _data(70)
    model, opt, _ = donated(model, opt, x, y)
    for p, b in zip(snapshot.parameters(), before):
        np.testing.assert_array_equal(np.asarray(p.data), b)
    snapshot(x)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_stats_through_jitted_contract_loop_match_torch(momentum):
    class T(tnn.Module):
        def __init__(self):
            super().__init__()
            self.fc = tnn.Linear(4, 6)
            self.bn = tnn.BatchNorm1d(6, momentum=momentum)
            self.out = tnn.Linear(6, 3)

        def forward(self, x):
            return self.out(torch.tanh(self.bn(self.fc(x))))

    class J(jnn.Module):
        def __init__(self):
            super().__init__()
            self.fc = jnn.Linear(4, 6)
            self.bn = jnn.BatchNorm1d(6, momentum=momentum)
            self.out = jnn.Linear(6, 3)

        def forward(self, x):
            return self.out(jnp.tanh(self.bn(self.fc(x))))

    tm, jm = T(), J()
    jm.load_state_dict(tm.state_dict())
    topt = torch.optim.SGD(tm.parameters(), lr=0.1)
    jopt = optim.SGD(jm.parameters(), lr=0.1)
    traces = []
    step = make_train_step(traces)
    for s in range(4):
        x, y = _data(80 + s)
        topt.zero_grad()
        ((tm(torch.tensor(np.asarray(x))) - torch.tensor(np.asarray(y))) ** 2).mean().backward()
        topt.step()
        jm, jopt, _ = step(jm, jopt, x, y)
    assert len(traces) == 1
    for (n, a), (_, b) in zip(jm.named_buffers(), tm.named_buffers()):
        assert_close(a, b, what=n)
    for (n, a), (_, b) in zip(jm.named_parameters(), tm.named_parameters()):
        assert_close(a, b, what=n)
    tm.eval()
    jm.eval()
    x, _ = _data(90)
    with torch.no_grad():
        assert_close(jax.jit(lambda m, x: m(x))(jm, x), tm(torch.tensor(np.asarray(x))))


def test_lr_edit_through_the_original_optimizer_handle_reaches_the_live_one():
    """A scheduler holds the optimizer object it was given; after jitted steps returned new
    optimizers, editing lr through that original handle must affect the next step (torch has
    one mutable object)."""
    traces = []
    train_step = make_train_step(traces)
    tm, model = pair("MLP", seed=31)
    opt0 = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    opt = opt0
    for s in range(5):
        if s == 2:
            opt0.param_groups[0]["lr"] = 0.02
            topt.param_groups[0]["lr"] = 0.02
        x, y = _data(100 + s)
        topt.zero_grad()
        ((tm(torch.tensor(np.asarray(x))) - torch.tensor(np.asarray(y))) ** 2).mean().backward()
        topt.step()
        model, opt, _ = train_step(model, opt, x, y)
    assert len(traces) == 1
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(0.02)
    for (n, a), (_, b) in zip(model.named_parameters(), tm.named_parameters()):
        assert_close(a, b, what=n)
    # and the state_dict read through the original handle is the live one (torch's state)
    for i, st in topt.state_dict()["state"].items():
        assert_close(opt0.state_dict()["state"][i]["momentum_buffer"], st["momentum_buffer"])


def test_more_tracer_leaks_are_caught():
    drop = jnn.Dropout(0.5)
    key0 = np.asarray(drop._rng).copy()
    with pytest.raises(jparam.TracerLeakError):
        jax.jit(lambda x: drop(x))(jnp.ones(4))
    np.testing.assert_array_equal(np.asarray(drop._rng), key0)
    # jparam.call on the closed-over model is the supported way: no leak, model unchanged
    y, d2 = jax.jit(lambda x: jparam.call(drop, x))(jnp.ones(4))
    np.testing.assert_array_equal(np.asarray(drop._rng), key0)
    assert not np.array_equal(np.asarray(d2._rng), key0)
    # clipping the grads of a closed-over model inside jit would store tracers in p.grad
    _, m = jparam.backward(lambda m, x: jnp.sum(m(x) ** 2), jnn.Linear(3, 2), jnp.ones((2, 3)))
    g0 = np.asarray(m.weight.grad).copy()
    with pytest.raises(jparam.TracerLeakError):
        jax.jit(lambda c: clip_grad_norm_(m.parameters(), c))(0.1)
    np.testing.assert_array_equal(np.asarray(m.weight.grad), g0)
    # load_state_dict with traced values into a closed-over model
    lin = jnn.Linear(3, 2)
    with pytest.raises(jparam.TracerLeakError):
        jax.jit(lambda w: lin.load_state_dict({"weight": w, "bias": jnp.zeros(2)}))(jnp.ones((2, 3)))
    assert not isinstance(lin.weight.data, jax.core.Tracer)


def test_load_state_dict_leak_inside_jit_changes_nothing():
    lin = jnn.Linear(3, 2)
    w0, b0 = np.asarray(lin.weight.data).copy(), np.asarray(lin.bias.data).copy()
    concrete_w = jnp.ones((2, 3))  # concrete, made outside the trace
    with pytest.raises(jparam.TracerLeakError):
        jax.jit(lambda b: lin.load_state_dict({"weight": concrete_w, "bias": b}))(jnp.zeros(2))
    # "a failed load changes nothing": the concrete weight must not have been written either
    np.testing.assert_array_equal(np.asarray(lin.weight.data), w0)
    np.testing.assert_array_equal(np.asarray(lin.bias.data), b0)
