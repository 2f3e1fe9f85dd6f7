"""jparam.from_torch: standard torch.nn models convert with the same outputs."""
from __future__ import annotations

from collections import OrderedDict

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jparam
from jparam import nn
from jparam._from_torch import from_torch


def _np(t):
    return t.detach().numpy()


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), _np(b) if isinstance(b, torch.Tensor) else b,
                               rtol=tol, atol=tol)


def test_sequential_of_layers_matches_torch():
    torch.manual_seed(0)
    t = torch.nn.Sequential(OrderedDict(
        fc=torch.nn.Linear(6, 16), bn=torch.nn.BatchNorm1d(16, momentum=0.2, eps=1e-3),
        drop=torch.nn.Dropout(0.25), ident=torch.nn.Identity(),
        inner=torch.nn.Sequential(torch.nn.Linear(16, 8, bias=False), torch.nn.Linear(8, 3)),
    ))
    x = torch.randn(10, 6)
    t.train()
    t(x)  # non-trivial running statistics
    j = from_torch(t)
    assert isinstance(j, nn.Sequential) and isinstance(j.bn, nn.BatchNorm1d)
    assert j.bn.momentum == 0.2 and j.bn.eps == 1e-3 and j.drop.p == 0.25
    assert j.inner[0].bias is None and j.fc.in_features == 6
    assert list(j.state_dict()) == list(t.state_dict())
    for k, v in t.state_dict().items():
        np.testing.assert_array_equal(np.asarray(j.state_dict()[k]), _np(v))
    assert j.training and j.bn.training
    t.eval()
    j.eval()
    _close(j(jnp.asarray(_np(x))), t(x))
    # training-mode BatchNorm (batch statistics) agrees too
    t.train()
    j.train()
    t.drop.p = j.drop.p = 0.0
    out, j2 = jparam.call(j, jnp.asarray(_np(x)))
    _close(out, t(x))
    _close(j2.bn.running_mean, t.bn.running_mean)


def test_recurrent_and_attention_layers():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8)
    for tm in (torch.nn.LSTM(8, 6, num_layers=2, batch_first=True),
               torch.nn.GRU(8, 4, bidirectional=True, batch_first=True),
               torch.nn.RNN(8, 4, nonlinearity="relu", bias=False, batch_first=True)):
        jm = from_torch(tm)
        assert type(jm).__name__ == type(tm).__name__
        _close(jm(jnp.asarray(_np(x)))[0], tm(x)[0])
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True, add_bias_kv=True).eval()
    jm = from_torch(mha)
    want, _ = mha(x, x, x)
    got, _ = jm(*(jnp.asarray(_np(x)),) * 3)
    _close(got, want)


def test_containers_ties_frozen_and_modes():
    torch.manual_seed(0)
    t = torch.nn.ModuleDict({
        "enc": torch.nn.ModuleList([torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)]),
        "head": torch.nn.Linear(4, 4),
    })
    t["head"].weight = t["enc"][0].weight          # tied
    t["enc"][1].bias.requires_grad_(False)          # frozen
    t["enc"].eval()                                  # mixed modes
    j = from_torch(t)
    assert isinstance(j, nn.ModuleDict) and isinstance(j["enc"], nn.ModuleList)
    assert j["head"].weight is j["enc"][0].weight
    assert [n for n, _ in j.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert list(j.state_dict()) == list(t.state_dict())
    assert j["enc"][1].bias.requires_grad is False and j["enc"][1].weight.requires_grad
    assert j.training and not j["enc"].training and not j["enc"][0].training


def test_custom_and_unknown_classes_raise():
    class MyBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x) * 2

    with pytest.raises(TypeError, match=r"MyBlock at 1 is a custom torch module.*mirror class "
                                        r"`class MyBlock\(jparam.nn.Module\)`.*load_state_dict"):
        from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), MyBlock()))
    with pytest.raises(TypeError, match="expects a torch.nn.Module, got int"):
        from_torch(3)


def test_missing_counterpart_raises(monkeypatch):
    monkeypatch.delattr(nn, "Dropout")
    with pytest.raises(NotImplementedError, match=r"torch.nn.Dropout at d has no jparam.nn counterpart"):
        from_torch(torch.nn.Sequential(OrderedDict(d=torch.nn.Dropout())))


def test_dtype_follows_torch():
    t = torch.nn.Linear(3, 2).to(torch.bfloat16)
    j = from_torch(t)
    assert j.weight.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(j.weight.data.astype(jnp.float32)),
                                  _np(t.weight.float()))


def _cnn():
    T = torch.nn
    return T.Sequential(
        T.Conv2d(3, 8, 3, padding=1), T.BatchNorm2d(8), T.ReLU(), T.MaxPool2d(2),
        T.Conv2d(8, 8, 3, stride=2, padding="valid", groups=2, bias=False), T.GroupNorm(2, 8),
        T.GELU(approximate="tanh"),
        T.ConvTranspose2d(8, 4, 2, stride=2), T.InstanceNorm2d(4, affine=True), T.LeakyReLU(0.2),
        T.AvgPool2d(2, count_include_pad=False), T.AdaptiveAvgPool2d((2, 2)), T.Flatten(),
        T.Dropout(0.3), T.Linear(16, 10), T.LayerNorm(10, eps=1e-3), T.Tanh(), T.Linear(10, 5),
        T.Softmax(dim=-1))


def test_many_layer_types_match_torch():
    torch.manual_seed(0)
    t = _cnn()
    x = torch.randn(2, 3, 16, 16)
    t(x)  # running statistics move away from their init
    t.eval()
    j = from_torch(t)
    assert [type(m).__name__ for m in j] == [type(m).__name__ for m in t]
    assert j[4].groups == 2 and j[4].padding == "valid" and j[5].num_groups == 2
    assert j[6].approximate == "tanh" and j[9].negative_slope == 0.2 and j[15].eps == 1e-3
    _close(j(jnp.asarray(_np(x))), t(x), tol=1e-4)
    # training mode (batch statistics, no dropout randomness)
    t.train()
    t[13].p = 0.0
    j = from_torch(t)
    out, j2 = jparam.call(j, jnp.asarray(_np(x)))
    _close(out, t(x), tol=1e-4)
    _close(j2[1].running_var, t[1].running_var, tol=1e-4)


def test_embedding_and_transformer_stack_match_torch():
    torch.manual_seed(0)
    T = torch.nn
    emb = T.Embedding(20, 16, padding_idx=0)
    ids = torch.randint(0, 20, (2, 7))
    j_emb = from_torch(emb)
    assert j_emb.padding_idx == 0
    np.testing.assert_array_equal(np.asarray(j_emb(jnp.asarray(_np(ids)))), _np(emb(ids)))
    for act, norm_first in (("relu", False), ("gelu", True)):
        enc = T.TransformerEncoder(
            T.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=act, batch_first=True,
                                      norm_first=norm_first),
            num_layers=2, norm=T.LayerNorm(16), enable_nested_tensor=False).eval()
        j = from_torch(enc)
        assert len(j.layers) == 2 and j.layers[0] is not j.layers[1]
        x = torch.randn(2, 7, 16)
        _close(j(jnp.asarray(_np(x))), enc(x), tol=1e-4)
    dec = T.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True,
                                    activation=T.GELU(approximate="tanh")).eval()
    j = from_torch(dec)
    x, mem = torch.randn(2, 5, 16), torch.randn(2, 3, 16)
    _close(j(jnp.asarray(_np(x)), jnp.asarray(_np(mem))), dec(x, mem), tol=1e-4)


def test_full_transformer_converts():
    """torch.nn.Transformer keeps no num_*_layers attributes: they are read from its stacks."""
    import jax.numpy as jnp
    import numpy as np
    import torch

    import jparam

    torch.manual_seed(0)
    t = torch.nn.Transformer(d_model=16, nhead=4, num_encoder_layers=2, num_decoder_layers=3,
                             dim_feedforward=32, dropout=0.0, batch_first=True, activation="gelu").eval()
    j = jparam.from_torch(t)
    assert list(j.state_dict()) == list(t.state_dict())
    assert (len(j.encoder.layers), len(j.decoder.layers)) == (2, 3)
    src, tgt = torch.randn(2, 5, 16), torch.randn(2, 4, 16)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(4)
    ref = t(src, tgt, tgt_mask=mask).detach().numpy()
    out = j(jnp.asarray(src.numpy()), jnp.asarray(tgt.numpy()), tgt_mask=jnp.asarray(mask.numpy()))
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-5)
