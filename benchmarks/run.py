"""jparam benchmarks: ``python benchmarks/run.py [--quick] [--cases ...] [--frameworks ...]``.

1. Per-step time of the jitted train step, every framework interleaved in one process
   (in a shuffled order each round, ``--rounds`` rounds, each round times enough steps for ~``--round-s``);
   reported as the median over rounds of the per-round ratio to pure JAX.
2. XLA's compiled memory analysis of each jitted step (argument / output / alias / temp bytes):
   ``alias`` = bytes updated in place thanks to donation.
3. Time to first step (trace + compile + first run) in a fresh subprocess per framework and
   depth, for the narrow MLP (and the decoder stack).

Writes ``benchmarks/results/<machine>[-quick].json`` and ``.png``; a full run also rewrites the
results section of ``benchmarks/README.md``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import cases as cases_mod  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.frameworks import FRAMEWORKS, build  # noqa: E402

DEFAULT_FRAMEWORKS = ["jax", "jparam", "equinox", "nnx", "nnx_split", "torch"]
# (case, frameworks, depths) of the time-to-first-step curves.
# (case, [(framework, depths)]) of the time-to-first-step curves. PyTorch eager has no compile.
FIRST_STEP_CURVES = {
    "mlp_deep": [(fw, [2, 8, 32, 64]) for fw in ("jax", "jparam", "equinox", "nnx", "nnx_split")],
    "gpt": [("jax", [2, 4, 8]), ("jparam", [2, 4, 8]), ("jax_scan", [2, 8, 48]), ("jparam_scan", [2, 8, 48])],
}
SCAN_VARIANTS = {"jax_scan": "jax", "jparam_scan": "jparam"}   # GPT only


def machine_info() -> dict:
    import jax

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    dev = jax.devices()[0]
    slug = re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-") + f"-{cores}c"
    if dev.platform != "cpu":
        slug = re.sub(r"[^a-z0-9]+", "-", dev.device_kind.lower()).strip("-")
    versions = {"python": platform.python_version(), "jax": jax.__version__}
    for mod in ("jaxlib", "optax", "equinox", "flax", "torch"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            pass
    try:
        import jparam
        versions["jparam"] = getattr(jparam, "__version__", "dev")
    except Exception:  # noqa: BLE001
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"slug": slug, "cpu": cpu, "cores": cores, "device": str(dev),
            "loadavg_at_start": load, "versions": versions}


def _time_steps(runner, n):
    """(wall, process CPU) seconds per step; CPU time (all threads of this process) is less
    disturbed by other processes on a shared machine."""
    t, p = time.perf_counter(), time.process_time()
    for _ in range(n):
        runner.step()
    return (time.perf_counter() - t) / n, (time.process_time() - p) / n


def bench_case(c, frameworks, rounds, round_s, log) -> dict:
    sd, data = cases_mod.init_state(c), cases_mod.make_data(c)
    runners, losses, errors, n_steps = {}, {}, {}, {}
    for fw in frameworks:
        try:
            r = build(fw, c, sd, data)
            losses[fw] = [float(r.step()) for _ in range(3)]      # compile + warm-up
            per = min(_time_steps(r, 1)[0] for _ in range(3))
            n_steps[fw] = max(1, min(2000, int(round_s / max(per, 1e-6))))
            runners[fw] = r
        except Exception as e:  # noqa: BLE001
            errors[fw] = f"{type(e).__name__}: {e}"[:300]
            log(f"  {fw}: skipped ({errors[fw]})")
    times = {fw: [] for fw in runners}
    cpu = {fw: [] for fw in runners}
    # PyTorch's OpenMP threads keep spinning after its step returns and steal the CPU from
    # whatever runs next, so it is timed in its own rounds after the JAX frameworks (ratio
    # against pure JAX's median); the JAX frameworks run in a fresh random order each round.
    order = [fw for fw in runners if not fw.startswith("torch")]
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for fw in order:
            w, p = _time_steps(runners[fw], n_steps[fw])
            times[fw].append(w)
            cpu[fw].append(p)
    for fw in (f for f in runners if f.startswith("torch")):
        for _ in range(max(3, rounds // 3)):
            w, p = _time_steps(runners[fw], n_steps[fw])
            times[fw].append(w)
            cpu[fw].append(p)
    out = {}
    for fw, ts in times.items():
        entry = {"median_s": statistics.median(ts), "times_s": ts,
                 "cpu_median_s": statistics.median(cpu[fw]), "cpu_s": cpu[fw],
                 "steps_per_round": n_steps[fw]}
        if "jax" in times and fw.startswith("torch"):
            entry["ratio"] = entry["median_s"] / statistics.median(times["jax"])
            entry["cpu_ratio"] = entry["cpu_median_s"] / statistics.median(cpu["jax"])
        elif "jax" in times:
            ratios = [t / b for t, b in zip(ts, times["jax"])]
            entry["ratio"] = statistics.median(ratios)
            entry["ratios"] = ratios
            entry["cpu_ratio"] = statistics.median([t / b for t, b in zip(cpu[fw], cpu["jax"])])
        out[fw] = entry
    parity = {}
    if "jax" in losses:
        for fw, ls in losses.items():
            parity[fw] = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(ls, losses["jax"]))
    return {"runners": runners, "step": out, "losses": losses, "parity_rel": parity,
            "errors": errors}


def memory_analysis(runners, log) -> dict:
    out = {}
    for fw, r in runners.items():
        if r.lower is None:
            continue
        try:
            compiled = r.lower().compile()
            compiled = getattr(compiled, "compiled", compiled)     # equinox wraps jax's Compiled
            m = compiled.memory_analysis()
            out[fw] = {k: int(getattr(m, k + "_size_in_bytes")) for k in
                       ("argument", "output", "alias", "temp", "generated_code")}
        except Exception as e:  # noqa: BLE001
            log(f"  memory analysis {fw}: {type(e).__name__}: {str(e)[:200]}")
    return out


def first_step_curve(case_name, plan, repeats, log) -> dict:
    """Median over ``repeats`` fresh processes per (framework, depth). The repeats are
    interleaved (every point once, then every point again), so a burst of load on the shared
    machine lands on one sample of many points rather than on all samples of one."""
    runs: dict = {}
    failed: set = set()
    for rep in range(repeats):
        for fw, depths in plan:
            for d in depths:
                if (fw, d) in failed:
                    continue
                p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "first_step.py"),
                                    fw, case_name, str(d)], capture_output=True, text=True,
                                   cwd=ROOT, timeout=900)
                lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
                if p.returncode != 0 or not lines:
                    err = (p.stderr.strip().splitlines() or ["?"])[-1][:200]
                    log(f"  {fw} depth {d}: failed ({err})")
                    failed.add((fw, d))
                    continue
                runs.setdefault(fw, {}).setdefault(str(d), []).append(
                    json.loads(lines[-1])["first_step_s"])
                log(f"  {case_name} {fw:12s} depth {d:3d} run {rep + 1}/{repeats}: "
                    f"{runs[fw][str(d)][-1]:.2f} s")
    return {fw: {d: {"median_s": statistics.median(v), "runs_s": v} for d, v in res.items()}
            for fw, res in runs.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds and repeats (~3 min)")
    ap.add_argument("--cases", nargs="*", default=list(cases_mod.CASES),
                    help=f"of {list(cases_mod.CASES)}; GPU-sized: {list(cases_mod.GPU_CASES)}")
    ap.add_argument("--frameworks", nargs="*", default=DEFAULT_FRAMEWORKS)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--round-s", type=float, default=None, help="seconds per framework per round")
    ap.add_argument("--no-first-step", action="store_true")
    ap.add_argument("--reuse-first-step", action="store_true",
                    help="take the time-to-first-step curves from this machine's last results file")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--readme", action="store_true", help="update README.md even with --quick")
    ap.add_argument("--no-readme", action="store_true", help="never update README.md")
    ap.add_argument("--out", default=None, help="results path stem (default results/<machine>[-quick])")
    args = ap.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 15)
    round_s = args.round_s or (0.05 if args.quick else 0.1)
    repeats = 1 if args.quick else 3

    def log(msg):
        print(msg, flush=True)

    t_start = time.time()
    info = machine_info()
    log(f"machine: {info['cpu']}, {info['cores']} cores, jax {info['versions']['jax']}, "
        f"load {info['loadavg_at_start']}")
    results = {"machine": info, "mode": "quick" if args.quick else "full",
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "command": " ".join(["python benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
               "frameworks": {k: v[1] for k, v in FRAMEWORKS.items()},
               "rounds": rounds, "round_s": round_s, "cases": {}, "first_step": {}}
    for name in args.cases:
        c = cases_mod.case(name)
        log(f"[{name}] {c.title}")
        fws = [f for f in args.frameworks if f not in SCAN_VARIANTS or c.kind == "gpt"]
        if c.kind == "gpt":
            for scan, base in SCAN_VARIANTS.items():
                if base in fws and scan not in fws:
                    fws.insert(fws.index(base) + 1, scan)
        res = bench_case(c, fws, rounds, round_s, log)
        for fw, e in res["step"].items():
            log(f"  {fw:12s} {e['median_s'] * 1e3:9.3f} ms  x{e.get('ratio', float('nan')):6.2f}"
                f"  (cpu x{e.get('cpu_ratio', float('nan')):6.2f})"
                f"  loss parity {res['parity_rel'].get(fw, float('nan')):.1e}")
        mem = {} if args.no_memory else memory_analysis(res["runners"], log)   # hits jit's cache
        results["cases"][name] = {"title": c.title, "config": cases_mod.describe(c),
                                  "step": res["step"], "losses": res["losses"],
                                  "parity_rel": res["parity_rel"], "errors": res["errors"],
                                  "memory": mem}
        del res
    prev = ROOT / "benchmarks" / "results" / (info["slug"] + ("-quick" if args.quick else "") + ".json")
    if args.reuse_first_step and prev.exists():
        old = json.loads(prev.read_text())
        results["first_step"] = old.get("first_step", {})
        results["first_step_from"] = old.get("date")
    elif not args.no_first_step:
        for name, plan in FIRST_STEP_CURVES.items():
            if name not in args.cases:
                continue
            plan = [(fw, ds[:1] + ds[-1:] if args.quick else ds) for fw, ds in plan
                    if fw in args.frameworks or SCAN_VARIANTS.get(fw) in args.frameworks]
            log(f"[first step] {name}: {plan}")
            results["first_step"][name] = first_step_curve(name, plan, repeats, log)
    results["elapsed_s"] = time.time() - t_start
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = info["slug"] + ("-quick" if args.quick else "")
    if args.out:
        out_dir, stem = Path(args.out).resolve().parent, Path(args.out).name
        out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=1))
    png = report.plot(results, out_dir / f"{stem}.png")
    md = report.markdown(results, png.name if png else None)
    print(md)
    if (not args.quick or args.readme) and not args.no_readme:
        report.update_readme(ROOT / "benchmarks" / "README.md", md)
    log(f"done in {results['elapsed_s']:.0f} s -> {out_dir / stem}.json")


if __name__ == "__main__":
    main()
