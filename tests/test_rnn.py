"""Recurrent cells / sequence runner (functional) against torch (forward + input/weight grads)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jparam.nn import functional as FR
from test_attention import assert_close, randn

FAMILY = "rnn"


def _torch_rnn(mode, I, H, **kw):
    cls = {"RNN_TANH": torch.nn.RNN, "RNN_RELU": torch.nn.RNN, "LSTM": torch.nn.LSTM,
           "GRU": torch.nn.GRU}[mode]
    if mode.startswith("RNN"):
        kw["nonlinearity"] = "tanh" if mode == "RNN_TANH" else "relu"
    torch.manual_seed(0)
    m = cls(I, H, **kw)
    with torch.no_grad():   # wider than the default init so the gates leave the linear region
        for p in m.parameters():
            p.uniform_(-0.6, 0.6)
    return m


FN = {"RNN_TANH": FR.rnn_tanh, "RNN_RELU": FR.rnn_relu, "LSTM": FR.lstm, "GRU": FR.gru}

SEQ_CASES = [
    ("RNN_TANH", dict()),
    ("RNN_RELU", dict(num_layers=2)),
    ("RNN_TANH", dict(num_layers=2, bidirectional=True, batch_first=True, hx=True)),
    ("RNN_TANH", dict(bias=False, unbatched=True, hx=True)),
    ("LSTM", dict()),
    ("LSTM", dict(num_layers=3, bidirectional=True, hx=True)),
    ("LSTM", dict(num_layers=2, batch_first=True, bias=False)),
    ("LSTM", dict(proj_size=3, num_layers=2, bidirectional=True, hx=True)),
    ("LSTM", dict(proj_size=2, bias=False, unbatched=True, hx=True)),
    ("GRU", dict()),
    ("GRU", dict(num_layers=2, bidirectional=True, batch_first=True, hx=True)),
    ("GRU", dict(bias=False, unbatched=True)),
]


@pytest.mark.parametrize("mode,case", SEQ_CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(SEQ_CASES)])
def test_sequence_runner(mode, case):
    case = dict(case)
    use_hx, unbatched = case.pop("hx", False), case.pop("unbatched", False)
    I, H, T, N = 5, 6, 7, 3
    tm = _torch_rnn(mode, I, H, **case).train()   # dropout=0, so train == eval
    L = case.get("num_layers", 1)
    D = 2 if case.get("bidirectional") else 1
    Hout = case.get("proj_size", 0) or H
    rng = np.random.default_rng(len(SEQ_CASES) + L + D)
    bf = case.get("batch_first", False)
    x = randn(rng, T, I) if unbatched else (randn(rng, N, T, I) if bf else randn(rng, T, N, I))
    hshape = (L * D, Hout) if unbatched else (L * D, N, Hout)
    cshape = (L * D, H) if unbatched else (L * D, N, H)
    h0 = randn(rng, *hshape) if use_hx else None
    c0 = randn(rng, *cshape) if use_hx and mode == "LSTM" else None

    tx = torch.tensor(x, requires_grad=True)
    th0 = None if h0 is None else torch.tensor(h0, requires_grad=True)
    tc0 = None if c0 is None else torch.tensor(c0, requires_grad=True)
    thx = (th0, tc0) if mode == "LSTM" and use_hx else th0
    touts = tm(tx, thx)
    touts = (touts[0], *touts[1]) if mode == "LSTM" else touts
    cts = [randn(rng, *t.shape) for t in touts]
    sum((t * torch.tensor(c)).sum() for t, c in zip(touts, cts)).backward()

    names = tm._flat_weights_names
    ws = [jnp.asarray(p.detach().numpy()) for p in tm._flat_weights]
    bias = case.get("bias", True)

    def run(x, h0, c0, ws):
        hx = (h0, c0) if mode == "LSTM" and h0 is not None else h0
        return FN[mode](x, hx, ws, bias, L, 0.0, True, D == 2, bf)

    jx = jnp.asarray(x)
    jh = None if h0 is None else jnp.asarray(h0)
    jc = None if c0 is None else jnp.asarray(c0)
    jouts = run(jx, jh, jc, ws)
    for i, (j, t) in enumerate(zip(jouts, touts)):
        assert_close(j, t.detach().numpy(), f"output {i}", FAMILY)

    def loss(x, h0, c0, ws):
        return sum(jnp.sum(o * c) for o, c in zip(run(x, h0, c0, ws), cts))

    gx, gh, gc, gw = jax.grad(loss, argnums=(0, 1, 2, 3))(jx, jh, jc, ws)
    assert_close(gx, tx.grad.numpy(), "grad input", FAMILY)
    if th0 is not None:
        assert_close(gh, th0.grad.numpy(), "grad h0", FAMILY)
    if tc0 is not None:
        assert_close(gc, tc0.grad.numpy(), "grad c0", FAMILY)
    for n, g, p in zip(names, gw, tm._flat_weights):
        assert_close(g, p.grad.numpy(), f"grad {n}", FAMILY)


CELL_CASES = [("rnn_tanh_cell", torch.nn.RNNCell, dict(nonlinearity="tanh")),
              ("rnn_relu_cell", torch.nn.RNNCell, dict(nonlinearity="relu")),
              ("lstm_cell", torch.nn.LSTMCell, {}), ("gru_cell", torch.nn.GRUCell, {})]


@pytest.mark.parametrize("name,cls,kw", CELL_CASES, ids=[c[0] for c in CELL_CASES])
@pytest.mark.parametrize("bias", [True, False])
def test_cells(name, cls, kw, bias):
    torch.manual_seed(1)
    tm = cls(5, 4, bias=bias, **kw)
    with torch.no_grad():
        for p in tm.parameters():
            p.uniform_(-0.7, 0.7)
    rng = np.random.default_rng(2)
    x, h, c = randn(rng, 3, 5), randn(rng, 3, 4), randn(rng, 3, 4)
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    lstm = name == "lstm_cell"
    tout = tm(tx, (th, tc) if lstm else th)
    touts = tout if lstm else (tout,)
    cts = [randn(rng, *t.shape) for t in touts]
    sum((t * torch.tensor(ct)).sum() for t, ct in zip(touts, cts)).backward()
    params = [jnp.asarray(p.detach().numpy()) for p in tm.parameters()]

    def run(x, h, c, params):
        out = getattr(FR, name)(x, (h, c) if lstm else h, *params)
        return out if lstm else (out,)

    jargs = (jnp.asarray(x), jnp.asarray(h), jnp.asarray(c), params)
    for j, t in zip(run(*jargs), touts):
        assert_close(j, t.detach().numpy(), f"{name} forward", FAMILY)
    grads = jax.grad(lambda *a: sum(jnp.sum(o * ct) for o, ct in zip(run(*a), cts)),
                     argnums=(0, 1, 2, 3))(*jargs)
    assert_close(grads[0], tx.grad.numpy(), "grad x", FAMILY)
    assert_close(grads[1], th.grad.numpy(), "grad h", FAMILY)
    if lstm:
        assert_close(grads[2], tc.grad.numpy(), "grad c", FAMILY)
    for g, p in zip(grads[3], tm.parameters()):
        assert_close(g, p.grad.numpy(), "grad param", FAMILY)


def test_interlayer_dropout_needs_key_and_is_deterministic():
    tm = _torch_rnn("GRU", 3, 4, num_layers=2)
    ws = [jnp.asarray(p.detach().numpy()) for p in tm._flat_weights]
    x = jnp.asarray(randn(np.random.default_rng(0), 6, 2, 3))
    with pytest.raises(ValueError, match="explicit `key`"):
        FR.gru(x, None, ws, True, 2, 0.5, True, False, False)
    a = FR.gru(x, None, ws, True, 2, 0.5, True, False, False, key=jax.random.key(0))[0]
    b = FR.gru(x, None, ws, True, 2, 0.5, True, False, False, key=jax.random.key(0))[0]
    c = FR.gru(x, None, ws, True, 2, 0.5, True, False, False, key=jax.random.key(1))[0]
    ev = FR.gru(x, None, ws, True, 2, 0.5, False, False, False)[0]
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))
    assert not np.allclose(np.asarray(a), np.asarray(ev))
    # eval: no dropout, equals torch in eval mode
    assert_close(ev, tm.eval()(torch.tensor(np.asarray(x)))[0].detach().numpy(), "eval", FAMILY)


def test_runner_errors():
    tm = _torch_rnn("LSTM", 3, 4)
    ws = [jnp.asarray(p.detach().numpy()) for p in tm._flat_weights]
    with pytest.raises(ValueError, match="input_size"):
        FR.lstm(jnp.ones((5, 2, 7)), None, ws, True, 1, 0.0, False, False, False)
    with pytest.raises(ValueError, match="expected 8 weights"):
        FR.lstm(jnp.ones((5, 2, 3)), None, ws, True, 2, 0.0, False, False, False)
    with pytest.raises(ValueError, match="hx shapes"):
        FR.lstm(jnp.ones((5, 2, 3)), (jnp.zeros((1, 3, 4)), jnp.zeros((1, 3, 4))), ws, True, 1,
                0.0, False, False, False)
    with pytest.raises(TypeError, match="floating"):
        FR.lstm(jnp.ones((5, 2, 3), jnp.int32), None, ws, True, 1, 0.0, False, False, False)
    with pytest.raises(ValueError, match="2-D"):
        FR.lstm(jnp.ones((3,)), None, ws, True, 1, 0.0, False, False, False)


def test_runner_jit():
    tm = _torch_rnn("LSTM", 3, 4, num_layers=2, bidirectional=True)
    ws = [jnp.asarray(p.detach().numpy()) for p in tm._flat_weights]
    x = jnp.asarray(randn(np.random.default_rng(1), 6, 2, 3))
    f = jax.jit(lambda x, ws: FR.lstm(x, None, ws, True, 2, 0.0, False, True, False))
    out = f(x, ws)
    ref = tm(torch.tensor(np.asarray(x)))
    assert_close(out[0], ref[0].detach().numpy(), "jit output", FAMILY)
    assert_close(out[2], ref[1][1].detach().numpy(), "jit c_n", FAMILY)


# ---------------------------------------------------------------- nn.RNN / LSTM / GRU modules

from test_attention import compare_module, randomize  # noqa: E402

MODULE_CASES = [
    ("RNN", dict()),
    ("RNN", dict(nonlinearity="relu", num_layers=2, bidirectional=True, batch_first=True, hx=True)),
    ("RNN", dict(bias=False, unbatched=True, hx=True)),
    ("LSTM", dict(num_layers=2, bidirectional=True, hx=True)),
    ("LSTM", dict(batch_first=True, num_layers=3)),
    ("LSTM", dict(proj_size=3, bidirectional=True, num_layers=2, batch_first=True, hx=True)),
    ("LSTM", dict(unbatched=True, bias=False, hx=True)),
    ("LSTM", dict(num_layers=2, dropout=0.4, mode="eval", bidirectional=True)),
    ("GRU", dict(num_layers=2, bidirectional=True, batch_first=True, hx=True)),
    ("GRU", dict(unbatched=True)),
    ("GRU", dict(num_layers=3, dropout=0.5, mode="eval", hx=True)),
]


@pytest.mark.parametrize("name,case", MODULE_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(MODULE_CASES)])
def test_recurrent_modules(name, case):
    import jparam.nn as jnn

    case = dict(case)
    use_hx, unbatched, mode = case.pop("hx", False), case.pop("unbatched", False), case.pop("mode", "train")
    I, H, T, N = 4, 6, 5, 3
    torch.manual_seed(0)
    tm = randomize(getattr(torch.nn, name)(I, H, **case), scale=0.6)
    jm = getattr(jnn, name)(I, H, **case)
    if mode == "eval":
        tm.eval()
        jm.eval()
    assert repr(jm) == repr(tm)
    L, D = case.get("num_layers", 1), 2 if case.get("bidirectional") else 1
    Hout = case.get("proj_size", 0) or H
    rng = np.random.default_rng(L * 10 + D)
    bf = case.get("batch_first", False)
    x = randn(rng, T, I) if unbatched else (randn(rng, N, T, I) if bf else randn(rng, T, N, I))
    lead = (L * D,) if unbatched else (L * D, N)
    args = [x]
    diff = [0]
    if use_hx:
        h0 = randn(rng, *lead, Hout)
        if name == "LSTM":
            # compare_module differentiates positional args; pass (h0, c0) via a wrapper pair
            c0 = randn(rng, *lead, H)
            _compare_lstm_hx(tm, jm, x, h0, c0)
            return
        args.append(h0)
        diff.append(1)
    compare_module(tm, jm, args, diff_args=tuple(diff), family="rnn_module")


def _compare_lstm_hx(tm, jm, x, h0, c0):
    """LSTM with an explicit (h0, c0): wrap both modules to take h0, c0 positionally."""

    class TW(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x, h, c):
            return self.m(x, (h, c))

    import jparam.nn as jnn

    class JW(jnn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x, h, c):
            return self.m(x, (h, c))

    compare_module(TW(tm), JW(jm), [x, h0, c0], diff_args=(0, 1, 2), family="rnn_module")


CELL_MODULES = [("RNNCell", dict()), ("RNNCell", dict(nonlinearity="relu", bias=False)),
                ("LSTMCell", dict()), ("LSTMCell", dict(bias=False)), ("GRUCell", dict()),
                ("GRUCell", dict(bias=False))]


@pytest.mark.parametrize("name,kw", CELL_MODULES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CELL_MODULES)])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
def test_cell_modules(name, kw, batched, with_hx):
    import jparam.nn as jnn

    torch.manual_seed(0)
    tm = randomize(getattr(torch.nn, name)(4, 5, **kw), scale=0.7)
    jm = getattr(jnn, name)(4, 5, **kw)
    assert repr(jm) == repr(tm)
    rng = np.random.default_rng(3)
    x = randn(rng, 3, 4) if batched else randn(rng, 4)
    hshape = (3, 5) if batched else (5,)
    if not with_hx:
        compare_module(tm, jm, [x], diff_args=(0,), family="rnn_module")
    elif name == "LSTMCell":
        _compare_lstm_hx(tm, jm, x, randn(rng, *hshape), randn(rng, *hshape))
    else:
        compare_module(tm, jm, [x, randn(rng, *hshape)], diff_args=(0, 1), family="rnn_module")


def test_recurrent_names_init_repr():
    import jparam
    import jparam.nn as jnn

    jparam.manual_seed(0)
    for name, kw in [("RNN", dict(num_layers=2, bidirectional=True, nonlinearity="relu")),
                     ("LSTM", dict(num_layers=2, proj_size=3, bidirectional=True, bias=False)),
                     ("GRU", dict(num_layers=3, batch_first=True, dropout=0.2))]:
        jm, tm = getattr(jnn, name)(5, 16, **kw), getattr(torch.nn, name)(5, 16, **kw)
        assert repr(jm) == repr(tm)
        assert [(n, tuple(p.shape)) for n, p in jm.named_parameters()] == \
               [(n, tuple(p.shape)) for n, p in tm.named_parameters()]
        for n, p in jm.named_parameters():
            a = np.asarray(p.data)
            assert np.abs(a).max() <= 0.25 and np.abs(a).max() > 0.2, n
    assert jnn.GRU(3, 4, dtype=jnp.bfloat16).weight_ih_l0.dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="proj_size has to be smaller"):
        jnn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="only supported for LSTM"):
        jnn.RNNBase("GRU", 3, 4, proj_size=2)
    with pytest.raises(ValueError, match="dropout should be a number"):
        jnn.GRU(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        jnn.RNN(3, 4, nonlinearity="gelu")
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        jnn.LSTM(3, 4, dropout=0.5)
    with pytest.raises(ValueError, match="input_size"):
        jnn.GRU(3, 4)(jnp.ones((5, 2, 7)))
    with pytest.raises(ValueError, match="should also be 3-D"):
        jnn.GRU(3, 4)(jnp.ones((5, 2, 3)), jnp.zeros((1, 4)))
    with pytest.raises(ValueError, match="inconsistent input_size"):
        jnn.GRUCell(3, 4)(jnp.ones((2, 5)))


def test_recurrent_dropout_under_jit():
    import jparam
    import jparam.nn as jnn

    jparam.manual_seed(0)
    m = jnn.LSTM(3, 8, num_layers=2, dropout=0.5)
    x = jnp.ones((6, 2, 3))
    step = jax.jit(lambda m, x: jparam.call(m, x))
    (o1, _), m1 = step(m, x)
    (o2, _), _ = step(m1, x)
    assert not np.allclose(np.asarray(o1), np.asarray(o2))
    m.eval()
    (e1, _), _ = step(m, x)
    (e2, _), _ = step(m, x)
    np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))
    loss, m2 = jparam.backward(lambda m, x: jnp.sum(m(x)[0] ** 2), m.train(), x)
    assert m2.weight_ih_l1.grad.shape == m2.weight_ih_l1.shape
