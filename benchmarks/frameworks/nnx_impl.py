"""Flax NNX: ``nnx.jit`` + ``nnx.Optimizer`` (variant "nnx"), and the split/merge +
``jax.jit`` loop its "Performance considerations" guide recommends (variant "nnx_split").

NNX layers are channels-last, so the CNN gets NHWC input and HWIO kernels (the same math;
the fc rows are permuted to match torch's NCHW flatten order).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.linen import max_pool

from benchmarks.frameworks import Runner, jit_runner
from benchmarks.frameworks._ops import causal_attention, gelu, loss_fn, make_optimizer


class MLP(nnx.Module):
    def __init__(self, sizes, rngs):
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


class CNN(nnx.Module):
    def __init__(self, rngs):
        self.conv1 = nnx.Conv(1, 16, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
        self.bn1 = nnx.BatchNorm(16, momentum=0.9, epsilon=1e-5, rngs=rngs)
        self.conv2 = nnx.Conv(16, 32, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
        self.bn2 = nnx.BatchNorm(32, momentum=0.9, epsilon=1e-5, rngs=rngs)
        self.drop = nnx.Dropout(0.25, rngs=rngs)
        self.fc = nnx.Linear(32 * 7 * 7, 10, rngs=rngs)

    def __call__(self, x):                       # NHWC
        x = max_pool(jax.nn.relu(self.bn1(self.conv1(x))), (2, 2), (2, 2))
        x = max_pool(jax.nn.relu(self.bn2(self.conv2(x))), (2, 2), (2, 2))
        return self.fc(self.drop(x.reshape(x.shape[0], -1)))


class Block(nnx.Module):
    def __init__(self, d, heads, rngs):
        self.heads = heads
        self.ln1 = nnx.LayerNorm(d, epsilon=1e-5, rngs=rngs)
        self.ln2 = nnx.LayerNorm(d, epsilon=1e-5, rngs=rngs)
        self.qkv, self.proj = nnx.Linear(d, 3 * d, rngs=rngs), nnx.Linear(d, d, rngs=rngs)
        self.fc1, self.fc2 = nnx.Linear(d, 4 * d, rngs=rngs), nnx.Linear(4 * d, d, rngs=rngs)

    def __call__(self, h):
        h = h + self.proj(causal_attention(self.qkv(self.ln1(h)), self.heads))
        return h + self.fc2(gelu(self.fc1(self.ln2(h))))


class GPT(nnx.Module):
    def __init__(self, c, rngs):
        self.wte = nnx.Embed(c.vocab, c.d, rngs=rngs)
        self.wpe = nnx.Embed(c.seq, c.d, rngs=rngs)
        self.blocks = nnx.List([Block(c.d, c.heads, rngs) for _ in range(c.layers)])
        self.ln_f = nnx.LayerNorm(c.d, epsilon=1e-5, rngs=rngs)

    def __call__(self, tok):
        h = self.wte(tok) + self.wpe.embedding[...][: tok.shape[-1]]
        for blk in self.blocks:
            h = blk(h)
        return self.wte.attend(self.ln_f(h))     # tied head


def _set(var, value):
    var.value = jnp.asarray(value)


def _load_linear(layer, sd, prefix):
    _set(layer.kernel, sd[prefix + "weight"].T)
    _set(layer.bias, sd[prefix + "bias"])


def _load_ln(layer, sd, prefix):
    _set(layer.scale, sd[prefix + "weight"])
    _set(layer.bias, sd[prefix + "bias"])


def make_model(c, sd):
    rngs = nnx.Rngs(params=0, dropout=1)
    if c.kind == "mlp":
        model = MLP(c.sizes, rngs)
        for i, layer in enumerate(model.layers):
            _load_linear(layer, sd, f"{2 * i}.")
    elif c.kind == "cnn":
        model = CNN(rngs)
        for i, conv, bn in ((1, model.conv1, model.bn1), (2, model.conv2, model.bn2)):
            _set(conv.kernel, sd[f"conv{i}.weight"].transpose(2, 3, 1, 0))
            _set(conv.bias, sd[f"conv{i}.bias"])
            _load_ln(bn, sd, f"bn{i}.")
        w = sd["fc.weight"].reshape(10, 32, 7, 7).transpose(2, 3, 1, 0).reshape(-1, 10)
        _set(model.fc.kernel, w)
        _set(model.fc.bias, sd["fc.bias"])
    elif c.kind == "gpt":
        model = GPT(c, rngs)
        _set(model.wte.embedding, sd["wte.weight"])
        _set(model.wpe.embedding, sd["wpe.weight"])
        _load_ln(model.ln_f, sd, "ln_f.")
        for i, blk in enumerate(model.blocks):
            p = f"blocks.{i}."
            _load_ln(blk.ln1, sd, p + "ln1.")
            _load_ln(blk.ln2, sd, p + "ln2.")
            for n in ("qkv", "proj", "fc1", "fc2"):
                _load_linear(getattr(blk, n), sd, f"{p}{n}.")
    else:
        raise ValueError(c.kind)
    return model


def build(c, sd, data, variant: str = "nnx") -> Runner:
    model = make_model(c, sd)
    optimizer = nnx.Optimizer(model, make_optimizer(c.opt), wrt=nnx.Param)
    x = np.transpose(data[0], (0, 2, 3, 1)) if c.kind == "cnn" else data[0]
    x, y = jnp.asarray(x), jnp.asarray(data[1])

    def lf(model, x, y):
        return loss_fn(c.loss, model(x), y)

    if variant == "nnx":
        @nnx.jit(donate_argnums=(0, 1))
        def train_step(model, optimizer, x, y):
            loss, grads = nnx.value_and_grad(lf)(model, x, y)
            optimizer.update(model, grads)
            return loss

        def step():
            return jax.block_until_ready(train_step(model, optimizer, x, y))

        return Runner(step, lambda: train_step.lower(model, optimizer, x, y))

    graphdef, state = nnx.split((model, optimizer))

    def jax_train_step(state, x, y):
        model, optimizer = nnx.merge(graphdef, state)
        loss, grads = nnx.value_and_grad(lf)(model, x, y)
        optimizer.update(model, grads)
        return nnx.state((model, optimizer)), loss

    return jit_runner(jax_train_step, (state,), (x, y))
