"""How long ``tcpmem report`` takes on the bundled sample, against a baseline run in the same process.

Baseline: the same pipeline (papermill + nbconvert + index) on one notebook that only holds the
parameters cell, i.e. the fixed cost of starting a kernel and converting a notebook. The report is
timed on a fresh copy of the sample: once cold (the first load parses the capture and writes its
Parquet cache), then warm (the cache is read) REPEAT times, alternating with the baseline; medians
are reported (the box may be shared). Goal: the warm report in <= 60 s.

    .venv/bin/python bench/bench_report.py [CAPTURE]     # default data/sample.tar.gz
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from tcpmemlib.report import build_report

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 60.0
REPEAT = 3


def _empty_notebook_dir(where: Path) -> Path:
    nbs = where / "empty-notebooks"
    nbs.mkdir()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('capture: str = ""  # capture\nbefore: str = ""  # before')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nbformat.write(nb, str(nbs / "empty.ipynb"))
    return nbs


def _timed(label: str, **kwargs) -> tuple[float, list[tuple[str, float]]]:
    t0 = time.perf_counter()
    report = build_report(log=lambda _line: None, **kwargs)
    seconds = time.perf_counter() - t0
    if report.failed:
        raise SystemExit(f"{label}: notebooks failed: {', '.join(report.failed)}")
    return seconds, [(r.name, r.seconds) for r in report.runs]


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else ROOT / "data" / "sample.tar.gz"
    if not source.exists():
        print(f"bench_report: capture not found: {source}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tcpmem-bench-report-") as tmp:
        where = Path(tmp)
        capture = where / source.name
        if source.is_dir():
            shutil.copytree(source, capture, ignore=shutil.ignore_patterns(".tcpmem-cache"))
        else:
            shutil.copy2(source, capture)
        empty = _empty_notebook_dir(where)
        cold_s, _ = _timed("cold", capture=capture, out_dir=where / "cold")
        bases, warms, per_nb_runs = [], [], []
        for i in range(REPEAT):
            b, _ = _timed("baseline", capture=capture, out_dir=where / f"b{i}", notebook_dir=empty)
            w, per = _timed("warm", capture=capture, out_dir=where / f"warm{i}")
            bases.append(b)
            warms.append(w)
            per_nb_runs.append(dict(per))
    base_s, warm_s = statistics.median(bases), statistics.median(warms)
    names = list(per_nb_runs[0])
    n = len(names)
    print(f"capture: {source}; medians of {REPEAT} runs (cold: 1 run)")
    print("| run | seconds | x baseline (1 notebook) | x baseline per notebook |")
    print("|---|---|---|---|")
    print(f"| baseline: 1 empty notebook | {base_s:.1f} | 1.0 | 1.0 |")
    for label, secs in (("report, cold cache", cold_s), ("report, warm cache", warm_s)):
        print(
            f"| {label} ({n} notebooks) | {secs:.1f} | {secs / base_s:.1f} | {secs / n / base_s:.1f} |"
        )
    print(
        f"\nwarm runs: {', '.join(f'{w:.1f}' for w in warms)} s; baselines: "
        f"{', '.join(f'{b:.1f}' for b in bases)} s"
    )
    print()
    print("| notebook (warm, median) | seconds |")
    print("|---|---|")
    for name in names:
        print(f"| {name} | {statistics.median(r[name] for r in per_nb_runs):.1f} |")
    verdict = "meets" if warm_s <= GOAL_S else "MISSES"
    print(f"\nwarm report {warm_s:.1f} s {verdict} the {GOAL_S:.0f} s goal")
    print(f"command: .venv/bin/python bench/bench_report.py {' '.join(argv)}".rstrip())
    return 0 if warm_s <= GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
