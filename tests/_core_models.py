"""One architecture, written once, built in torch and in jparam (for the core test suite).

``build(lib)`` returns a model made of custom modules, nn.Linear, nn.Parameter (0-dim and
frozen), persistent and non-persistent buffers, a plain array attribute, nested submodules,
Sequential / ModuleList / ModuleDict / ParameterList / ParameterDict, BatchNorm1d, a tied
weight (``head.weight = emb.weight``) and a shared submodule (``shared2 = shared``).

``pair()`` builds both, loads torch's ``state_dict`` into jparam and copies what a
state_dict does not carry (non-persistent buffers, plain arrays), so both compute the same
function.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jparam
from jparam import nn as jnn

V, D, B = 7, 5, 6


class _TorchOps:
    nn = torch.nn

    @staticmethod
    def t(a, dtype=np.float32):
        return torch.tensor(np.asarray(a, dtype))

    tanh = staticmethod(torch.tanh)
    relu = staticmethod(torch.relu)


class _JaxOps:
    nn = jnn

    @staticmethod
    def t(a, dtype=np.float32):
        return jnp.asarray(np.asarray(a, dtype))

    tanh = staticmethod(jnp.tanh)
    relu = staticmethod(jax.nn.relu)


OPS = {"torch": _TorchOps, "jparam": _JaxOps}
_CLASSES: dict = {}


def classes(lib: str) -> dict:
    """The custom module classes for ``lib`` ('torch' or 'jparam'), defined once per lib."""
    if lib in _CLASSES:
        return _CLASSES[lib]
    ops = OPS[lib]
    nn = ops.nn
    rng = np.random.default_rng(123)

    class Emb(nn.Module):
        def __init__(self, v, d):
            super().__init__()
            self.weight = nn.Parameter(ops.t(rng.standard_normal((v, d))))

        def forward(self, idx):
            return self.weight[idx]

    class Block(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.lin = nn.Linear(d, d)
            self.gain = nn.Parameter(ops.t(np.ones(d)))
            self.register_buffer("shift", ops.t(np.zeros(d)))
            self.register_buffer("nb", ops.t(np.ones(d)), persistent=False)
            self.plain = ops.t(np.full(d, 0.5))

        def forward(self, x):
            return ops.tanh(self.lin(x) * self.gain + self.shift) * self.nb + self.plain * x

    class Net(nn.Module):
        def __init__(self, v=V, d=D):
            super().__init__()
            self.z = nn.Parameter(ops.t(np.zeros(())))
            self.emb = Emb(v, d)
            self.blocks = nn.ModuleList([Block(d), Block(d)])
            self.seq = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.Linear(d, d))
            self.heads = nn.ModuleDict({"a": nn.Linear(d, d), "b": nn.Linear(d, 3)})
            self.plist = nn.ParameterList([ops.t(np.ones(d)), ops.t(np.zeros(d))])
            self.pdict = nn.ParameterDict({"s": ops.t(np.ones(d)), "t": ops.t(np.zeros(3))})
            self.shared = nn.Linear(d, d)
            self.shared2 = self.shared
            self.frozen = nn.Parameter(ops.t(np.ones(d)))
            self.frozen.requires_grad_(False)
            self.head = nn.Linear(d, v, bias=False)
            self.head.weight = self.emb.weight
            self.register_buffer("step_scale", ops.t(np.ones(())))

        def forward(self, idx):
            h = self.emb(idx)
            for blk in self.blocks:
                h = blk(h)
            h = self.seq(h) * self.plist[0] + self.plist[1]
            h = ops.tanh(self.shared(h)) + self.shared2(h) * self.pdict["s"] * self.frozen
            logits = self.head(self.heads["a"](h) + self.z) * self.step_scale
            aux = self.heads["b"](h) + self.pdict["t"]
            return logits, aux

    class MLP(nn.Module):
        def __init__(self, i=4, h=8, o=3):
            super().__init__()
            self.base = nn.Sequential(nn.Linear(i, h), nn.Linear(h, h))
            self.head = nn.Linear(h, o)

        def forward(self, x):
            for lin in self.base:
                x = ops.tanh(lin(x))
            return self.head(x)

    _CLASSES[lib] = dict(Emb=Emb, Block=Block, Net=Net, MLP=MLP)
    return _CLASSES[lib]


def to_np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, jparam.Parameter):
        x = x.data
    return np.asarray(x)


def randomize_torch(tm: torch.nn.Module, seed: int = 0) -> None:
    """Fill every parameter and floating buffer of a torch model with random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in tm.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for name, b in tm.named_buffers():
            if b.is_floating_point():
                if name.endswith("running_var"):
                    b.copy_(torch.rand(b.shape, generator=g) + 0.5)
                else:
                    b.copy_(torch.randn(b.shape, generator=g) * 0.5)


def copy_extras(tm: torch.nn.Module, jm: jparam.Module) -> None:
    """Copy non-persistent buffers and plain tensor attributes (not in state_dict) torch -> jparam."""
    for (tn, tmod), (jn, jmod) in zip(tm.named_modules(), jm.named_modules()):
        assert tn == jn
        for k in tmod._non_persistent_buffers_set:
            setattr(jmod, k, jnp.asarray(to_np(getattr(tmod, k))))
        for k, v in vars(tmod).items():
            if isinstance(v, torch.Tensor) and not k.startswith("_"):
                setattr(jmod, k, jnp.asarray(to_np(v)))


def pair(name: str = "Net", seed: int = 0, **kw):
    """``(torch_model, jparam_model)`` of the same architecture holding the same numbers."""
    tm = classes("torch")[name](**kw)
    randomize_torch(tm, seed)
    jm = classes("jparam")[name](**kw)
    res = jm.load_state_dict(tm.state_dict())
    assert not res.missing_keys and not res.unexpected_keys
    copy_extras(tm, jm)
    return tm, jm


def rand_idx(seed: int = 1, n: int = B, v: int = V) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, v, size=(n,))


def randn(*shape, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def assert_close(a, b, rtol=1e-5, atol=1e-6, what=""):
    np.testing.assert_allclose(to_np(a), to_np(b), rtol=rtol, atol=atol, err_msg=what)
