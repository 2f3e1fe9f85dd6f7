"""jparam.save / jparam.load against the safetensors package, in one process.

jparam reads and writes the safetensors format itself (issue 13); this measures the cost
against ``safetensors.numpy.save_file`` / ``load_file`` (the baseline) on the same arrays,
best of ``--repeat`` runs, and prints the ratios (jparam time / baseline time).

    python -m benchmarks.checkpoint_io [--quick] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="64 MB instead of 512 MB")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import jax.numpy as jnp
    from safetensors.numpy import load_file, save_file

    import jparam

    total = (64 if args.quick else 512) * 2**20
    n = 64
    rng = np.random.default_rng(0)
    arrays = {f"layer{i}.weight": rng.standard_normal(total // 4 // n).astype(np.float32)
              for i in range(n)}
    d = tempfile.mkdtemp()
    a, b = os.path.join(d, "jparam.safetensors"), os.path.join(d, "st.safetensors")
    rows = [
        ("save", _best(lambda: jparam.save(arrays, a), args.repeat),
         _best(lambda: save_file(arrays, b), args.repeat)),
        ("load (as_numpy)", _best(lambda: jparam.load(a, as_numpy=True), args.repeat),
         _best(lambda: load_file(b), args.repeat)),
        ("load (jax arrays)", _best(lambda: jparam.load(a), args.repeat),
         _best(lambda: {k: jnp.asarray(v) for k, v in load_file(b).items()}, args.repeat)),
    ]
    print(f"{total / 2**20:.0f} MB in {n} float32 tensors, best of {args.repeat}")
    for name, ours, base in rows:
        print(f"{name:18s} jparam {ours * 1e3:8.1f} ms   safetensors {base * 1e3:8.1f} ms   "
              f"ratio {ours / base:.2f}x")
    for p in (a, b):
        os.unlink(p)
    os.rmdir(d)


if __name__ == "__main__":
    main()
