"""Equinox, as its docs write a training loop: per-example modules under ``jax.vmap``,
``eqx.filter_value_and_grad``, optax, ``eqx.filter_jit(donate="all-except-first")``."""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from benchmarks.frameworks import Runner
from benchmarks.frameworks._ops import causal_attention, gelu, loss_fn, make_optimizer


class MLP(eqx.Module):
    layers: list

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


class CNN(eqx.Module):
    conv1: eqx.nn.Conv2d
    bn1: eqx.nn.BatchNorm
    conv2: eqx.nn.Conv2d
    bn2: eqx.nn.BatchNorm
    pool: eqx.nn.MaxPool2d
    drop: eqx.nn.Dropout
    fc: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(1, 16, 3, padding=1, key=k1)
        self.bn1 = eqx.nn.BatchNorm(16, axis_name="batch", momentum=0.9, mode="batch")
        self.conv2 = eqx.nn.Conv2d(16, 32, 3, padding=1, key=k2)
        self.bn2 = eqx.nn.BatchNorm(32, axis_name="batch", momentum=0.9, mode="batch")
        self.pool = eqx.nn.MaxPool2d(2, 2)
        self.drop = eqx.nn.Dropout(0.25)
        self.fc = eqx.nn.Linear(32 * 7 * 7, 10, key=k3)

    def __call__(self, x, state, key):
        x, state = self.bn1(self.conv1(x), state)
        x = self.pool(jax.nn.relu(x))
        x, state = self.bn2(self.conv2(x), state)
        x = self.pool(jax.nn.relu(x))
        return self.fc(self.drop(x.reshape(-1), key=key)), state


class Block(eqx.Module):
    ln1: eqx.nn.LayerNorm
    ln2: eqx.nn.LayerNorm
    qkv: eqx.nn.Linear
    proj: eqx.nn.Linear
    fc1: eqx.nn.Linear
    fc2: eqx.nn.Linear
    heads: int = eqx.field(static=True)

    def __init__(self, d, heads, key):
        k = jax.random.split(key, 4)
        self.ln1, self.ln2 = eqx.nn.LayerNorm(d), eqx.nn.LayerNorm(d)
        self.qkv, self.proj = eqx.nn.Linear(d, 3 * d, key=k[0]), eqx.nn.Linear(d, d, key=k[1])
        self.fc1, self.fc2 = eqx.nn.Linear(d, 4 * d, key=k[2]), eqx.nn.Linear(4 * d, d, key=k[3])
        self.heads = heads

    def __call__(self, h):                       # one sequence, (T, d)
        a = jax.vmap(self.qkv)(jax.vmap(self.ln1)(h))
        h = h + jax.vmap(self.proj)(causal_attention(a, self.heads))
        a = gelu(jax.vmap(self.fc1)(jax.vmap(self.ln2)(h)))
        return h + jax.vmap(self.fc2)(a)


class GPT(eqx.Module):
    wte: eqx.nn.Embedding
    wpe: eqx.nn.Embedding
    blocks: list
    ln_f: eqx.nn.LayerNorm

    def __init__(self, c, key):
        ks = jax.random.split(key, c.layers + 2)
        self.wte = eqx.nn.Embedding(c.vocab, c.d, key=ks[0])
        self.wpe = eqx.nn.Embedding(c.seq, c.d, key=ks[1])
        self.blocks = [Block(c.d, c.heads, k) for k in ks[2:]]
        self.ln_f = eqx.nn.LayerNorm(c.d)

    def __call__(self, tok):                     # one sequence, (T,)
        h = self.wte.weight[tok] + self.wpe.weight[: tok.shape[0]]
        for blk in self.blocks:
            h = blk(h)
        return jax.vmap(self.ln_f)(h) @ self.wte.weight.T   # tied head


def _load(model, sd, pairs):
    """``pairs``: list of (torch key, getter) ; replaces each leaf by ``sd[key]``."""
    getters = [g for _, g in pairs]
    values = [jnp.asarray(sd[k]).reshape(g(model).shape) for k, g in pairs]
    return eqx.tree_at(lambda m: [g(m) for g in getters], model, values)


def _linear(prefix, get):
    return [(prefix + "weight", lambda m: get(m).weight), (prefix + "bias", lambda m: get(m).bias)]


def build(c, sd, data) -> Runner:
    x, y = jnp.asarray(data[0]), jnp.asarray(data[1])
    opt = make_optimizer(c.opt)
    key = jax.random.key(0)

    if c.kind in ("mlp", "gpt"):
        if c.kind == "mlp":
            ks = jax.random.split(key, c.depth)
            model = MLP([eqx.nn.Linear(a, b, key=k) for a, b, k in zip(c.sizes[:-1], c.sizes[1:], ks)])
            pairs = sum((_linear(f"{2 * i}.", lambda m, i=i: m.layers[i]) for i in range(c.depth)), [])
        else:
            model = GPT(c, key)
            pairs = [("wte.weight", lambda m: m.wte.weight), ("wpe.weight", lambda m: m.wpe.weight),
                     ("ln_f.weight", lambda m: m.ln_f.weight), ("ln_f.bias", lambda m: m.ln_f.bias)]
            for i in range(c.layers):
                for n in ("ln1", "ln2", "qkv", "proj", "fc1", "fc2"):
                    pairs += _linear(f"blocks.{i}.{n}.", lambda m, i=i, n=n: getattr(m.blocks[i], n))
        model = _load(model, sd, pairs)

        @eqx.filter_jit(donate="all-except-first")
        def train_step(data, model, opt_state):
            x, y = data
            loss, grads = eqx.filter_value_and_grad(lambda m: loss_fn(c.loss, jax.vmap(m)(x), y))(model)
            updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_array))
            return eqx.apply_updates(model, updates), opt_state, loss

        holder = [model, opt.init(eqx.filter(model, eqx.is_inexact_array))]

        def step():
            holder[0], holder[1], loss = train_step((x, y), *holder)
            return jax.block_until_ready(loss)

        return Runner(step, lambda: train_step.lower((x, y), *holder))

    if c.kind == "cnn":
        model, state = eqx.nn.make_with_state(CNN)(key)
        pairs = []
        for n in ("conv1", "conv2", "bn1", "bn2", "fc"):
            pairs += _linear(n + ".", lambda m, n=n: getattr(m, n))
        model = _load(model, sd, pairs)

        @eqx.filter_jit(donate="all-except-first")
        def train_step(data, model, state, opt_state, key):
            x, y = data
            key, sub = jax.random.split(key)
            keys = jax.random.split(sub, x.shape[0])

            def lf(m):
                batched = jax.vmap(m, axis_name="batch", in_axes=(0, None, 0), out_axes=(0, None))
                out, new_state = batched(x, state, keys)
                return loss_fn(c.loss, out, y), new_state

            (loss, state), grads = eqx.filter_value_and_grad(lf, has_aux=True)(model)
            updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_array))
            return eqx.apply_updates(model, updates), state, opt_state, key, loss

        holder = [model, state, opt.init(eqx.filter(model, eqx.is_inexact_array)), jax.random.key(1)]

        def step():
            *new, loss = train_step((x, y), *holder)
            holder[:] = new
            return jax.block_until_ready(loss)

        return Runner(step, lambda: train_step.lower((x, y), *holder))
    raise ValueError(c.kind)
