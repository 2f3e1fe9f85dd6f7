"""Time to first step for a few frameworks at a few depths, more samples than ``run.py`` takes:

    python benchmarks/first_step_ab.py CASE DEPTHS FRAMEWORKS [REPEATS]
    python benchmarks/first_step_ab.py gpt 2 jax,jparam 7

Every point is a fresh process (``first_step.py``); the repeats are interleaved, as in
``run.py``, and the median is printed with every sample and its ratio to the first framework.
Use it to check one point of the curve on a noisy shared machine.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import first_step_curve  # noqa: E402


def main(argv):
    case, depths, fws = argv[0], [int(d) for d in argv[1].split(",")], argv[2].split(",")
    repeats = int(argv[3]) if len(argv) > 3 else 5
    res = first_step_curve(case, [(fw, depths) for fw in fws], repeats, lambda msg: None)
    for d in map(str, depths):
        base = res[fws[0]][d]["median_s"]
        cells = [f"{fw} {res[fw][d]['median_s']:.2f} s ({res[fw][d]['median_s'] / base:.2f}x) "
                 f"{[round(v, 2) for v in res[fw][d]['runs_s']]}" for fw in fws if d in res.get(fw, {})]
        print(f"{case} depth {d}: " + "  ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1:])
