"""Transformer layers / stacks against torch: state_dict loading, forward, input and
parameter gradients, masks, batch_first, norm_first, activations, repr and init."""
from __future__ import annotations

import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jparam
import jparam.nn as jnn
from test_attention import compare_module, randn, randomize

E, H, FF = 8, 2, 12


def _same_repr(jm, tm):
    """repr equality; LayerNorm's own repr (", bias=True" in torch 2.13) is the normalization
    family's concern and is tested there, so only the transformer structure is compared here."""
    import re

    strip = lambda s: re.sub(r"(LayerNorm\(.*?elementwise_affine=\w+)(, bias=True)?\)", r"\1)", s)
    assert strip(repr(jm)) == strip(repr(tm))


def _act(name):
    """(torch activation, jparam activation) pairs."""
    if name == "silu":
        return torch.nn.functional.silu, jax.nn.silu
    return name, name


def _masks(rng, case, L, S, N, prefix=""):
    kw = {}
    ub = case.get("unbatched")
    if case.get("kpm"):
        m = rng.random((S,) if ub else (N, S)) > 0.7
        m[..., 0] = False
        kw[f"{prefix}key_padding_mask"] = m
    mask = case.get("mask")
    if mask == "bool":
        m = rng.random((L, S)) > 0.7
        m[:, 0] = False
        return kw, m
    if mask == "float":
        return kw, randn(rng, L, S)
    if mask == "causal":
        return kw, np.triu(np.full((L, S), -np.inf, np.float32), 1)
    if mask == "causal_bool":
        return kw, ~np.tril(np.ones((L, S), bool))
    return kw, None


ENC_CASES = [
    dict(),
    dict(norm_first=True),
    dict(batch_first=True, activation="gelu"),
    dict(activation="silu", bias=False, layer_norm_eps=1e-3),
    dict(mask="bool", kpm=True),
    dict(mask="float", batch_first=True, norm_first=True),
    dict(mask="causal", is_causal=True),
    dict(mask="causal_bool", kpm=True, is_causal=True, batch_first=True),
    dict(unbatched=True, mask="float"),
    dict(unbatched=True, kpm=True, batch_first=True),
    dict(dropout=0.2, mode="eval", kpm=True),
    dict(dropout=0.2, mode="eval", batch_first=True, norm_first=True, activation="gelu"),
]


def _ctor(case):
    return dict(dim_feedforward=FF, dropout=case.get("dropout", 0.0),
                layer_norm_eps=case.get("layer_norm_eps", 1e-5),
                batch_first=case.get("batch_first", False), norm_first=case.get("norm_first", False),
                bias=case.get("bias", True))


def _pair(tcls, jcls, case, *args):
    ta, ja = _act(case.get("activation", "relu"))
    torch.manual_seed(0)
    tm = randomize(tcls(*args, **_ctor(case), activation=ta))
    jm = jcls(*args, **_ctor(case), activation=ja)
    if case.get("mode") == "eval":
        tm.eval()
        jm.eval()
    return tm, jm


def _seq(rng, case, n, N):
    if case.get("unbatched"):
        return randn(rng, n, E)
    return randn(rng, N, n, E) if case.get("batch_first") else randn(rng, n, N, E)


@pytest.mark.parametrize("case", ENC_CASES, ids=[str(i) for i in range(len(ENC_CASES))])
def test_encoder_layer(case):
    tm, jm = _pair(torch.nn.TransformerEncoderLayer, jnn.TransformerEncoderLayer, case, E, H)
    _same_repr(jm, tm)
    rng = np.random.default_rng(zlib.crc32(str(case).encode()))
    L, N = 5, 3
    kw, mask = _masks(rng, case, L, L, N, prefix="src_")
    if mask is not None:
        kw["src_mask"] = mask
    if case.get("is_causal"):
        kw["is_causal"] = True
    compare_module(tm, jm, [_seq(rng, case, L, N)], kw, diff_args=(0,), family="transformer")


DEC_CASES = [
    dict(),
    dict(norm_first=True, batch_first=True),
    dict(activation="gelu", mask="bool", kpm=True),
    dict(mask="causal", tgt_is_causal=True, mem_kpm=True, batch_first=True),
    dict(mask="float", mem_mask=True, bias=False),
    dict(unbatched=True, mask="causal_bool"),
    dict(dropout=0.3, mode="eval", mem_kpm=True, norm_first=True),
]


def _dec_kwargs(rng, case, T, S, N):
    kw, mask = _masks(rng, case, T, T, N, prefix="tgt_")
    if mask is not None:
        kw["tgt_mask"] = mask
    if case.get("tgt_is_causal"):
        kw["tgt_is_causal"] = True
    if case.get("mem_kpm"):
        m = rng.random((S,) if case.get("unbatched") else (N, S)) > 0.7
        m[..., 0] = False
        kw["memory_key_padding_mask"] = m
    if case.get("mem_mask"):
        kw["memory_mask"] = randn(rng, T, S)
    return kw


@pytest.mark.parametrize("case", DEC_CASES, ids=[str(i) for i in range(len(DEC_CASES))])
def test_decoder_layer(case):
    tm, jm = _pair(torch.nn.TransformerDecoderLayer, jnn.TransformerDecoderLayer, case, E, H)
    _same_repr(jm, tm)
    rng = np.random.default_rng(zlib.crc32(str(case).encode()))
    T, S, N = 4, 6, 2
    kw = _dec_kwargs(rng, case, T, S, N)
    compare_module(tm, jm, [_seq(rng, case, T, N), _seq(rng, case, S, N)], kw, diff_args=(0, 1),
                   family="transformer")


STACK_CASES = [
    dict(),
    dict(batch_first=True, norm_first=True, kpm=True, mask="bool"),
    dict(mask="causal", is_causal=True, no_norm=True),
    dict(dropout=0.1, mode="eval", activation="gelu", batch_first=True, kpm=True),
]


@pytest.mark.parametrize("case", STACK_CASES, ids=[str(i) for i in range(len(STACK_CASES))])
def test_encoder_stack(case):
    ta, ja = _act(case.get("activation", "relu"))
    torch.manual_seed(0)
    tl = torch.nn.TransformerEncoderLayer(E, H, **_ctor(case), activation=ta)
    tnorm = None if case.get("no_norm") else torch.nn.LayerNorm(E)
    tm = randomize(torch.nn.TransformerEncoder(tl, 3, tnorm, enable_nested_tensor=False))
    jl = jnn.TransformerEncoderLayer(E, H, **_ctor(case), activation=ja)
    jm = jnn.TransformerEncoder(jl, 3, None if case.get("no_norm") else jnn.LayerNorm(E),
                                enable_nested_tensor=False)
    if case.get("mode") == "eval":
        tm.eval()
        jm.eval()
    _same_repr(jm, tm)
    rng = np.random.default_rng(zlib.crc32(str(case).encode()))
    L, N = 5, 2
    kw, mask = _masks(rng, case, L, L, N, prefix="src_")
    if mask is not None:
        kw["mask"] = mask
    if case.get("is_causal"):
        kw["is_causal"] = True
    compare_module(tm, jm, [_seq(rng, case, L, N)], kw, diff_args=(0,), family="transformer")


@pytest.mark.parametrize("case", STACK_CASES[:3], ids=[str(i) for i in range(3)])
def test_decoder_stack(case):
    ta, ja = _act(case.get("activation", "relu"))
    torch.manual_seed(0)
    tl = torch.nn.TransformerDecoderLayer(E, H, **_ctor(case), activation=ta)
    tnorm = None if case.get("no_norm") else torch.nn.LayerNorm(E)
    tm = randomize(torch.nn.TransformerDecoder(tl, 2, tnorm))
    jl = jnn.TransformerDecoderLayer(E, H, **_ctor(case), activation=ja)
    jm = jnn.TransformerDecoder(jl, 2, None if case.get("no_norm") else jnn.LayerNorm(E))
    _same_repr(jm, tm)
    rng = np.random.default_rng(zlib.crc32(str(case).encode()) + 1)
    T, S, N = 4, 5, 2
    kw = _dec_kwargs(rng, case, T, S, N)
    if "tgt_is_causal" not in kw and case.get("is_causal"):
        kw["tgt_is_causal"] = True
    compare_module(tm, jm, [_seq(rng, case, T, N), _seq(rng, case, S, N)], kw, diff_args=(0, 1),
                   family="transformer")


@pytest.mark.parametrize("batch_first", [False, True])
def test_full_transformer(batch_first):
    kw = dict(d_model=E, nhead=H, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=FF,
              dropout=0.0, batch_first=batch_first)
    torch.manual_seed(0)
    tm = randomize(torch.nn.Transformer(**kw))
    jm = jnn.Transformer(**kw)
    _same_repr(jm, tm)
    rng = np.random.default_rng(5)
    S, T, N = 6, 4, 2
    src = randn(rng, N, S, E) if batch_first else randn(rng, S, N, E)
    tgt = randn(rng, N, T, E) if batch_first else randn(rng, T, N, E)
    tgt_mask = np.asarray(jnn.Transformer.generate_square_subsequent_mask(T))
    np.testing.assert_array_equal(tgt_mask, torch.nn.Transformer.generate_square_subsequent_mask(T).numpy())
    skpm = rng.random((N, S)) > 0.7
    skpm[:, 0] = False
    compare_module(tm, jm, [src, tgt],
                   dict(tgt_mask=tgt_mask, src_key_padding_mask=skpm, memory_key_padding_mask=skpm,
                        tgt_is_causal=True),
                   diff_args=(0, 1), family="transformer")


def test_clones_are_independent_and_names_match():
    jparam.manual_seed(0)
    layer = jnn.TransformerEncoderLayer(E, H, FF)
    enc = jnn.TransformerEncoder(layer, 3)
    tenc = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(E, H, FF), 3,
                                       enable_nested_tensor=False)
    assert list(enc.state_dict()) == list(tenc.state_dict())
    assert [n for n, _ in enc.named_parameters()] == [n for n, _ in tenc.named_parameters()]
    w = [enc.layers[i].linear1.weight for i in range(3)]
    assert w[0] is not w[1] and w[1] is not w[2] and w[0] is not layer.linear1.weight
    # clones start equal (deep copies, like torch) ...
    np.testing.assert_array_equal(np.asarray(w[0].data), np.asarray(w[1].data))
    # ... but train independently
    x = jnp.asarray(randn(np.random.default_rng(0), 5, 2, E))
    _, g = jparam.backward(lambda m, x: jnp.sum(m(x) ** 2), enc.eval(), x)
    g0, g1 = (np.asarray(g.layers[i].linear1.weight.grad) for i in range(2))
    assert not np.allclose(g0, g1)
    # and their dropout keys differ, so masks differ between layers
    keys = {tuple(np.asarray(m._rng).tolist()) for m in enc.modules() if hasattr(m, "_rng")}
    assert len(keys) == len([m for m in enc.modules() if hasattr(m, "_rng")])


def test_transformer_init_and_dtype():
    jparam.manual_seed(0)
    m = jnn.Transformer(d_model=16, nhead=4, num_encoder_layers=1, num_decoder_layers=1,
                        dim_feedforward=32)
    w = np.asarray(m.encoder.layers[0].linear1.weight.data)     # (32, 16): xavier, not kaiming
    bound = math.sqrt(6 / (16 + 32))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    ow = np.asarray(m.decoder.layers[0].multihead_attn.out_proj.weight.data)
    assert 0.9 * math.sqrt(6 / 32) < np.abs(ow).max() <= math.sqrt(6 / 32)  # xavier on 16x16
    assert np.all(np.asarray(m.encoder.layers[0].self_attn.in_proj_bias.data) == 0)
    assert np.all(np.asarray(m.encoder.norm.weight.data) == 1)
    mb = jnn.TransformerEncoderLayer(8, 2, 16, dtype=jnp.bfloat16)
    assert all(p.dtype == jnp.bfloat16 for p in mb.parameters())
    with pytest.raises(ValueError, match="relu/gelu"):
        jnn.TransformerEncoderLayer(8, 2, activation="tanh")
    with pytest.raises(ValueError, match="d_model"):
        m(jnp.ones((3, 2, 8)), jnp.ones((3, 2, 8)))
    with pytest.raises(ValueError, match="batch number"):
        m(jnp.ones((3, 2, 16)), jnp.ones((3, 4, 16)))


def test_transformer_dropout_under_jit_compiles_once():
    jparam.manual_seed(0)
    m = jnn.TransformerEncoder(jnn.TransformerEncoderLayer(E, H, FF, dropout=0.3, batch_first=True), 2)
    x = jnp.asarray(randn(np.random.default_rng(1), 2, 5, E))
    traces = []

    @jax.jit
    def step(m, x):
        traces.append(1)
        return jparam.backward(lambda m, x: jnp.mean(m(x) ** 2), m, x)

    l1, m1 = step(m, x)
    l2, m2 = step(m1.zero_grad(), x)
    assert float(l1) != float(l2)          # fresh dropout masks each step, no extra argument
    assert len(traces) == 1


def test_masks_as_traced_jit_arguments():
    """Masks passed into a jitted step are traced arrays: no concrete-value inspection."""
    torch.manual_seed(0)
    tm = randomize(torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True), 2,
        enable_nested_tensor=False))
    jm = jnn.TransformerEncoder(jnn.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True), 2)
    jm.load_state_dict(tm.state_dict())
    rng = np.random.default_rng(9)
    x = randn(rng, 2, 5, E)
    kpm = rng.random((2, 5)) > 0.6
    kpm[:, 0] = False
    mask = np.triu(np.full((5, 5), -np.inf, np.float32), 1)
    f = jax.jit(lambda m, x, mask, kpm: jparam.call(m, x, mask=mask, src_key_padding_mask=kpm,
                                                    is_causal=True)[0])
    out = f(jm, jnp.asarray(x), jnp.asarray(mask), jnp.asarray(kpm))
    ref = tm(torch.tensor(x), mask=torch.tensor(mask), src_key_padding_mask=torch.tensor(kpm),
             is_causal=True)
    np.testing.assert_allclose(np.asarray(out), ref.detach().numpy(), rtol=1e-4, atol=1e-5)
