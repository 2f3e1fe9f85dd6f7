"""jparam.summary: shapes by eval_shape, counts like torch, model left untouched."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

import jparam
from jparam import nn
from jparam._summary import summary


class Pair(nn.Module):  # returns a tuple
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 4)
        self.b = nn.Linear(16, 2, bias=False)

    def forward(self, x):
        return self.a(x), self.b(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 16)
        self.block = nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16), nn.Dropout(0.1))
        self.shared = nn.Linear(16, 16)
        self.heads = Pair()
        self.tied = nn.Linear(16, 16)
        self.tied.weight = self.shared.weight  # one parameter, two places
        self.frozen = nn.Parameter(jnp.ones(3), requires_grad=False)

    def forward(self, x):
        h = self.block(self.inp(x))
        h = self.shared(self.shared(h))  # called twice
        h = self.tied(h)
        return self.heads(h)


def test_summary_table_and_counts():
    jparam.manual_seed(0)
    m = Net()
    before = jax.tree_util.tree_structure(m)
    s = summary(m, jax.ShapeDtypeStruct((5, 6), jnp.float32))
    rows = {r.name: r for r in s.rows}
    assert [r.name for r in s.rows] == [n for n, _ in m.named_modules()]
    assert rows[""].output_shape == ((5, 4), (5, 2))
    assert rows["block.1"].output_shape == (5, 16) and rows["block.1"].type == "BatchNorm1d"
    assert rows["shared"].calls == 2 and rows["tied"].calls == 1
    assert rows["heads.b"].output_shape == (5, 2)
    # counts equal torch's count of unique parameters
    uniq = {id(p): p for p in m.parameters()}
    total = sum(int(np.prod(p.shape)) for p in uniq.values())
    assert s.total_params == total
    assert s.trainable_params == total - 3 and s.non_trainable_params == 3
    assert rows["tied"].params == 16 * 16 + 16
    tm = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Linear(16, 16),
                             torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 16),
                             torch.nn.Linear(16, 4), torch.nn.Linear(16, 2, bias=False))
    torch_total = sum(p.numel() for p in tm.parameters()) + 16 + 3  # + tied bias + frozen
    assert s.total_params == torch_total
    assert s.param_bytes == 4 * total
    assert s.buffer_count == 3 and s.output_bytes == 4 * (5 * 4 + 5 * 2)
    assert s.input_bytes == 4 * 5 * 6
    text = str(s)
    for piece in ("Net", "└─shared (Linear)", "[5, 16] x2 calls", "([5, 4], [5, 2])",
                  f"Total params: {total:,}", "Non-trainable params: 3", "Partial"):
        assert piece in text, piece
    # nothing changed: no hooks left, no buffer update, same tree structure
    for _, mod in m.named_modules():
        assert not mod.__dict__.get("_forward_hooks")
    assert int(m.block[1].num_batches_tracked) == 0
    assert jax.tree_util.tree_structure(m) == before
    out = m.heads.a(jnp.ones((1, 16)))  # still usable
    assert out.shape == (1, 4)


def test_summary_with_arrays_and_without_inputs():
    jparam.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    s = summary(m, jnp.ones((7, 3)))
    assert s.rows[0].output_shape == (7, 2) and s.rows[1].output_shape == (7, 4)
    s2 = summary(m)
    assert s2.rows[0].output_shape is None and s2.total_params == 3 * 4 + 4 + 4 * 2 + 2
    assert "--" in str(s2)


def test_summary_of_converted_cnn_counts_like_torch():
    from test_from_torch import _cnn

    torch.manual_seed(0)
    t = _cnn()
    s = summary(jparam.from_torch(t), jax.ShapeDtypeStruct((2, 3, 16, 16), jnp.float32))
    assert s.total_params == sum(p.numel() for p in t.parameters())
    rows = {r.name: r for r in s.rows}
    for name, m in t.named_modules():
        assert rows[name].params == sum(p.numel() for p in m.parameters()), name
    # output shapes equal torch's, layer by layer
    shapes, x = {}, torch.randn(2, 3, 16, 16)
    for name, m in t.named_children():
        x = m(x)
        shapes[name] = tuple(x.shape)
    for name, shape in shapes.items():
        assert rows[name].output_shape == shape, name
    assert s.buffer_count == len(list(t.buffers()))
