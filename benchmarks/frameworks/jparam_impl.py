"""jparam, written as a torch user would port the torch models: ``jparam.nn`` layers, the
README's loop (``zero_grad`` / ``backward`` / ``step``) under ``jax.jit(donate_argnums=(0, 1))``.
"""
from __future__ import annotations

import jax.numpy as jnp

import jparam
import jparam.nn.functional as F
from jparam import nn, optim

from benchmarks.frameworks import Runner, jit_runner
from benchmarks.frameworks._ops import causal_attention, make_optimizer


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(self.drop(x.reshape(x.shape[0], -1)))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        x = x + self.proj(causal_attention(self.qkv(self.ln1(x)), self.heads))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, c, stacked: bool = False):
        super().__init__()
        self.wte = nn.Embedding(c.vocab, c.d)
        self.wpe = nn.Embedding(c.seq, c.d)
        if stacked:
            self.blocks = nn.StackedBlocks(lambda: Block(c.d, c.heads), c.layers)
        else:
            self.blocks = nn.ModuleList(Block(c.d, c.heads) for _ in range(c.layers))
        self.ln_f = nn.LayerNorm(c.d)
        self.head = nn.Linear(c.d, c.vocab, bias=False)
        self.head.weight = self.wte.weight            # tied, as GPT-2

    def forward(self, tok):
        h = self.wte(tok) + self.wpe.weight[: tok.shape[-1]]
        if isinstance(self.blocks, nn.ModuleList):
            for blk in self.blocks:
                h = blk(h)
        else:
            h = self.blocks(h)
        return self.head(self.ln_f(h))


def make_model(c, variant="jparam"):
    jparam.manual_seed(0)
    if c.kind == "mlp":
        layers = []
        for i, (a, b) in enumerate(zip(c.sizes[:-1], c.sizes[1:])):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(c.sizes) - 2 else [])
        return nn.Sequential(*layers)
    if c.kind == "cnn":
        return CNN()
    if c.kind == "gpt":
        return GPT(c, stacked=variant == "jparam_scan")
    raise ValueError(c.kind)


def build(c, sd, data, variant: str = "jparam", optax_adam: bool = False) -> Runner:
    """``optax_adam``: ``optim.Optimizer(params, optax.adam(...))`` in place of the torch-exact
    ``optim.Adam`` (``benchmarks/aot_split.py`` uses it to separate the optimizer's compile
    cost from the model's)."""
    model = make_model(c, variant)
    model.load_state_dict(sd)
    if c.opt == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    elif optax_adam:
        opt = optim.Optimizer(model.parameters(), make_optimizer("adam"))
    else:
        opt = optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    x, y = jnp.asarray(data[0]), jnp.asarray(data[1])

    amp = variant == "jparam_bf16"

    if c.loss == "ce":
        def loss_fn(m, x, y):
            with jparam.autocast("cuda", dtype=jnp.bfloat16, enabled=amp):
                out = m(x)
                return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    else:
        def loss_fn(m, x, y):
            with jparam.autocast("cuda", dtype=jnp.bfloat16, enabled=amp):
                return F.mse_loss(m(x), y)

    def train_step(model, opt, x, y):
        model = model.zero_grad()
        loss, model = jparam.backward(loss_fn, model, x, y)
        model, opt = opt.step(model)
        return model, opt, loss

    return jit_runner(train_step, (model, opt), (x, y))
