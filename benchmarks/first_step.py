"""Time to first step in a fresh process: ``python benchmarks/first_step.py FRAMEWORK CASE DEPTH``.

Prints one JSON line: ``first_step_s`` (trace + compile + first run of the train step, timed
after the model and data exist and the backend is warm) and ``second_step_s``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv):
    framework, case_name, depth = argv[0], argv[1], int(argv[2])
    overrides = json.loads(argv[3]) if len(argv) > 3 else {}
    import dataclasses

    from benchmarks import cases
    from benchmarks.frameworks import build

    c = dataclasses.replace(cases.case(case_name, depth), **overrides)
    sd, data = cases.init_state(c), cases.make_data(c)
    t = time.perf_counter()
    runner = build(framework, c, sd, data)
    build_s = time.perf_counter() - t
    import jax
    import jax.numpy as jnp
    # One-time process costs (backend, MLIR context, first compile) are not the model's.
    jax.jit(jax.value_and_grad(lambda a: jnp.sum(jnp.tanh(a) ** 2)))(jnp.ones(3))[0].block_until_ready()
    t = time.perf_counter()
    runner.step()
    first = time.perf_counter() - t
    t = time.perf_counter()
    runner.step()
    second = time.perf_counter() - t
    print(json.dumps({"framework": framework, "case": case_name, "depth": depth,
                      "build_s": build_s, "first_step_s": first, "second_step_s": second}))


if __name__ == "__main__":
    main(sys.argv[1:])
