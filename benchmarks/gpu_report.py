"""Collect what ``benchmarks/gpu_check.sh`` left in its work folder into
``benchmarks/results/<gpu>.json`` and ``benchmarks/results/<gpu>.md``, and check the GPU goals.

Always writes the JSON: a missing stage is recorded as missing, never as a failure of this
script. ``python benchmarks/gpu_report.py --work <dir> [--dry-run 1]``.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FWS = ["jax", "jparam", "jparam_bf16", "torch", "torch_bf16", "torch_compile"]
NAMES = {"jax": "pure JAX", "jparam": "jparam", "jparam_bf16": "jparam bf16",
         "torch": "torch eager", "torch_bf16": "torch eager bf16", "torch_compile": "torch.compile"}


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def stages(work: Path) -> dict:
    out = {}
    for line in _read(work / "stages.tsv").splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            rc = parts[1]
            out[parts[0]] = {"rc": int(rc) if rc.lstrip("-").isdigit() else rc,
                             "seconds": int(parts[2]), "timed_out": rc in ("124", "137"),
                             "log_tail": _read(work / f"{parts[0]}.log").splitlines()[-15:]}
    return out


def probe(work: Path) -> dict:
    for line in _read(work / "probe.log").splitlines():
        if line.startswith("PROBE "):
            return json.loads(line[6:])
    return {}


def tests(work: Path) -> dict:
    """From the JUnit XML when pytest finished, else from the ``-v`` lines it printed."""
    res: dict = {"source": None, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": []}
    junit = work / "junit.xml"
    if junit.exists():
        try:
            root = ET.parse(junit).getroot()
            res["source"] = "junit"
            for tc in root.iter("testcase"):
                name = f"{tc.get('classname')}::{tc.get('name')}"
                if tc.find("failure") is not None:
                    res["failed"] += 1
                    res["failures"].append(name)
                elif tc.find("error") is not None:
                    res["errors"] += 1
                    res["failures"].append(name)
                elif tc.find("skipped") is not None:
                    res["skipped"] += 1
                else:
                    res["passed"] += 1
            return res
        except ET.ParseError:
            pass
    log = _read(work / "tests.log")
    if log:
        res["source"] = "log (pytest did not finish)"
        for m in re.finditer(r"(PASSED|FAILED|ERROR|SKIPPED) (tests/\S+)", log):
            key = {"PASSED": "passed", "FAILED": "failed", "ERROR": "errors", "SKIPPED": "skipped"}[m.group(1)]
            res[key] += 1
            if key in ("failed", "errors"):
                res["failures"].append(m.group(2))
    return res


def bench(work: Path) -> dict:
    """``{case: {framework: {median_s, cpu_median_s, loss}}}`` merged over the bench runs."""
    cases: dict = {}
    for f in sorted(glob.glob(str(work / "bench-*.json"))):
        try:
            r = json.loads(Path(f).read_text())
        except (OSError, ValueError):
            continue
        for name, c in r.get("cases", {}).items():
            dst = cases.setdefault(name, {"title": c.get("title"), "frameworks": {}, "errors": {}})
            for fw, e in c.get("step", {}).items():
                dst["frameworks"][fw] = {"median_s": e["median_s"], "times_s": e["times_s"],
                                         "loss": (c.get("losses", {}).get(fw) or [None])[0]}
            dst["errors"].update(c.get("errors", {}))
    return cases


def _t(cases, case, fw):
    return cases.get(case, {}).get("frameworks", {}).get(fw, {}).get("median_s")


def goals(cases: dict) -> list:
    """The issue's GPU goals, each ``{goal, value, met}`` (``met`` None when not measured)."""
    out = []

    def add(goal, num, den, ok):
        v = None if num is None or den is None else num / den
        out.append({"goal": goal, "value": None if v is None else round(v, 3),
                    "met": None if v is None else bool(ok(v))})

    for case in cases:
        add(f"{case}: jparam <= 1.05x pure JAX", _t(cases, case, "jparam"), _t(cases, case, "jax"),
            lambda v: v <= 1.05)
    for case in ("gpt_gpu", "cnn_gpu", "gpt", "cnn"):
        if case in cases:
            add(f"{case}: jparam faster than torch eager (ratio < 1)", _t(cases, case, "jparam"),
                _t(cases, case, "torch"), lambda v: v < 1.0)
    for case in ("gpt_gpu", "cnn_gpu"):
        if case in cases:
            add(f"{case}: jparam <= 1.2x torch.compile", _t(cases, case, "jparam"),
                _t(cases, case, "torch_compile"), lambda v: v <= 1.2)
    if "gpt_gpu" in cases:
        add("gpt_gpu: jparam bf16 autocast >= 1.6x faster than float32 (speed-up)",
            _t(cases, "gpt_gpu", "jparam"), _t(cases, "gpt_gpu", "jparam_bf16"), lambda v: v >= 1.6)
    return out


def markdown(res: dict) -> str:
    p = res["probe"]
    lines = [f"# GPU check: {p.get('device_kind', 'unknown device')}", "",
             f"{res['date']}; jax {p.get('jax')}, torch {p.get('torch')}, python {p.get('python')}"
             f"{' (DRY RUN on CPU: sizes and numbers mean nothing)' if res['dry_run'] else ''}.",
             "Command: `bash benchmarks/gpu_check.sh`.", "", "## Stages", "",
             "| stage | exit | seconds |", "|---|---:|---:|"]
    for name, s in res["stages"].items():
        lines.append(f"| {name} | {s['rc']}{' (timeout)' if s['timed_out'] else ''} | {s['seconds']} |")
    t = res["tests"]
    lines += ["", "## Parity tests (float32, TF32 off)", "",
              f"{t['passed']} passed, {t['failed']} failed, {t['errors']} errors, {t['skipped']} "
              f"skipped (from {t['source']})."]
    lines += [f"- FAILED `{f}`" for f in t["failures"][:30]]
    lines += ["", "## Step time (median; ratio to pure JAX)", "",
              "| case | " + " | ".join(NAMES[f] for f in FWS) + " |", "|---|" + "---:|" * len(FWS)]
    for case, c in res["bench"].items():
        base = _t(res["bench"], case, "jax")
        cells = []
        for fw in FWS:
            v = _t(res["bench"], case, fw)
            cells.append("—" if v is None else f"{v * 1e3:.2f} ms" + (f" ({v / base:.2f}×)" if base else ""))
        lines.append(f"| `{case}` | " + " | ".join(cells) + " |")
    errs = {f"{c}/{fw}": e for c, v in res["bench"].items() for fw, e in v["errors"].items()}
    lines += [f"- {k}: {e}" for k, e in errs.items()]
    lines += ["", "## Goals", "", "| goal | value | met |", "|---|---:|:---:|"]
    for g in res["goals"]:
        met = "—" if g["met"] is None else ("yes" if g["met"] else "**no**")
        lines.append(f"| {g['goal']} | {'—' if g['value'] is None else g['value']} | {met} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", required=True)
    ap.add_argument("--dry-run", default="0")
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    work = Path(args.work)
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "dry_run": args.dry_run == "1", "command": "bash benchmarks/gpu_check.sh",
           "work_dir": str(work)}
    for key, fn in (("stages", stages), ("probe", probe), ("tests", tests), ("bench", bench)):
        try:
            res[key] = fn(work)
        except Exception as e:  # noqa: BLE001  (the JSON is written whatever went wrong)
            res[key] = {"report_error": f"{type(e).__name__}: {e}"}
    try:
        res["goals"] = goals(res["bench"])
    except Exception as e:  # noqa: BLE001
        res["goals"] = [{"goal": "report error", "value": str(e), "met": None}]
    kind = res["probe"].get("device_kind") if isinstance(res["probe"], dict) else None
    slug = re.sub(r"[^a-z0-9]+", "-", (kind or "unknown-gpu").lower()).strip("-")
    if res["dry_run"]:
        slug += "-dry-run"
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{slug}.json.tmp"
    tmp.write_text(json.dumps(res, indent=1, default=str))
    os.replace(tmp, out / f"{slug}.json")
    try:
        md = markdown(res)
    except Exception as e:  # noqa: BLE001
        md = f"# GPU check\n\nsummary failed: {type(e).__name__}: {e}; see {slug}.json\n"
    (out / f"{slug}.md").write_text(md)
    print(md)
    print(f"[gpu_check] wrote {out / slug}.json and .md")


if __name__ == "__main__":
    main()
