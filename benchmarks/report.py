"""Markdown tables, the PNG plot and the README update for ``benchmarks/run.py``."""
from __future__ import annotations

from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"
SHORT = {"jax": "pure JAX", "jax_scan": "pure JAX scan", "jparam": "jparam", "jparam_scan": "jparam scan",
         "equinox": "Equinox", "nnx": "NNX nnx.jit", "nnx_split": "NNX split/merge",
         "torch": "PyTorch eager", "jparam_bf16": "jparam bf16", "torch_bf16": "PyTorch bf16",
         "torch_compile": "torch.compile"}


def _fmt_t(s):
    return f"{s * 1e6:.0f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def _fmt_b(b):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(b) < 1024 or unit == "GiB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024


def _frameworks(results):
    seen = []
    for c in results["cases"].values():
        for fw in c["step"]:
            if fw not in seen:
                seen.append(fw)
    order = list(results["frameworks"])
    return sorted(seen, key=order.index)


def markdown(results, png_name=None) -> str:
    m = results["machine"]
    v = m["versions"]
    lines = [f"Machine: **{m['cpu']}**, {m['cores']} cores ({m['device']}), "
             f"load average {m['loadavg_at_start']:.1f} at start; "
             + ", ".join(f"{k} {v[k]}" for k in v) + f". Run {results['date']}, "
             f"`{results['command']}`, {results['rounds']} interleaved rounds, "
             f"{results['elapsed_s'] / 60:.1f} min.", ""]
    fws = _frameworks(results)
    lines += ["### Per-step time of the jitted train step (ratio to pure JAX, median of per-round ratios)",
              "", "| case | " + " | ".join(SHORT[f] for f in fws) + " |",
              "|---|" + "---:|" * len(fws)]
    for name, c in results["cases"].items():
        row = [f"`{name}`"]
        for fw in fws:
            e = c["step"].get(fw)
            if e is None:
                row.append("—")
            else:
                row.append(f"**{e.get('ratio', float('nan')):.2f}×** ({_fmt_t(e['median_s'])})")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Same, in process CPU time (all threads of the benchmark process; less disturbed "
              "by other load on a shared machine):", "",
              "| case | " + " | ".join(SHORT[f] for f in fws) + " |", "|---|" + "---:|" * len(fws)]
    for name, c in results["cases"].items():
        row = [f"`{name}`"] + [f"{c['step'][fw]['cpu_ratio']:.2f}× ({_fmt_t(c['step'][fw]['cpu_median_s'])})"
                               if fw in c["step"] and "cpu_ratio" in c["step"][fw] else "—" for fw in fws]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Cases: " + "; ".join(f"`{n}`: {c['title']}" for n, c in results["cases"].items()) + ".", ""]
    bad = [(n, fw, p) for n, c in results["cases"].items() if c["config"]["deterministic"]
           for fw, p in c["parity_rel"].items() if p > 1e-3]
    lines.append("Same math check: the first three losses of every framework agree with pure JAX to "
                 + ("within 1e-3 relative on every deterministic case (the CNN's dropout masks differ "
                    "by framework)." if not bad else
                    f"1e-3 relative except {bad}."))
    lines.append("")
    mem = {n: c["memory"] for n, c in results["cases"].items() if c.get("memory")}
    if mem:
        lines += ["### XLA memory analysis of the compiled step (donation)", "",
                  "`alias` = output bytes written in place into donated inputs (parameters, optimizer "
                  "state, buffers); `temp` = scratch.", "",
                  "| case | framework | argument | output | alias | temp |", "|---|---|---:|---:|---:|---:|"]
        for n, per in mem.items():
            for fw, a in per.items():
                lines.append(f"| `{n}` | {SHORT[fw]} | {_fmt_b(a['argument'])} | {_fmt_b(a['output'])} | "
                             f"{_fmt_b(a['alias'])} | {_fmt_b(a['temp'])} |")
        lines.append("")
    if results.get("first_step_from"):
        lines += [f"Time-to-first-step curves below are from the full run of {results['first_step_from']} "
                  "(`--reuse-first-step`).", ""]
    for name, curve in results.get("first_step", {}).items():
        depths = sorted({int(d) for per in curve.values() for d in per})
        lines += [f"### Time to first step (trace + compile + first run, fresh process): `{name}` by depth",
                  "", "| framework | " + " | ".join(str(d) for d in depths) + " |",
                  "|---|" + "---:|" * len(depths)]
        base = curve.get("jax", {})
        for fw, per in curve.items():
            cells = []
            for d in depths:
                e = per.get(str(d))
                if e is None:
                    cells.append("—")
                    continue
                cell = f"{e['median_s']:.2f} s"
                if fw != "jax" and str(d) in base:
                    cell += f" ({e['median_s'] / base[str(d)]['median_s']:.2f}×)"
                cells.append(cell)
            lines.append(f"| {SHORT[fw]} | " + " | ".join(cells) + " |")
        lines.append("")
    if png_name:
        lines += [f"![step-time ratio and compile time](results/{png_name})", ""]
    return "\n".join(lines)


def plot(results, path: Path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    curves = results.get("first_step", {})
    n = 1 + len(curves)
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 4.5))
    axes = list(axes) if n > 1 else [axes]
    ax = axes[0]
    fws = _frameworks(results)
    names = list(results["cases"])
    width = 0.8 / max(1, len(fws))
    for i, fw in enumerate(fws):
        vals = [results["cases"][c]["step"].get(fw, {}).get("ratio", float("nan")) for c in names]
        ax.bar([j + i * width for j in range(len(names))], vals, width, label=SHORT[fw])
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(1.1, color="r", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, rotation=20)
    ax.set_ylabel("step time / pure JAX (log)")
    ax.set_title("per-step time ratio (lower is better)")
    ax.legend(fontsize=7)
    for ax, (name, curve) in zip(axes[1:], curves.items()):
        for fw, per in curve.items():
            ds = sorted(int(d) for d in per)
            ax.plot(ds, [per[str(d)]["median_s"] for d in ds], "o-", label=SHORT[fw])
        ax.set_xlabel("depth (layers / blocks)")
        ax.set_ylabel("time to first step (s)")
        ax.set_title(f"trace + compile + first run: {name}")
        ax.legend(fontsize=7)
    m = results["machine"]
    fig.suptitle(f"{m['cpu']}, {m['cores']} cores, jax {m['versions']['jax']} ({results['mode']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def update_readme(path: Path, md: str) -> None:
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1] if END in rest else ""
    path.write_text(f"{head}{START}\n{md}\n{END}{tail}")
