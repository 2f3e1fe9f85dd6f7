"""The GPT case converted by ``jparam.from_torch`` (torch.export path) against the hand port
and pure JAX: the same jitted Adam step, interleaved rounds in one process.

    python benchmarks/from_torch_ab.py                 # gpt, 4 blocks, 21 rounds of 5 steps
    python benchmarks/from_torch_ab.py --depth 2 --rounds 5 --steps 10

The torch model is ``benchmarks/frameworks/torch_impl.GPT`` (custom ``Block`` class, so
``from_torch`` exports it), loaded with the case's initial state dict; the hand port is
``jparam_impl``'s GPT and pure JAX is ``pure_jax``'s, from the same weights and batch. The
first-step losses are printed to show the three compute the same thing. Each round times
``--steps`` steps of one runner by the process's CPU time (``time.process_time``: all threads,
so a busy machine's other processes do not count) and by wall time; the order rotates every
round. Per-step medians over the rounds and their ratios follow, by CPU time and by wall time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import jparam  # noqa: E402
from jparam import optim  # noqa: E402
import jparam.nn.functional as F  # noqa: E402
from benchmarks.cases import case, init_state, make_data  # noqa: E402
from benchmarks.frameworks import build, jit_runner  # noqa: E402


def _from_torch_runner(c, sd, data):
    import torch

    from benchmarks.frameworks.torch_impl import make_model

    tm = make_model(c)
    tm.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()})
    tm.train()
    model = jparam.from_torch(tm, example_args=(torch.from_numpy(data[0]).long(),))
    opt = optim.Adam(model.parameters(), lr=1e-3, eps=1e-8)
    x, y = jnp.asarray(data[0]), jnp.asarray(data[1])

    def loss_fn(m, x, y):
        out = m(x)
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    def train_step(model, opt, x, y):
        model = model.zero_grad()
        loss, model = jparam.backward(loss_fn, model, x, y)
        model, opt = opt.step(model)
        return model, opt, loss

    return jit_runner(train_step, (model, opt), (x, y))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args(argv)
    c = case("gpt", a.depth)
    sd, data = init_state(c), make_data(c)
    runners = {"jax": build("jax", c, sd, data), "jparam": build("jparam", c, sd, data),
               "from_torch": _from_torch_runner(c, sd, data)}
    for name, r in runners.items():
        print(f"{name:>10}: first-step loss {float(r.step()):.6f}")
        for _ in range(3):
            r.step()
    cpu: dict[str, list] = {k: [] for k in runners}
    wall: dict[str, list] = {k: [] for k in runners}
    names = list(runners)
    for i in range(a.rounds):
        for name in names[i % 3:] + names[:i % 3]:          # rotate the order every round
            r = runners[name]
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(a.steps):
                r.step()
            cpu[name].append((time.process_time() - c0) / a.steps)
            wall[name].append((time.perf_counter() - t0) / a.steps)
    print(f"gpt depth {a.depth}, {a.rounds} rounds x {a.steps} steps, {jax.devices()[0].platform}")
    for clock, times in (("CPU time", cpu), ("wall time", wall)):
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"median per step, {clock}:")
        for k in names:
            print(f"{k:>10}: {med[k] * 1e3:8.2f} ms/step   {med[k] / med['jparam']:.3f}x hand port   "
                  f"{med[k] / med['jax']:.3f}x pure JAX")


if __name__ == "__main__":
    main()
