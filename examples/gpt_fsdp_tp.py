"""Train a small GPT with FSDP + tensor parallelism on a 2-D device mesh.

Run:  python examples/gpt_fsdp_tp.py [--steps 200] [--fsdp 2] [--tp 4]

Without an accelerator the script asks XLA for 8 simulated CPU devices (set before JAX is
imported), so it runs on a laptop; on a multi-GPU host the same script uses the GPUs (the
flag only concerns the CPU platform). The steps are the ones of ``docs/sharding.md``:

1. ``jax.eval_shape`` builds the model abstractly (torch's meta device): nothing allocated.
2. ``parallelize_module`` shards attention and MLP weights Megatron-style over ``tp``
   (``ColwiseParallel`` then ``RowwiseParallel``); ``fully_shard`` shards every large
   parameter over ``fsdp``. The tied embedding / head weight is one leaf: the rule on
   ``head.weight`` shards it.
3. ``materialize`` initialises the model on the devices, each computing only its shards.
4. The optimizer, built after placement, keeps its state next to each shard; the step is
   jitted once with ``in_shardings``/``out_shardings`` from ``jparam.distributed.shardings``
   and donates the model and optimizer.
"""
from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jparam  # noqa: E402
import jparam.distributed as dist  # noqa: E402
import jparam.nn.functional as F  # noqa: E402
from jparam import nn, optim  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _text  # noqa: E402  (examples/_text.py: corpus, CharVocab, batches)


class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.out = nn.Linear(4 * d_model, d_model)

    def forward(self, x):
        B, T, C = x.shape
        H = self.n_head
        q, k, v = (t.reshape(B, T, H, C // H).transpose(0, 2, 1, 3)
                   for t in jnp.split(self.qkv(self.ln1(x)), 3, axis=-1))
        att = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / np.sqrt(C // H))
        att = jnp.where(jnp.tril(jnp.ones((T, T), bool)), att, -jnp.inf)
        a = (jax.nn.softmax(att, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        x = x + self.proj(a)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int = 32, d_model: int = 64, n_head: int = 4,
                 n_layer: int = 2):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(block_size, d_model)
        self.blocks = nn.ModuleList([Block(d_model, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied, as GPT-2

    def forward(self, idx):
        x = self.tok_emb(idx) + self.pos_emb(jnp.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


# Megatron-style tensor parallelism: column-parallel in, row-parallel out, so each block
# needs one all-reduce per matmul pair; the tied head/embedding is sharded over its vocab.
TP_PLAN = {
    "blocks.*.qkv": dist.ColwiseParallel(),
    "blocks.*.proj": dist.RowwiseParallel(),
    "blocks.*.fc": dist.ColwiseParallel(),
    "blocks.*.out": dist.RowwiseParallel(),
    "head.weight": P("tp", None),
}


def loss_fn(model, x, y):
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def train_step(model, opt, x, y):
    loss, model = jparam.backward(loss_fn, model, x, y)
    model, opt = opt.step(model)
    return loss, model, opt


def build(mesh, vocab_size: int, min_size: int = 1024, **cfg):
    """The sharded GPT: abstract build, TP plan, FSDP, then materialised in its shards."""
    abstract = jax.eval_shape(lambda: GPT(vocab_size, **cfg))
    dist.parallelize_module(abstract, mesh, TP_PLAN)
    dist.fully_shard(abstract, mesh, axis="fsdp", min_size=min_size)
    return dist.materialize(lambda: GPT(vocab_size, **cfg), abstract)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--fsdp", type=int, default=2)
    ap.add_argument("--tp", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--block", type=int, default=32)
    args = ap.parse_args(argv)

    platform = jax.devices()[0].platform
    mesh = dist.init_device_mesh(platform, (args.fsdp, args.tp), mesh_dim_names=("fsdp", "tp"))
    print(f"{jax.device_count()} {platform} devices, mesh {dict(mesh.shape)}")

    text = _text.corpus("zen")
    vocab = _text.CharVocab(text)
    data = vocab.encode(text)
    vocab_size = -(-len(vocab) // 64) * 64  # padded, as GPT-2, so the vocab splits over tp
    jparam.manual_seed(0)
    model = build(mesh, vocab_size, block_size=args.block)
    for name in ("tok_emb.weight", "blocks.0.qkv.weight", "blocks.0.out.weight", "ln_f.weight"):
        print(f"  {name:22s} {str(model.get_parameter(name).shape):10s} "
              f"{model.get_parameter(name).sharding.spec}")
    opt = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    opt = jax.device_put(opt, dist.shardings(opt))  # scalars (lr, step counts) replicated on the mesh

    batches = _text.batches(data, args.block, args.batch)
    x, y = dist.shard_batch(next(batches), mesh, "fsdp")
    step = jax.jit(train_step,
                   in_shardings=(dist.shardings(model), dist.shardings(opt), x.sharding, y.sharding),
                   out_shardings=(None, dist.shardings(model), dist.shardings(opt)),
                   donate_argnums=(0, 1))
    t0 = time.perf_counter()
    for i in range(args.steps):
        loss, model, opt = step(model, opt, x, y)
        if i % max(1, args.steps // 10) == 0 or i == args.steps - 1:
            print(f"step {i:4d}  loss {float(loss):.4f}  {time.perf_counter() - t0:6.1f}s", flush=True)
        x, y = dist.shard_batch(next(batches), mesh, "fsdp")
    assert model.head.weight is model.tok_emb.weight, "tied weight came apart"
    print(f"compiled {step._cache_size()} time(s); head still tied; "
          f"tok_emb sharded {model.tok_emb.weight.sharding.spec}")


if __name__ == "__main__":
    main()
