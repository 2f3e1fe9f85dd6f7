"""Split one time-to-first-step point into trace+lower and XLA compile, in a fresh process:

    python benchmarks/aot_split.py FRAMEWORK CASE DEPTH [--optax-adam] [--count-calls]

Prints one JSON line (``lower_s``, ``compile_s``, StableHLO op count). ``--optax-adam`` (jparam
only) swaps ``optim.Adam`` for ``optim.Optimizer(params, optax.adam(...))`` to separate the
optimizer's compile cost from the model's. ``--count-calls`` also counts the Python function
calls made while lowering (cProfile; deterministic, unlike the timings, but it slows
``lower_s``). Run the frameworks alternately, several times.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv):
    import jax
    import jax.numpy as jnp

    from benchmarks import cases
    from benchmarks.frameworks import build

    fw, case_name, depth = argv[0], argv[1], int(argv[2])
    c = cases.case(case_name, depth)
    sd, data = cases.init_state(c), cases.make_data(c)
    if "--optax-adam" in argv:
        if fw != "jparam":
            raise SystemExit("--optax-adam applies to the jparam framework only")
        from benchmarks.frameworks import jparam_impl
        runner = jparam_impl.build(c, sd, data, optax_adam=True)
    else:
        runner = build(fw, c, sd, data)
    jax.jit(jax.value_and_grad(lambda a: jnp.sum(jnp.tanh(a) ** 2)))(jnp.ones(3))[0].block_until_ready()
    prof = None
    if "--count-calls" in argv:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    lowered = runner.lower()
    t1 = time.perf_counter()
    calls = None
    if prof is not None:
        import pstats
        prof.disable()
        calls = sum(v[1] for v in pstats.Stats(prof).stats.values())
    lowered.compile()
    t2 = time.perf_counter()
    ops = len(re.findall(r"^\s+%\S+ = ", lowered.as_text(), re.M))
    print(json.dumps({"framework": fw, "case": case_name, "depth": depth,
                      "optax_adam": "--optax-adam" in argv, "lower_s": round(t1 - t0, 3),
                      "compile_s": round(t2 - t1, 3), "stablehlo_ops": ops,
                      **({"python_calls": calls} if calls is not None else {})}))


if __name__ == "__main__":
    main(sys.argv[1:])
