"""Sharded train step: jparam (FSDP + tensor parallel from a plan) against the same GPT
hand-written in JAX + optax with the same PartitionSpecs, timed interleaved in one process.

Run:  python benchmarks/sharded.py [--quick] [--rounds 15] [--fsdp 2 --tp 4]

Without an accelerator it asks XLA for 8 simulated CPU devices (set before JAX is imported).
Both steps get the same parameters, shardings, batch and donation; the figure is the median
over rounds of the per-round ratio jparam / hand-written JAX (wall and process CPU time), and
the compiled HLO's collectives of both are printed (they must be equal).
"""
from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jparam  # noqa: E402
import jparam.distributed as dist  # noqa: E402
import jparam.nn.functional as F  # noqa: E402
from jparam import optim  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))
import gpt_fsdp_tp as ex  # noqa: E402  (the GPT, its TP plan and its train step)


def hand_forward(p: dict, idx, n_layer: int, n_head: int):
    """examples/gpt_fsdp_tp.GPT's math as a function of a dict of arrays (state_dict names;
    jparam.nn.functional's ops, so a comparison isolates what Module / Optimizer add)."""
    B, T = idx.shape
    x = F.embedding(idx, p["tok_emb.weight"]) + F.embedding(jnp.arange(T), p["pos_emb.weight"])
    C = x.shape[-1]
    for i in range(n_layer):
        def g(n):
            return p[f"blocks.{i}.{n}"]
        h = F.linear(F.layer_norm(x, (C,), g("ln1.weight"), g("ln1.bias")), g("qkv.weight"), g("qkv.bias"))
        q, k, v = (t.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3) for t in jnp.split(h, 3, -1))
        att = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / np.sqrt(C // n_head))
        att = jnp.where(jnp.tril(jnp.ones((T, T), bool)), att, -jnp.inf)
        a = (jax.nn.softmax(att, -1) @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        x = x + F.linear(a, g("proj.weight"), g("proj.bias"))
        h = F.gelu(F.linear(F.layer_norm(x, (C,), g("ln2.weight"), g("ln2.bias")), g("fc.weight"), g("fc.bias")))
        x = x + F.linear(h, g("out.weight"), g("out.bias"))
    return F.linear(F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"]), p["tok_emb.weight"])


def hand_step(tx, n_layer: int, n_head: int):
    """The hand-written train step ``(params, opt_state, x, y) -> (loss, params, opt_state)``."""
    def step(p, s, x, y):
        def lf(p):
            logits = hand_forward(p, x, n_layer, n_head)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss, g = jax.value_and_grad(lf)(p)
        u, s = tx.update(g, s, p)
        return loss, optax.apply_updates(p, u), s
    return step


def hand_jit(model, tx, mesh, x, y, n_layer: int, n_head: int):
    """``(jitted step, params, opt_state)`` for the placed jparam ``model``'s arrays and specs."""
    params = {k: v for k, v in model.state_dict().items() if k != "head.weight"}  # tied: one leaf
    psh = {k: v.sharding for k, v in params.items()}
    ostate = tx.init(params)
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    osh = jax.tree_util.tree_map(lambda a: a.sharding if a.ndim else rep, ostate)
    ostate = jax.device_put(ostate, osh)
    step = jax.jit(hand_step(tx, n_layer, n_head), in_shardings=(psh, osh, x.sharding, y.sharding),
                   out_shardings=(None, psh, osh), donate_argnums=(0, 1))
    return step, params, ostate


def jparam_jit(model, opt, x, y):
    sm, so = dist.shardings(model), dist.shardings(opt)
    return jax.jit(ex.train_step, in_shardings=(sm, so, x.sharding, y.sharding),
                   out_shardings=(None, sm, so), donate_argnums=(0, 1))


def collectives(compiled_text: str) -> dict:
    """Count of each collective op in a compiled HLO module's text."""
    return {k: len(re.findall(r"\s%s(-start)?\(" % k, compiled_text))
            for k in ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller model, 7 rounds")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--round-s", type=float, default=0.3)
    ap.add_argument("--fsdp", type=int, default=2)
    ap.add_argument("--tp", type=int, default=4)
    args = ap.parse_args(argv)
    cfg = dict(block_size=32, d_model=64, n_head=4, n_layer=2) if args.quick else \
        dict(block_size=64, d_model=128, n_head=4, n_layer=4)
    vocab, batch = 256, 16
    rounds = 7 if args.quick else args.rounds
    mesh = dist.init_device_mesh(jax.devices()[0].platform, (args.fsdp, args.tp),
                                 mesh_dim_names=("fsdp", "tp"))
    jparam.manual_seed(0)
    model = ex.build(mesh, vocab, min_size=1024, **cfg)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    opt = jax.device_put(opt, dist.shardings(opt))
    r = np.random.default_rng(0)
    x, y = dist.shard_batch((r.integers(0, vocab, (batch, cfg["block_size"])).astype(np.int32),
                             r.integers(0, vocab, (batch, cfg["block_size"])).astype(np.int32)), mesh, "fsdp")
    hstep, params, ostate = hand_jit(model, optax.adam(1e-3), mesh, x, y, cfg["n_layer"], cfg["n_head"])
    params = jax.tree_util.tree_map(jnp.copy, params)  # its own buffers: both steps donate
    jstep = jparam_jit(model, opt, x, y)
    c_j = collectives(jstep.lower(model, opt, x, y).compile().as_text())
    c_h = collectives(hstep.lower(params, ostate, x, y).compile().as_text())
    print(f"{jax.device_count()} {jax.devices()[0].platform} devices, mesh {dict(mesh.shape)}, GPT {cfg}")
    print(f"collectives jparam {c_j}\ncollectives JAX    {c_h}\nequal: {c_j == c_h}")

    state = {"jparam": (model, opt), "jax": (params, ostate)}
    steps = {"jparam": jstep, "jax": hstep}
    losses = {}
    for name in steps:  # compile + first losses
        a, b = state[name]
        loss, a, b = steps[name](a, b, x, y)
        losses[name] = float(loss)
        state[name] = (a, b)
    print(f"first loss jparam {losses['jparam']:.6f}  JAX {losses['jax']:.6f}")

    def timed(name, seconds):
        a, b = state[name]
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            loss, a, b = steps[name](a, b, x, y)
            loss.block_until_ready()
            n += 1
        state[name] = (a, b)
        return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n

    timed("jparam", 0.2), timed("jax", 0.2)
    wall, cpu = [], []
    per = {"jparam": [], "jax": []}
    for _ in range(rounds):
        order = list(steps)
        random.shuffle(order)
        got = {name: timed(name, args.round_s) for name in order}
        wall.append(got["jparam"][0] / got["jax"][0])
        cpu.append(got["jparam"][1] / got["jax"][1])
        for name in got:
            per[name].append(got[name][0])
    print(f"step time jparam {np.median(per['jparam']) * 1e3:.2f} ms, JAX {np.median(per['jax']) * 1e3:.2f} ms "
          f"(medians over {rounds} rounds)")
    print(f"ratio jparam / JAX: wall {np.median(wall):.3f} (rounds {min(wall):.3f}-{max(wall):.3f}), "
          f"CPU {np.median(cpu):.3f}")


if __name__ == "__main__":
    main()
