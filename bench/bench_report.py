"""How long ``tcpmem report`` takes on the bundled sample, against a baseline run in the same process.

Baseline: the same pipeline (papermill + nbconvert + index) on one notebook that only holds the
parameters cell, i.e. the fixed cost of starting a kernel and converting a notebook. The report is
timed twice on a fresh copy of the sample: cold (the first load parses the capture and writes its
Parquet cache) and warm (the cache is read). Goal: the warm report in <= 60 s.

    .venv/bin/python bench/bench_report.py [CAPTURE]     # default data/sample.tar.gz
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from tcpmemlib.report import build_report

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 60.0


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
        base_s, _ = _timed("baseline", capture=capture, out_dir=where / "b", notebook_dir=empty)
        cold_s, _ = _timed("cold", capture=capture, out_dir=where / "cold")
        warm_s, per_nb = _timed("warm", capture=capture, out_dir=where / "warm")
    n = len(per_nb)
    print(f"capture: {source}")
    print("| run | seconds | x baseline (1 notebook) | x baseline per notebook |")
    print("|---|---|---|---|")
    print(f"| baseline: 1 empty notebook | {base_s:.1f} | 1.0 | 1.0 |")
    for label, secs in (("report, cold cache", cold_s), ("report, warm cache", warm_s)):
        print(
            f"| {label} ({n} notebooks) | {secs:.1f} | {secs / base_s:.1f} | {secs / n / base_s:.1f} |"
        )
    print()
    print("| notebook (warm) | seconds |")
    print("|---|---|")
    for name, secs in per_nb:
        print(f"| {name} | {secs:.1f} |")
    verdict = "meets" if warm_s <= GOAL_S else "MISSES"
    print(f"\nwarm report {warm_s:.1f} s {verdict} the {GOAL_S:.0f} s goal")
    print(f"command: .venv/bin/python bench/bench_report.py {' '.join(argv)}".rstrip())
    return 0 if warm_s <= GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
