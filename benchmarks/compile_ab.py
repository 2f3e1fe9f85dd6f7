"""XLA compile time of each framework's train step, compared in one process:

    python benchmarks/compile_ab.py CASE DEPTH FRAMEWORKS [REPEATS]
    python benchmarks/compile_ab.py gpt 2 jax,jparam,equinox 11

Each framework's step is lowered once; the StableHLO modules are then compiled by XLA again
and again, alternating frameworks (order reversed every other round). Time is the process
CPU time of each compile (XLA compiles on several threads; CPU time is steadier than wall
time on a shared machine). Prints, per framework, the median compile time, the median of
the per-round ratios to the first framework with its interquartile range, and the number
of fusions (kernels) in the optimized HLO.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv):
    import jax
    import numpy as np
    from jax._src import compiler
    from jax._src.interpreters import mlir
    from jax._src.lib import xla_client as xc
    from jax._src.lib.mlir import ir

    from benchmarks import cases
    from benchmarks.frameworks import build

    case_name, depth, fws = argv[0], int(argv[1]), argv[2].split(",")
    repeats = int(argv[3]) if len(argv) > 3 else 7
    c = cases.case(case_name, depth)
    sd, data = cases.init_state(c), cases.make_data(c)
    texts = {fw: build(fw, c, sd, data).lower().as_text() for fw in fws}
    client = jax.devices()[0].client
    devices = xc.DeviceList(tuple(jax.devices()[:1]))
    options = compiler.get_compile_options(1, 1)

    def compile_once(fw):
        with mlir.make_ir_context():
            module = ir.Module.parse(texts[fw])
            t = time.process_time()
            exe = compiler.backend_compile_and_load(client, module, devices, options, [])
            return time.process_time() - t, exe

    fusions = {}
    for fw in fws:  # warm-up compile, and the kernel count
        _, exe = compile_once(fw)
        entry = exe.hlo_modules()[0].to_string().split("ENTRY", 1)[1]
        fusions[fw] = len(re.findall(r" fusion\(", entry))
    times = {fw: [] for fw in fws}
    for r in range(repeats):
        for fw in fws if r % 2 == 0 else fws[::-1]:
            times[fw].append(compile_once(fw)[0])
    base = np.array(times[fws[0]])
    for fw in fws:
        t = np.array(times[fw])
        q1, med, q3 = np.percentile(t / base, [25, 50, 75])
        print(f"{case_name} depth {depth} {fw:10s} compile {np.median(t):.2f} s CPU  "
              f"ratio {med:.3f} (IQR {q1:.3f}-{q3:.3f})  fusions {fusions[fw]}")


if __name__ == "__main__":
    main(sys.argv[1:])
