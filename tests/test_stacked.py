"""nn.StackedBlocks (scan over layers) against the unrolled ModuleList and against torch."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jparam
import jparam.nn.functional as F
from jparam import nn, optim
from jparam.nn.modules.stacked import StackedBlocks

D, N = 16, 5


class JBlock(nn.Module):
    def __init__(self, d=D):
        super().__init__()
        self.fc1 = nn.Linear(d, 2 * d)
        self.bn = nn.BatchNorm1d(2 * d)
        self.fc2 = nn.Linear(2 * d, d)

    def forward(self, x, scale=1.0):
        return x + scale * self.fc2(F.gelu(self.bn(self.fc1(x))))


class TBlock(torch.nn.Module):
    def __init__(self, d=D):
        super().__init__()
        self.fc1 = torch.nn.Linear(d, 2 * d)
        self.bn = torch.nn.BatchNorm1d(2 * d)
        self.fc2 = torch.nn.Linear(2 * d, d)

    def forward(self, x):
        return x + self.fc2(torch.nn.functional.gelu(self.bn(self.fc1(x))))


class JNet(nn.Module):
    def __init__(self, stacked):
        super().__init__()
        self.inp = nn.Linear(8, D)
        self.layers = StackedBlocks(JBlock, N) if stacked else nn.ModuleList(JBlock() for _ in range(N))
        self.head = nn.Linear(D, 3)

    def forward(self, x):
        h = self.inp(x)
        if isinstance(self.layers, StackedBlocks):
            h = self.layers(h)
        else:
            for blk in self.layers:
                h = blk(h)
        return self.head(h)


class TNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(8, D)
        self.layers = torch.nn.ModuleList(TBlock() for _ in range(N))
        self.head = torch.nn.Linear(D, 3)

    def forward(self, x):
        h = self.inp(x)
        for blk in self.layers:
            h = blk(h)
        return self.head(h)


def _x(seed=0, n=6):
    return np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def test_torch_unrolled_state_dict_loads_and_matches_torch():
    torch.manual_seed(0)
    tnet = TNet()
    jnet = JNet(stacked=True)
    res = jnet.load_state_dict(tnet.state_dict())
    assert res.missing_keys == [] and res.unexpected_keys == []
    sd = jnet.state_dict()
    assert list(sd) == list(tnet.state_dict())           # names and order of the ModuleList
    for k, v in tnet.state_dict().items():
        _close(sd[k], v.numpy(), 0)
    x = _x()
    tnet.train()
    want = tnet(torch.from_numpy(x)).detach().numpy()
    got, jnet = jparam.call(jnet, jnp.asarray(x))     # training mode: batch statistics
    _close(got, want)
    # running statistics were updated per layer, like torch's
    for k, v in tnet.state_dict().items():
        _close(jnet.state_dict()[k], v.numpy())
    tnet.eval()
    jnet.eval()
    _close(jnet(jnp.asarray(_x(1))), tnet(torch.from_numpy(_x(1))).detach().numpy())


def test_load_state_dict_rejects_bad_shapes_and_missing_keys():
    jnet = JNet(stacked=True)
    sd = dict(JNet(stacked=False).state_dict())
    bad = dict(sd)
    bad["layers.3.fc1.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(RuntimeError, match=r"size mismatch for layers\.3\.fc1\.weight"):
        jnet.load_state_dict(bad)
    del sd["layers.4.bn.running_var"]
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*layers\.4\.bn\.running_var"):
        jnet.load_state_dict(sd)


def _pair():
    jparam.manual_seed(0)
    unrolled = JNet(stacked=False)
    stacked = JNet(stacked=True)
    stacked.load_state_dict(unrolled.state_dict())
    return unrolled, stacked


def test_forward_and_training_steps_equal_unrolled_under_jit():
    unrolled, stacked = _pair()

    def make(model):
        return model, optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    @jax.jit
    def step(model, opt, x, y):
        model = model.zero_grad()
        loss, model = jparam.backward(lambda m, x, y: jnp.mean((m(x) - y) ** 2), model, x, y)
        model, opt = opt.step(model)
        return model, opt, loss

    (mu, ou), (ms, os_) = make(unrolled), make(stacked)
    y = jnp.asarray(np.random.default_rng(5).normal(size=(6, 3)).astype(np.float32))
    for i in range(4):
        x = jnp.asarray(_x(10 + i))
        mu, ou, lu = step(mu, ou, x, y)
        ms, os_, ls = step(ms, os_, x, y)
        _close(ls, lu)
    su, ss = mu.state_dict(), ms.state_dict()
    assert list(su) == list(ss)
    for k in su:
        _close(ss[k], su[k])


def test_grads_are_the_stacked_grads_of_the_unrolled_model():
    unrolled, stacked = _pair()
    x = jnp.asarray(_x(3))
    _, gu = jparam.backward(lambda m, x: jnp.sum(m(x) ** 2), unrolled, x)
    _, gs = jparam.backward(lambda m, x: jnp.sum(m(x) ** 2), stacked, x)
    names = dict(gs.named_parameters())
    w = names["layers.stacked.fc1.weight"]
    assert w.shape == (N, 2 * D, D)
    for i in range(N):
        _close(w.grad[i], gu.layers[i].fc1.weight.grad)


def test_extra_args_are_broadcast_and_scan_options():
    unrolled, stacked = _pair()
    stacked.eval()
    unrolled.eval()
    h = jnp.asarray(np.random.default_rng(2).normal(size=(4, D)).astype(np.float32))
    want = h
    for blk in unrolled.layers:
        want = blk(want, 0.5)
    _close(stacked.layers(h, 0.5), want)
    ref = StackedBlocks(list(unrolled.layers)).eval()
    _, gref = jparam.backward(lambda m: jnp.sum(m(h, 0.5) ** 2), ref)
    for kw in ({"unroll": N}, {"checkpoint": True}):
        s2 = StackedBlocks(list(unrolled.layers), **kw).eval()
        _close(s2(h, scale=0.5), want)
        _, g2 = jparam.backward(lambda m: jnp.sum(m(h, 0.5) ** 2), s2)
        _close(g2.stacked.fc1.weight.grad, gref.stacked.fc1.weight.grad)


def test_views_and_construction_forms():
    jparam.manual_seed(1)
    blocks = [nn.Linear(4, 4) for _ in range(3)]
    s = StackedBlocks(blocks)
    assert len(s) == 3
    _close(s[1].weight.data, blocks[1].weight.data, 0)
    _close(s[-1].bias.data, blocks[2].bias.data, 0)
    assert [b.weight.shape for b in s] == [(4, 4)] * 3
    assert len(list(s.parameters())) == 2
    assert {p.shape for p in s.parameters()} == {(3, 4, 4), (3, 4)}
    copies = StackedBlocks(nn.Linear(4, 4), 2)           # one module: copied, like TransformerEncoder
    _close(copies.stacked.weight.data[0], copies.stacked.weight.data[1], 0)
    assert "num_blocks=3" in repr(s)
    with pytest.raises(IndexError):
        s[3]


def test_bad_blocks_raise_clear_errors():
    with pytest.raises(ValueError, match="identical blocks"):
        StackedBlocks([nn.Linear(4, 4), nn.Linear(4, 5)])
    with pytest.raises(ValueError, match="identical blocks"):
        StackedBlocks([nn.Linear(4, 4), nn.Linear(4, 4, bias=False)])
    lin = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="same module object"):
        StackedBlocks([lin, lin])
    with pytest.raises(TypeError, match="num_blocks is required"):
        StackedBlocks(lambda: nn.Linear(4, 4))
    with pytest.raises(TypeError, match="expected a jparam.nn.Module"):
        StackedBlocks([nn.Linear(4, 4), "x"])
