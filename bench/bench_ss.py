"""read_ss throughput on verbatim `ss -tanmieOpH` text, as ratios against baselines in the same run.

    .venv/bin/python bench/bench_ss.py [--lines 200000] [--rounds 5] [--baseline 196078c]

Input: ``tests/fixtures/ss/iproute2-6.1.0_kernel-6.18_verbatim/tanmieOpH_2k.txt.gz``, the real
``ss -tanmieOpH`` of 2001 loopback sockets (padded columns and every ``-i`` token: what
``collect.sh -f`` keeps), repeated to about ``--lines`` lines. In this one process, ``--rounds``
rounds, each running every contestant once in turn (so all see the same load on the box):

- ``wc -l`` on the same text in a file, and ``text.split("\\n")``: the floor of reading the lines;
- ``read_ss`` of this tree (C engine, its default threads) and with one thread;
- ``read_ss`` as it was at git revision ``--baseline`` (its ``ss.py``, ``_ss_fast.py``,
  ``_ss_line.py`` from ``git show``, its ``_sstok.c`` compiled here with gcc): the previous engine;
- the reference engine (what runs without a C compiler) on a tenth of the lines.

Prints wall lines/s (best and median), lines per CPU-second, and the ratios to the split baseline
and to the previous engine. Checks first that this tree and the baseline give the same frame.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.machinery
import importlib.util
import os
import platform
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tcpmemlib.parsers import ss  # noqa: E402

FIXTURE = ROOT / "tests/fixtures/ss/iproute2-6.1.0_kernel-6.18_verbatim/tanmieOpH_2k.txt.gz"


def _git_show(rev: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def load_baseline(rev: str, work: Path) -> Callable[[str], pd.DataFrame]:
    """``read_ss`` of git revision ``rev``: its parser modules and its C extractor built here."""
    c_file = work / "_sstok.c"
    c_file.write_text(_git_show(rev, "tcpmemlib/parsers/_sstok.c"))
    so = work / f"_sstok{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", f"-I{include}", str(c_file), "-o", str(so)],
        check=True,
    )
    loader = importlib.machinery.ExtensionFileLoader("_sstok", str(so))
    spec = importlib.util.spec_from_loader("_sstok", loader)
    assert spec is not None
    sstok = importlib.util.module_from_spec(spec)
    loader.exec_module(sstok)
    mods: dict[str, types.ModuleType] = {"_sstok": sstok}
    patches = {
        "_text": {},
        "_ss_line": {},
        "_ss_fast": {
            "from tcpmemlib.parsers import _ss_line as L": "L = _OLD['_ss_line']",
            "from tcpmemlib.parsers import _sstok": "_sstok = _OLD['_sstok']",
        },
        "ss": {
            "from tcpmemlib.parsers import _ss_fast, _ss_line": (
                "_ss_fast, _ss_line = _OLD['_ss_fast'], _OLD['_ss_line']"
            ),
            # (its text helpers' module was renamed since: the baseline's own copy)
            "from tcpmemlib.parsers._text import read_text, split_lines": (
                "read_text, split_lines = _OLD['_text'].read_text, _OLD['_text'].split_lines"
            ),
        },
    }
    for name, patch in patches.items():
        src = _git_show(rev, f"tcpmemlib/parsers/{name}.py")
        for old, new in patch.items():
            assert old in src, (name, old)
            src = src.replace(old, new)
        mod = types.ModuleType(f"baseline_{name}")
        mod.__dict__["_OLD"] = mods
        sys.modules[mod.__name__] = mod  # (dataclasses look the module up)
        exec(compile(src, f"{rev}:tcpmemlib/parsers/{name}.py", "exec"), mod.__dict__)
        mods[name] = mod
    return mods["ss"].read_ss


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline", default="196078c", help="git revision of the previous engine")
    args = ap.parse_args()

    one = gzip.decompress(FIXTURE.read_bytes()).decode()
    base_lines = one.count("\n")
    reps = max(1, args.lines // base_lines)
    text = one * reps
    n = base_lines * reps
    tenth = one * max(1, reps // 10)
    n_tenth = tenth.count("\n")
    print(f"ss fixture: {FIXTURE.relative_to(ROOT)} ({base_lines} lines, {len(one):,} bytes)")
    print(f"input: {base_lines} lines x {reps} = {n:,} lines, {len(text) / 1e6:,.0f} MB")
    print(f"kernel {platform.release()}, python {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"read_ss engines here: {ss.ENGINES}, threads {ss.THREADS}")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "ss.txt"
        path.write_text(text)

        def one_thread(t: str) -> pd.DataFrame:
            threads, ss.THREADS = ss.THREADS, 1
            try:
                return ss.read_ss(t)
            finally:
                ss.THREADS = threads

        contestants: dict[str, tuple[int, Callable[[], object]]] = {
            "wc -l (file)": (
                n,
                lambda: subprocess.run(["wc", "-l", str(path)], check=True, capture_output=True),
            ),
            'text.split("\\n")': (n, lambda: text.split("\n")),
            "read_ss, this tree": (n, lambda: ss.read_ss(text)),
            "read_ss, this tree, 1 thread": (n, lambda: one_thread(text)),
        }
        if args.baseline:
            old = load_baseline(args.baseline, work)
            same = {"check_dtype": False, "check_categorical": False}
            pd.testing.assert_frame_equal(old(one), ss.read_ss(one), **same)
            contestants[f"read_ss at {args.baseline} (previous engine)"] = (n, lambda: old(text))
        reference = (n_tenth, lambda: ss.read_numbered(None, tenth, engine="reference"))
        contestants["reference engine (no C compiler)"] = reference
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in contestants}
        loads = []
        for _ in range(args.rounds):
            for name, (_lines, fn) in contestants.items():
                t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
                fn()
                wall = time.perf_counter() - t0
                cpu = time.process_time() - c0 + _children_cpu() - k0
                runs[name].append((wall, cpu))
            loads.append(os.getloadavg()[0])

    rates = {}
    for name, (lines, _fn) in contestants.items():
        walls = [w for w, _c in runs[name]]
        cpu = min(c for _w, c in runs[name])
        rates[name] = (lines, lines / min(walls), lines / statistics.median(walls), lines / cpu)
    split = rates['text.split("\\n")']
    prev = next((r for k, r in rates.items() if k.startswith("read_ss at ")), None)
    print()
    print(f"load average (1 min) after each round: {', '.join(f'{x:.1f}' for x in loads)}")
    print(
        "| contestant | lines | wall lines/s (best) | wall lines/s (median) | lines per CPU-s "
        "| vs split (median wall) | vs previous (median wall) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (lines, best, med, per_cpu) in rates.items():
        vs_prev = f"{med / prev[2]:.2f}x" if prev else ""
        print(
            f"| {name} | {lines:,} | {best:,.0f} | {med:,.0f} | {per_cpu:,.0f} "
            f"| {med / split[2]:.3f}x | {vs_prev} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
