"""scaled_dot_product_attention and multi_head_attention_forward against torch (forward + grads)."""
from __future__ import annotations

import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from jparam.nn.functional import (multi_head_attention_forward,
                                             scaled_dot_product_attention)

RTOL, ATOL = 1e-4, 1e-5
MAX_ERR: dict = {}


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    fin = np.isfinite(b)
    if not fin.any():
        return 0.0
    return float(np.max(np.abs(a[fin] - b[fin])) / max(np.max(np.abs(b[fin])), 1e-30))


def assert_close(a, b, what, family):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != torch {b.shape}"
    MAX_ERR[family] = max(MAX_ERR.get(family, 0.0), rel_err(a, b))
    scale = np.max(np.abs(b[np.isfinite(b)])) if np.isfinite(b).any() else 1.0
    np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=RTOL,
                               atol=ATOL * max(scale, 1.0), err_msg=what, equal_nan=True)


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def compare(jfn, tfn, inputs: dict, diff, family, seed=0):
    """Run both on ``inputs`` (numpy arrays / plain values); compare every output and the grads
    of ``sum(out_i * ct_i)`` wrt the inputs named in ``diff``."""
    tin = {k: torch.tensor(v, requires_grad=k in diff) if isinstance(v, np.ndarray) else v
           for k, v in inputs.items()}
    touts = tfn(**tin)
    touts = touts if isinstance(touts, tuple) else (touts,)
    jin = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}
    jouts = jfn(**jin)
    jouts = jouts if isinstance(jouts, tuple) else (jouts,)
    assert len(jouts) == len(touts)
    for i, (j, t) in enumerate(zip(jouts, touts)):
        if t is None:
            assert j is None, f"output {i}: torch gives None"
            continue
        assert_close(j, t.detach().numpy(), f"output {i}", family)
    if not diff:
        return
    rng = np.random.default_rng(seed + 1)
    cts = [None if t is None else randn(rng, *t.shape) for t in touts]
    sum(((t * torch.tensor(c)).sum() for t, c in zip(touts, cts) if t is not None)).backward()

    def loss(d):
        outs = jfn(**{**jin, **d})
        outs = outs if isinstance(outs, tuple) else (outs,)
        return sum(jnp.sum(o * c) for o, c in zip(outs, cts) if o is not None)

    grads = jax.grad(loss)({k: jin[k] for k in diff})
    for k in diff:
        tg = tin[k].grad
        tg = np.zeros(inputs[k].shape, np.float32) if tg is None else tg.numpy()
        assert_close(grads[k], tg, f"grad {k}", family)


# ---------------------------------------------------------------- scaled_dot_product_attention

SDPA_CASES = [
    dict(),
    dict(mask="bool_ls"),
    dict(mask="bool_full"),
    dict(mask="float_ls"),
    dict(mask="float_full"),
    dict(is_causal=True),
    dict(is_causal=True, L=6, S=4),
    dict(scale=0.3),
    dict(mask="bool_ls", scale=0.7),
    dict(gqa=True),
    dict(mask="bool_dead_row"),
    dict(mask="float_dead_row"),
    dict(unbatched=True),
    dict(unbatched=True, mask="bool_ls"),
    dict(Ev=6),
]


@pytest.mark.parametrize("case", SDPA_CASES, ids=[str(i) for i in range(len(SDPA_CASES))])
def test_sdpa(case):
    rng = np.random.default_rng(zlib.crc32(str(case).encode()))
    L, S, E, Ev = case.get("L", 5), case.get("S", 7), 8, case.get("Ev", 8)
    lead = () if case.get("unbatched") else (2, 4)
    klead = (2, 2) if case.get("gqa") else lead
    inp = dict(query=randn(rng, *lead, L, E), key=randn(rng, *klead, S, E),
               value=randn(rng, *klead, S, Ev))
    m = case.get("mask")
    if m == "bool_ls":
        mask = rng.random((L, S)) > 0.3
        mask[:, 0] = True
        inp["attn_mask"] = mask
    elif m == "bool_full":
        mask = rng.random((*lead, L, S)) > 0.3
        mask[..., 0] = True
        inp["attn_mask"] = mask
    elif m == "float_ls":
        inp["attn_mask"] = randn(rng, L, S)
    elif m == "float_full":
        inp["attn_mask"] = randn(rng, *lead, L, S)
    elif m == "bool_dead_row":
        mask = rng.random((L, S)) > 0.3
        mask[:, 0] = True
        mask[2] = False
        inp["attn_mask"] = mask
    elif m == "float_dead_row":
        mask = randn(rng, L, S)
        mask[1] = -np.inf
        mask[3, ::2] = -np.inf
        inp["attn_mask"] = mask
    kw = dict(is_causal=case.get("is_causal", False), scale=case.get("scale"),
              enable_gqa=case.get("gqa", False))
    diff = ["query", "key", "value"] + (["attn_mask"] if m in ("float_ls", "float_full") else [])
    compare(lambda **a: scaled_dot_product_attention(**a, **kw),
            lambda **a: TF.scaled_dot_product_attention(**a, **kw), inp, diff, "sdpa")


def test_sdpa_dropout_statistics_and_determinism():
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(randn(rng, 2, 2, 6, 4)) for _ in range(3))
    k0 = jax.random.key(0)
    a = scaled_dot_product_attention(q, k, v, dropout_p=0.5, key_rng=k0)
    b = scaled_dot_product_attention(q, k, v, dropout_p=0.5, key_rng=k0)
    c = scaled_dot_product_attention(q, k, v, dropout_p=0.5, key_rng=jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(a), np.asarray(c))
    # the expectation over masks equals the no-dropout output
    keys = jax.random.split(jax.random.key(3), 4000)
    outs = jax.vmap(lambda kk: scaled_dot_product_attention(q, k, v, dropout_p=0.3, key_rng=kk))(keys)
    ref = scaled_dot_product_attention(q, k, v)
    np.testing.assert_allclose(np.asarray(outs.mean(0)), np.asarray(ref), atol=0.06)
    # raw uint32 key data works too
    kd = jax.random.key_data(k0)
    np.testing.assert_array_equal(
        np.asarray(scaled_dot_product_attention(q, k, v, dropout_p=0.5, key_rng=kd)), np.asarray(a))


def test_sdpa_errors():
    q = jnp.ones((2, 3, 4))
    with pytest.raises(ValueError, match="needs an explicit `key_rng`"):
        scaled_dot_product_attention(q, q, q, dropout_p=0.1)
    with pytest.raises(ValueError, match="is_causal"):
        scaled_dot_product_attention(q, q, q, attn_mask=jnp.ones((3, 3), bool), is_causal=True)
    with pytest.raises(TypeError, match="attn_mask dtype"):
        scaled_dot_product_attention(q, q, q, attn_mask=jnp.ones((3, 3), jnp.int32))
    with pytest.raises(ValueError, match="last dim"):
        scaled_dot_product_attention(q, jnp.ones((2, 3, 5)), jnp.ones((2, 3, 5)))
    with pytest.raises(TypeError, match="floating"):
        scaled_dot_product_attention(jnp.ones((2, 3), jnp.int32), q[0], q[0])


# ---------------------------------------------------------------- multi_head_attention_forward

MHA_CASES = [
    dict(),
    dict(need_weights=False),
    dict(average=False),
    dict(bias=False),
    dict(separate=True),
    dict(separate=True, need_weights=False, kpm="bool"),
    dict(bias_kv=True),
    dict(bias_kv=True, kpm="bool", attn="bool2"),
    dict(zero_attn=True),
    dict(zero_attn=True, bias_kv=True, attn="float3", need_weights=False),
    dict(kpm="bool"),
    dict(kpm="float"),
    dict(attn="bool2"),
    dict(attn="float2"),
    dict(attn="bool3"),
    dict(attn="float3", need_weights=False),
    dict(kpm="bool", attn="float2", need_weights=False),
    dict(attn="causal", is_causal=True),
    dict(attn="causal", is_causal=True, need_weights=False),
    dict(attn="causal", is_causal=True, need_weights=False, kpm="bool"),
    dict(unbatched=True),
    dict(unbatched=True, kpm="bool", attn="bool3"),
    dict(unbatched=True, need_weights=False, attn="float2"),
    dict(cross=True),
    dict(cross=True, kpm="bool", need_weights=False),
]


def _mha_inputs(case, rng):
    E, H, L, N = 8, 2, 5, 3
    S = 6 if case.get("cross") or case.get("separate") else L
    kd, vd = (5, 7) if case.get("separate") else (E, E)
    lead = (lambda n: (n,)) if case.get("unbatched") else (lambda n: (n, N))
    Nb = 1 if case.get("unbatched") else N
    inp = dict(query=randn(rng, *lead(L), E), key=randn(rng, *lead(S), kd),
               value=randn(rng, *lead(S), vd), out_proj_weight=randn(rng, E, E, scale=0.3))
    if case.get("separate"):
        inp.update(q_proj_weight=randn(rng, E, E, scale=0.3), k_proj_weight=randn(rng, E, kd, scale=0.3),
                   v_proj_weight=randn(rng, E, vd, scale=0.3))
    else:
        inp["in_proj_weight"] = randn(rng, 3 * E, E, scale=0.3)
    if case.get("bias", True):
        inp.update(in_proj_bias=randn(rng, 3 * E, scale=0.1), out_proj_bias=randn(rng, E, scale=0.1))
    if case.get("bias_kv"):
        inp.update(bias_k=randn(rng, 1, 1, E), bias_v=randn(rng, 1, 1, E))
    kpm = case.get("kpm")
    kshape = (S,) if case.get("unbatched") else (N, S)
    if kpm == "bool":
        m = rng.random(kshape) > 0.7
        m[..., 0] = False
        inp["key_padding_mask"] = m
    elif kpm == "float":
        inp["key_padding_mask"] = randn(rng, *kshape)
    attn = case.get("attn")
    if attn == "bool2":
        m = rng.random((L, S)) > 0.7
        m[:, 0] = False
        inp["attn_mask"] = m
    elif attn == "float2":
        inp["attn_mask"] = randn(rng, L, S)
    elif attn == "bool3":
        m = rng.random((Nb * H, L, S)) > 0.7
        m[..., 0] = False
        inp["attn_mask"] = m
    elif attn == "float3":
        inp["attn_mask"] = randn(rng, Nb * H, L, S)
    elif attn == "causal":
        inp["attn_mask"] = ~np.tril(np.ones((L, S), bool))
    return E, H, inp


@pytest.mark.parametrize("case", MHA_CASES, ids=[str(i) for i in range(len(MHA_CASES))])
def test_mha_forward(case):
    rng = np.random.default_rng(zlib.crc32(str(case).encode()))
    E, H, inp = _mha_inputs(case, rng)
    kw = dict(need_weights=case.get("need_weights", True),
              average_attn_weights=case.get("average", True), is_causal=case.get("is_causal", False),
              use_separate_proj_weight=bool(case.get("separate")),
              add_zero_attn=bool(case.get("zero_attn")), training=False, dropout_p=0.0)

    def call(fn, a):
        a = dict(a)
        args = dict(embed_dim_to_check=E, num_heads=H, in_proj_weight=a.pop("in_proj_weight", None),
                    in_proj_bias=a.pop("in_proj_bias", None), bias_k=a.pop("bias_k", None),
                    bias_v=a.pop("bias_v", None), out_proj_bias=a.pop("out_proj_bias", None))
        return fn(**a, **args, **kw)

    diff = [k for k, v in inp.items() if isinstance(v, np.ndarray) and v.dtype == np.float32]
    compare(lambda **a: call(multi_head_attention_forward, a),
            lambda **a: call(TF.multi_head_attention_forward, a), inp, diff, "mha")


def test_mha_static_kv():
    rng = np.random.default_rng(7)
    E, H, L, N, S = 8, 2, 4, 3, 5
    inp = dict(query=randn(rng, L, N, E), key=randn(rng, S, N, E), value=randn(rng, S, N, E),
               in_proj_weight=randn(rng, 3 * E, E, scale=0.3), in_proj_bias=randn(rng, 3 * E),
               out_proj_weight=randn(rng, E, E, scale=0.3), out_proj_bias=randn(rng, E),
               static_k=randn(rng, N * H, S + 1, E // H), static_v=randn(rng, N * H, S + 1, E // H))

    def call(fn, a):
        return fn(embed_dim_to_check=E, num_heads=H, bias_k=None, bias_v=None, add_zero_attn=False,
                  dropout_p=0.0, training=False, **a)

    compare(lambda **a: call(multi_head_attention_forward, a),
            lambda **a: call(TF.multi_head_attention_forward, a), inp, list(inp), "mha")


def test_mha_fully_masked_rows_match_torch():
    """need_weights=True: torch's plain softmax gives NaN rows; need_weights=False: zeros."""
    rng = np.random.default_rng(3)
    E, H, L, N = 8, 2, 4, 2
    x = randn(rng, L, N, E)
    w, wo = randn(rng, 3 * E, E), randn(rng, E, E)
    kpm = np.zeros((N, L), bool)
    kpm[1] = True
    for nw in (True, False):
        t = TF.multi_head_attention_forward(*(torch.tensor(x),) * 3, E, H, torch.tensor(w), None,
                                            None, None, False, 0.0, torch.tensor(wo), None,
                                            training=False, key_padding_mask=torch.tensor(kpm),
                                            need_weights=nw)[0].numpy()
        j = multi_head_attention_forward(*(jnp.asarray(x),) * 3, E, H, jnp.asarray(w), None, None,
                                         None, False, 0.0, jnp.asarray(wo), None, training=False,
                                         key_padding_mask=jnp.asarray(kpm), need_weights=nw)[0]
        np.testing.assert_array_equal(np.isnan(np.asarray(j)), np.isnan(t))
        np.testing.assert_allclose(np.asarray(j), t, rtol=RTOL, atol=ATOL, equal_nan=True)


def test_mha_dropout_needs_key_and_is_deterministic():
    rng = np.random.default_rng(4)
    E, H = 8, 2
    x = jnp.asarray(randn(rng, 5, 3, E))
    w, wo = jnp.asarray(randn(rng, 3 * E, E)), jnp.asarray(randn(rng, E, E))
    args = (x, x, x, E, H, w, None, None, None, False, 0.5, wo, None)
    with pytest.raises(ValueError, match="key_rng"):
        multi_head_attention_forward(*args)
    for nw in (True, False):
        a = multi_head_attention_forward(*args, need_weights=nw, key_rng=jax.random.key(0))[0]
        b = multi_head_attention_forward(*args, need_weights=nw, key_rng=jax.random.key(0))[0]
        c = multi_head_attention_forward(*args, need_weights=nw, key_rng=jax.random.key(1))[0]
        ev = multi_head_attention_forward(*args, need_weights=nw, training=False)[0]
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert not np.allclose(np.asarray(a), np.asarray(c))
        assert not np.allclose(np.asarray(a), np.asarray(ev))


def test_mha_errors():
    E, H = 8, 3
    x = jnp.ones((4, 2, E))
    w, wo = jnp.ones((3 * E, E)), jnp.ones((E, E))
    with pytest.raises(ValueError, match="not divisible"):
        multi_head_attention_forward(x, x, x, E, H, w, None, None, None, False, 0.0, wo, None)
    with pytest.raises(ValueError, match="expecting embedding dimension"):
        multi_head_attention_forward(x, x, x, 4, 2, w, None, None, None, False, 0.0, wo, None)
    with pytest.raises(ValueError, match="2D attn_mask"):
        multi_head_attention_forward(x, x, x, E, 2, w, None, None, None, False, 0.0, wo, None,
                                     attn_mask=jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="need attn_mask"):
        multi_head_attention_forward(x, x, x, E, 2, w, None, None, None, False, 0.0, wo, None,
                                     is_causal=True)
    with pytest.raises(TypeError, match="only bool and floating"):
        multi_head_attention_forward(x, x, x, E, 2, w, None, None, None, False, 0.0, wo, None,
                                     key_padding_mask=jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(ValueError, match="3-D"):
        multi_head_attention_forward(x, x[0], x[0], E, 2, w, None, None, None, False, 0.0, wo, None)


def test_functions_jit():
    rng = np.random.default_rng(5)
    q = jnp.asarray(randn(rng, 2, 2, 5, 4))
    f = jax.jit(lambda q: scaled_dot_product_attention(q, q, q, is_causal=True))
    np.testing.assert_allclose(np.asarray(f(q)),
                               np.asarray(scaled_dot_product_attention(q, q, q, is_causal=True)),
                               rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- module comparison helpers

def _flat(out):
    if isinstance(out, (tuple, list)):
        return [y for o in out for y in _flat(o)]
    return [out]


def randomize(tm, scale=0.5, seed=0):
    """Give every parameter of a torch module random values (the default inits zero biases)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tm.parameters():
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * scale)
    return tm


def compare_module(tm, jm, args, kwargs=None, diff_args=(), family="module", seed=0):
    """Load ``tm``'s state_dict into ``jm`` (names must match exactly), then compare every output
    and the grads of ``sum(out_i * ct_i)`` wrt every parameter and the positional args whose
    indices are in ``diff_args``. ``args`` are numpy arrays / None; ``kwargs`` may hold arrays."""
    import jparam

    kwargs = kwargs or {}
    tsd = tm.state_dict()
    assert list(tsd) == list(jm.state_dict()), f"state_dict keys {list(jm.state_dict())} != {list(tsd)}"
    res = jm.load_state_dict(tsd)
    assert not res.missing_keys and not res.unexpected_keys
    to_t = lambda a, rg=False: torch.tensor(a, requires_grad=rg) if isinstance(a, np.ndarray) else a
    to_j = lambda a: jnp.asarray(a) if isinstance(a, np.ndarray) else a
    targs = [to_t(a, i in diff_args) for i, a in enumerate(args)]
    touts = [t for t in _flat(tm(*targs, **{k: to_t(v) for k, v in kwargs.items()})) ]
    jargs = [to_j(a) for a in args]
    jkw = {k: to_j(v) for k, v in kwargs.items()}
    jouts = _flat(jm(*jargs, **jkw))
    assert len(jouts) == len(touts)
    for i, (j, t) in enumerate(zip(jouts, touts)):
        if t is None:
            assert j is None, f"output {i}: torch gives None, jparam {type(j)}"
            continue
        assert_close(j, t.detach().numpy(), f"output {i}", family)
    rng = np.random.default_rng(seed + 11)
    cts = [None if t is None else randn(rng, *t.shape) for t in touts]
    sum((t * torch.tensor(c)).sum() for t, c in zip(touts, cts) if t is not None).backward()

    def loss_of(outs):
        return sum(jnp.sum(o * c) for o, c in zip(_flat(outs), cts) if o is not None)

    gmod = jparam.grad(lambda m, *a: loss_of(m(*a, **jkw)))(jm, *jargs)
    tparams = dict(tm.named_parameters())
    jgrads = dict(gmod.named_parameters())
    assert list(jgrads) == list(tparams)
    for n, tp in tparams.items():
        tg = np.zeros(tp.shape, np.float32) if tp.grad is None else tp.grad.numpy()
        assert_close(jgrads[n].data, tg, f"grad {n}", family)
    if diff_args:
        def f(*d):
            a = list(jargs)
            for i, v in zip(diff_args, d):
                a[i] = v
            return loss_of(jm(*a, **jkw))
        gs = jax.grad(f, argnums=tuple(range(len(diff_args))))(*[jargs[i] for i in diff_args])
        for i, g in zip(diff_args, gs):
            assert_close(g, targs[i].grad.numpy(), f"grad arg {i}", family)


# ---------------------------------------------------------------- nn.MultiheadAttention

MODULE_CASES = [
    dict(),
    dict(batch_first=True),
    dict(batch_first=True, need_weights=False, kpm="bool"),
    dict(kdim=5, vdim=7),
    dict(kdim=5, vdim=7, batch_first=True, kpm="float", attn="float2"),
    dict(bias=False, attn="bool3"),
    dict(add_bias_kv=True, kpm="bool", attn="bool2"),
    dict(add_zero_attn=True, average=False),
    dict(add_bias_kv=True, add_zero_attn=True, need_weights=False, attn="float3"),
    dict(attn="causal", is_causal=True, need_weights=False),
    dict(attn="causal", is_causal=True, batch_first=True),
    dict(dropout=0.3, mode="eval"),
    dict(dropout=0.3, mode="eval", batch_first=True, need_weights=False, kpm="bool"),
    dict(unbatched=True, kpm="bool"),
    dict(unbatched=True, batch_first=True, attn="float2", need_weights=False),
    dict(cross=True, batch_first=True),
]


@pytest.mark.parametrize("case", MODULE_CASES, ids=[str(i) for i in range(len(MODULE_CASES))])
def test_multihead_attention_module(case):
    import jparam.nn as jnn

    E, H, L, N = 8, 2, 5, 3
    ctor = dict(dropout=case.get("dropout", 0.0), bias=case.get("bias", True),
                add_bias_kv=case.get("add_bias_kv", False), add_zero_attn=case.get("add_zero_attn", False),
                kdim=case.get("kdim"), vdim=case.get("vdim"), batch_first=case.get("batch_first", False))
    torch.manual_seed(0)
    tm = randomize(torch.nn.MultiheadAttention(E, H, **ctor))
    jm = jnn.MultiheadAttention(E, H, **ctor)
    if case.get("mode") == "eval":
        tm.eval()
        jm.eval()
    rng = np.random.default_rng(zlib.crc32(str(case).encode()))
    S = 6 if case.get("cross") or case.get("kdim") else L
    kd, vd = ctor["kdim"] or E, ctor["vdim"] or E
    bf, ub = ctor["batch_first"], case.get("unbatched")
    shp = lambda n, d: (n, d) if ub else ((N, n, d) if bf else (n, N, d))
    q = randn(rng, *shp(L, E))
    k = q if S == L and kd == E and not case.get("cross") else randn(rng, *shp(S, kd))
    v = k if vd == kd and k is not q else (q if k is q else randn(rng, *shp(S, vd)))
    Nb = 1 if ub else N
    kw = dict(need_weights=case.get("need_weights", True),
              average_attn_weights=case.get("average", True), is_causal=case.get("is_causal", False))
    kpm = case.get("kpm")
    kshape = (S,) if ub else (N, S)
    if kpm == "bool":
        m = rng.random(kshape) > 0.7
        m[..., 0] = False
        kw["key_padding_mask"] = m
    elif kpm == "float":
        kw["key_padding_mask"] = randn(rng, *kshape)
    attn = case.get("attn")
    if attn == "bool2":
        m = rng.random((L, S)) > 0.7
        m[:, 0] = False
        kw["attn_mask"] = m
    elif attn == "float2":
        kw["attn_mask"] = randn(rng, L, S)
    elif attn == "bool3":
        m = rng.random((Nb * H, L, S)) > 0.7
        m[..., 0] = False
        kw["attn_mask"] = m
    elif attn == "float3":
        kw["attn_mask"] = randn(rng, Nb * H, L, S)
    elif attn == "causal":
        kw["attn_mask"] = ~np.tril(np.ones((L, S), bool))
    diff = (0,) if k is q else (0, 1, 2)
    compare_module(tm, jm, [q, k, v], kw, diff_args=diff, family="mha_module")


def test_multihead_attention_init_repr_and_names():
    import jparam
    import jparam.nn as jnn

    jparam.manual_seed(0)
    m = jnn.MultiheadAttention(16, 4, add_bias_kv=True)
    t = torch.nn.MultiheadAttention(16, 4, add_bias_kv=True)
    assert repr(m) == repr(t)
    assert list(m.state_dict()) == list(t.state_dict())
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in t.named_parameters()]
    w = np.asarray(m.in_proj_weight.data)
    bound = math.sqrt(6.0 / (16 + 48))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.all(np.asarray(m.in_proj_bias.data) == 0) and np.all(np.asarray(m.out_proj.bias.data) == 0)
    ow = np.asarray(m.out_proj.weight.data)
    assert np.abs(ow).max() <= 1 / 4 and np.abs(ow).max() > 0.9 / 4
    assert abs(float(np.asarray(m.bias_k.data).std()) - math.sqrt(2 / 32)) < 0.15
    sep = jnn.MultiheadAttention(8, 2, kdim=3, vdim=5, bias=False, dtype=jnp.bfloat16)
    ts = torch.nn.MultiheadAttention(8, 2, kdim=3, vdim=5, bias=False)
    assert list(sep.state_dict()) == list(ts.state_dict())
    assert sep.k_proj_weight.shape == (8, 3) and sep.v_proj_weight.shape == (8, 5)
    assert sep.in_proj_weight is None and sep.out_proj.bias is None
    assert sep.q_proj_weight.dtype == jnp.bfloat16 and sep.out_proj.weight.dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="divisible"):
        jnn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match="greater than 0"):
        jnn.MultiheadAttention(0, 1)


def test_multihead_attention_dropout_under_jit():
    """Train-mode dropout draws from the module's own key: fresh masks per step, no extra arg."""
    import jparam
    import jparam.nn as jnn

    jparam.manual_seed(0)
    m = jnn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True)
    x = jnp.asarray(randn(np.random.default_rng(0), 2, 5, 8))
    step = jax.jit(lambda m, x: jparam.call(m, x, x, x))
    (o1, _), m1 = step(m, x)
    (o2, _), m2 = step(m1, x)
    assert not np.allclose(np.asarray(o1), np.asarray(o2))
    (o1b, _), _ = step(m, x)
    np.testing.assert_array_equal(np.asarray(o1), np.asarray(o1b))
    m.eval()
    (e1, _), _ = step(m, x)
    (e2, _), _ = step(m, x)
    np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))
