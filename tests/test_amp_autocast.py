"""``jparam.autocast`` against ``torch.autocast("cpu", dtype=torch.bfloat16)``: a small GPT and
a small CNN (forward, loss, every gradient), the per-op policy, jit caching, threads."""
from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as TF

import jparam
import jparam.nn.functional as F
from jparam import nn

BF16 = jnp.bfloat16
sdpa = F.scaled_dot_product_attention


# ----------------------------------------------------------------------------- the models
class TBlock(tnn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = tnn.LayerNorm(d), tnn.LayerNorm(d)
        self.qkv, self.proj = tnn.Linear(d, 3 * d), tnn.Linear(d, d)
        self.fc1, self.fc2 = tnn.Linear(d, 4 * d), tnn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (a.view(b, t, self.heads, d // self.heads).transpose(1, 2) for a in (q, k, v))
        a = TF.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(TF.gelu(self.fc1(self.ln2(x))))


class TGPT(tnn.Module):
    def __init__(self, vocab=64, d=32, heads=4, seq=16, layers=2):
        super().__init__()
        self.wte, self.wpe = tnn.Embedding(vocab, d), tnn.Embedding(seq, d)
        self.blocks = tnn.ModuleList(TBlock(d, heads) for _ in range(layers))
        self.ln_f = tnn.LayerNorm(d)
        self.head = tnn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, tok):
        h = self.wte(tok) + self.wpe(torch.arange(tok.shape[1]))
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.ln_f(h))


class JBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = jnp.split(self.qkv(self.ln1(x)), 3, axis=-1)
        q, k, v = (a.reshape(b, t, self.heads, d // self.heads).swapaxes(1, 2) for a in (q, k, v))
        a = sdpa(q, k, v, is_causal=True)
        x = x + self.proj(a.swapaxes(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class JGPT(nn.Module):
    def __init__(self, vocab=64, d=32, heads=4, seq=16, layers=2):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.blocks = nn.ModuleList(JBlock(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, tok):
        h = self.wte(tok) + self.wpe.weight[: tok.shape[1]]
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.ln_f(h))


class TCNN(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(3, 8, 3, padding=1), tnn.BatchNorm2d(8)
        self.conv2, self.bn2 = tnn.Conv2d(8, 16, 3, padding=1), tnn.BatchNorm2d(16)
        self.fc = tnn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = TF.max_pool2d(TF.relu(self.bn1(self.conv1(x))), 2)
        x = TF.max_pool2d(TF.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.reshape(x.shape[0], -1))


class JCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.reshape(x.shape[0], -1))


def _pair(tcls, jcls, seed=0):
    torch.manual_seed(seed)
    tm = tcls()
    jm = jcls()
    jm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return tm, jm


def _torch_run(tm, x, y, amp: bool):
    tm.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = tm(x)
        loss = TF.cross_entropy(out.reshape(-1, out.shape[-1]).float() if not amp else
                                out.reshape(-1, out.shape[-1]), y.reshape(-1))
    loss.backward()
    grads = {n: p.grad.detach().float().numpy() for n, p in tm.named_parameters()}
    return out.detach().float().numpy(), float(loss.detach()), grads


def _jparam_run(jm, x, y, amp: bool):
    def loss_fn(m, x, y):
        with jparam.autocast("cpu", dtype=BF16, enabled=amp):
            out = m(x)
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        return loss, out

    @jax.jit
    def step(m, x, y):
        (loss, out), m = jparam.backward(loss_fn, m, x, y, has_aux=True)
        return loss, out, m

    loss, out, m = step(jm.zero_grad(), x, y)
    grads = {n: np.asarray(p.grad) for n, p in m.named_parameters()}
    dtypes = {n: (p.dtype, p.grad.dtype) for n, p in m.named_parameters()}
    return np.asarray(out.astype(jnp.float32)), float(loss), grads, dtypes, out.dtype


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def _compare(tcls, jcls, x, y, tol, zero_grads=()):
    """jparam's autocast against torch's: every gradient within ``tol`` or within twice torch's
    own autocast-vs-float32 difference (bfloat16 noise through BatchNorm's backward reaches
    10 %). ``zero_grads``: parameters whose exact gradient is 0 (a conv bias before BatchNorm),
    pure rounding noise in every run (jparam and torch in float32 differ by 100 % there)."""
    tm, jm = _pair(tcls, jcls)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y).long()
    t_out, t_loss, t_g = _torch_run(tm, tx, ty, amp=True)
    r_out, r_loss, r_g = _torch_run(tm, tx, ty, amp=False)
    j_out, j_loss, j_g, dtypes, out_dtype = _jparam_run(jm, jnp.asarray(x), jnp.asarray(y), amp=True)
    f_out, f_loss, f_g, _, _ = _jparam_run(jm, jnp.asarray(x), jnp.asarray(y), amp=False)
    assert out_dtype == BF16                       # the head ran in bfloat16, as torch's
    assert all(d == (jnp.float32, jnp.float32) for d in dtypes.values()), dtypes
    assert _rel(j_out, t_out) < tol, _rel(j_out, t_out)
    assert abs(j_loss - t_loss) / abs(t_loss) < tol / 4, (j_loss, t_loss)
    assert set(j_g) == set(t_g)
    errs = {n: _rel(j_g[n], t_g[n]) for n in t_g if n not in zero_grads}
    bounds = {n: max(tol, 2 * _rel(t_g[n], r_g[n])) for n in errs}
    assert all(errs[n] < bounds[n] for n in errs), (errs, bounds)
    # the float32 run matches torch's float32 run, and autocast did change the numbers
    assert _rel(f_out, r_out) < 1e-5 and _rel(f_out, t_out) > 1e-3
    return errs


def test_gpt_matches_torch_autocast_bf16():
    rng = np.random.default_rng(0)
    tok = rng.integers(0, 64, size=(4, 17)).astype(np.int32)
    errs = _compare(TGPT, JGPT, tok[:, :-1], tok[:, 1:], tol=4e-2)
    assert len(errs) == 2 + 2 * 12 + 2           # tied head listed once, like torch


def test_cnn_matches_torch_autocast_bf16():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, size=(8,)).astype(np.int32)
    _compare(TCNN, JCNN, x, y, tol=4e-2, zero_grads=("conv1.bias", "conv2.bias"))


def _eqns(jaxpr):
    """Every equation of a jaxpr, nested jaxprs (jit, custom_jvp, ...) included."""
    for e in jaxpr.eqns:
        yield e
        for v in e.params.values():
            for sub in (v if isinstance(v, (tuple, list)) else (v,)):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _eqns(inner)


@pytest.mark.parametrize("model", ["gpt", "cnn"])
def test_training_step_matmuls_run_in_bf16_and_softmax_norms_losses_in_float32(model):
    """The whole train step (forward and backward) as XLA gets it: every matmul and
    convolution takes bfloat16 operands — so the numbers above come from low-precision
    compute, not from a float32 model whose output is cast — while softmax and the loss
    (their max and log) and the normalisations' rsqrt stay in float32, and gradients come
    out float32. (GELU is on neither of torch's lists: it runs in bfloat16, exp included.)"""
    rng = np.random.default_rng(5)
    if model == "gpt":
        _, jm = _pair(TGPT, JGPT)
        tok = rng.integers(0, 64, size=(2, 17)).astype(np.int32)
        x, y = jnp.asarray(tok[:, :-1]), jnp.asarray(tok[:, 1:])
    else:
        _, jm = _pair(TCNN, JCNN)
        x = jnp.asarray(rng.normal(size=(2, 3, 16, 16)), jnp.float32)
        y = jnp.asarray(rng.integers(0, 10, size=(2,)), jnp.int32)

    def step(m, x, y):
        def loss_fn(m, x, y):
            with jparam.autocast("cpu", dtype=BF16):
                out = m(x)
                return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        return jparam.backward(loss_fn, m.zero_grad(), x, y)

    eqns = list(_eqns(jax.make_jaxpr(step)(jm, x, y).jaxpr))
    mm = [e for e in eqns if e.primitive.name in ("dot_general", "conv_general_dilated")]
    # GPT: 2 blocks x (4 linears + 2 attention matmuls) + head, forward and two backward
    # each; CNN: 3 forward, 3 weight gradients, 2 input gradients (not the image's)
    assert len(mm) == (3 * 13 if model == "gpt" else 8), len(mm)
    assert all(v.aval.dtype == BF16 for e in mm for v in e.invars), \
        sorted({(e.primitive.name, str(v.aval)) for e in mm for v in e.invars if v.aval.dtype != BF16})
    f32_only = [e for e in eqns if e.primitive.name in ("reduce_max", "log", "rsqrt")]
    assert {e.primitive.name for e in f32_only} >= {"log", "rsqrt"}
    assert all(e.outvars[0].aval.dtype == jnp.float32 for e in f32_only), \
        [str(e) for e in f32_only if e.outvars[0].aval.dtype != jnp.float32]
    loss, m = jax.jit(step)(jm, x, y)
    assert loss.dtype == jnp.float32
    assert all(p.grad.dtype == jnp.float32 for p in m.parameters())


# ----------------------------------------------------------------------------- per-op policy
def test_low_precision_ops_match_torch_cpu_autocast():
    rng = np.random.default_rng(2)
    a = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    x, w, b = a(4, 6), a(5, 6), a(5)
    img, k = a(2, 3, 8, 8), a(4, 3, 3, 3)
    q, kk, v = a(2, 2, 5, 8), a(2, 2, 5, 8), a(2, 2, 5, 8)
    cases = [
        (F.linear, TF.linear, (x, w, b)),
        (F.conv2d, TF.conv2d, (img, k)),
        (sdpa, TF.scaled_dot_product_attention, (q, kk, v)),
        (F.prelu, TF.prelu, (img, np.full(3, 0.25, np.float32))),
    ]
    for jf, tf, args in cases:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            t = tf(*(torch.from_numpy(a) for a in args))
        with jparam.autocast("cpu", dtype=BF16):
            j = jf(*(jnp.asarray(a) for a in args))
        assert t.dtype == torch.bfloat16 and j.dtype == BF16, (jf.__name__, t.dtype, j.dtype)
        assert _rel(np.asarray(j.astype(jnp.float32)), t.float().numpy()) < 2e-2, jf.__name__


def test_float32_ops_upcast_low_precision_inputs():
    h = jnp.asarray(np.random.default_rng(3).normal(size=(4, 10)), BF16)
    labels = jnp.array([1, 2, 3, 0])
    with jparam.autocast("cuda", dtype=BF16):
        outs = {
            "softmax": F.softmax(h, dim=-1), "log_softmax": F.log_softmax(h, dim=-1),
            "layer_norm": F.layer_norm(h, (10,)), "group_norm": F.group_norm(h[..., None], 2),
            "batch_norm": F.batch_norm(h, None, None, training=True),
            "cross_entropy": F.cross_entropy(h, labels), "mse_loss": F.mse_loss(h, h * 2),
            "softplus": F.softplus(h),
        }
        relu = F.relu(h)                        # not in a list: runs in its input dtype
    assert relu.dtype == BF16
    for name, o in outs.items():
        assert o.dtype == jnp.float32, (name, o.dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):   # torch's CPU list has the losses
        t = TF.cross_entropy(torch.tensor(np.array(h.astype(jnp.float32))).bfloat16(),
                             torch.tensor([1, 2, 3, 0]))
    assert t.dtype == torch.float32
    np.testing.assert_allclose(float(outs["cross_entropy"]), float(t), rtol=1e-6)


def test_lstm_and_gru_run_in_low_precision():
    """CUDA's policy (cuDNN RNNs and the cells run in the low dtype). torch on CPU keeps
    nn.LSTM/GRU in float32 outside oneDNN, so the reference here is torch in float32."""
    torch.manual_seed(0)
    for tcls, jcls in ((tnn.LSTM, nn.LSTM), (tnn.GRU, nn.GRU)):
        tm = tcls(6, 8, num_layers=2, batch_first=True)
        jm = jcls(6, 8, num_layers=2, batch_first=True)
        jm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
        x = np.random.default_rng(4).normal(size=(3, 5, 6)).astype(np.float32)
        t_out = tm(torch.from_numpy(x))[0].detach().numpy()
        with jparam.autocast("cpu", dtype=BF16):
            j_out, j_h = jm(jnp.asarray(x))[:2]
        assert j_out.dtype == BF16
        err = _rel(np.asarray(j_out.astype(jnp.float32)), t_out)
        assert 1e-4 < err < 3e-2, err
    cell = nn.LSTMCell(6, 8)
    with jparam.autocast("cuda", dtype=jnp.float16):
        h, c = cell(jnp.ones((2, 6)))
    assert h.dtype == c.dtype == jnp.float16


def test_float64_and_integer_inputs_are_never_cast():
    x64 = np.ones((2, 3), np.float64)
    with jparam.autocast("cpu"):
        lo = jparam.amp.cast_for_matmul(x64, jnp.arange(3), None, 2.0)
    assert lo[0].dtype == np.float64 and lo[1].dtype == jnp.int32 and lo[2] is None and lo[3] == 2.0


# ----------------------------------------------------------------------------- the context
def test_nesting_enabled_false_and_decorator():
    x = jnp.ones((2, 3))
    w = jnp.ones((4, 3))
    with jparam.autocast("cpu"):
        assert F.linear(x, w).dtype == BF16
        with jparam.autocast("cpu", enabled=False):
            assert F.linear(x, w).dtype == jnp.float32
            assert not jparam.amp.is_autocast_enabled()
        assert F.linear(x, w).dtype == BF16
    assert F.linear(x, w).dtype == jnp.float32

    @jparam.autocast("cuda", dtype=jnp.float16)
    def f(x):
        return F.linear(x, w)

    assert f(x).dtype == jnp.float16 and F.linear(x, w).dtype == jnp.float32
    assert jparam.autocast("cuda").fast_dtype == jnp.float16     # torch's default per device
    assert jparam.autocast("cpu").fast_dtype == BF16


def test_jit_cache_is_keyed_on_the_policy():
    traces = []

    @jax.jit
    def f(x, w):
        traces.append(1)
        return F.linear(x, w)

    x, w = jnp.ones((2, 3)), jnp.ones((4, 3))
    assert f(x, w).dtype == jnp.float32
    with jparam.autocast("cpu"):
        assert f(x, w).dtype == BF16
        assert f(x, w).dtype == BF16
    assert f(x, w).dtype == jnp.float32
    with jparam.autocast("cuda", dtype=jnp.float16):
        assert f(x, w).dtype == jnp.float16
    assert len(traces) == 3


def test_threads_see_their_own_policy():
    w = jnp.ones((4, 3))
    results, barrier = {}, threading.Barrier(2)

    def run(name, amp):
        @jax.jit
        def g(x):
            return F.linear(x, w) * 2

        with jparam.autocast("cpu", enabled=amp):
            barrier.wait()
            for _ in range(20):
                results.setdefault(name, set()).add(g(jnp.ones((2, 3))).dtype)

    ts = [threading.Thread(target=run, args=(n, a)) for n, a in (("amp", True), ("fp32", False))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results == {"amp": {jnp.dtype(BF16)}, "fp32": {jnp.dtype(jnp.float32)}}


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        jparam.autocast("cuda", dtype=jnp.float32)
    with pytest.raises(ValueError, match="device_type"):
        jparam.autocast("gpu0")
    with pytest.raises(TypeError, match="enabled"):
        jparam.autocast("cpu", enabled=1)
    with pytest.raises(TypeError, match="dtype"):
        jparam.autocast("cpu", dtype="not a dtype")
    assert jparam.autocast("cpu", dtype=torch.bfloat16).fast_dtype == BF16   # torch dtypes map
