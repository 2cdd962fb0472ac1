"""Snapshot small-file parsers: CPU time of ``records`` + ``frame`` per file kind, vs a baseline.

Measures, for each kind of small snapshot file (ps, slabinfo, slab_aliases, zoneinfo, meminfo,
protocols, netstat, snmp, sockstat, sockstat6, sockstat_after, sysctl, cgroups), the CPU seconds
(``time.process_time``) of what a chunk of the loader does with those files: ``records`` of every
file, the files' columns joined (``text.join_columns`` here; the baseline's list ``extend``), and
the kind's ``frame`` on the joined columns. Two implementations on the same texts in the same run,
rounds alternating which goes first, median of the rounds:

- this tree's parsers;
- the parsers of git revision ``--baseline`` (their modules from ``git show``, exec'd into fresh
  modules with that revision's ``numbers`` and ``text``).

Both must give equal frames (checked once per kind before timing). Texts: the small files of each
snapshot of ``capture`` (a capture directory or a ``.tar.gz`` of one), cycled to ``--snapshots``
files per kind (360: an hour at 10 s).

    python bench/bench_parsers.py [capture] [--snapshots 360] [--rounds 7] [--baseline 32a3938]
        [--kinds ps.txt ...]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import subprocess
import sys
import tarfile
import time
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from pandas.testing import assert_frame_equal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tcpmemlib.parsers import (  # noqa: E402
    cgroups,
    meminfo,
    netstat,
    protocols,
    ps,
    slab_aliases,
    slabinfo,
    sockstat,
    sysctl,
    zoneinfo,
)
from tcpmemlib.parsers.text import join_columns  # noqa: E402

NAMES = [
    "cgroups",
    "meminfo",
    "netstat",
    "protocols",
    "ps",
    "slab_aliases",
    "slabinfo",
    "sockstat",
    "sysctl",
    "zoneinfo",
]
CURRENT = types.SimpleNamespace(
    cgroups=cgroups,
    meminfo=meminfo,
    netstat=netstat,
    protocols=protocols,
    ps=ps,
    slab_aliases=slab_aliases,
    slabinfo=slabinfo,
    sockstat=sockstat,
    sysctl=sysctl,
    zoneinfo=zoneinfo,
)


def load_baseline(rev: str) -> types.SimpleNamespace:
    """The parser modules of ``rev``, with that revision's ``numbers`` and ``text``."""
    saved = {n: sys.modules[f"tcpmemlib.parsers.{n}"] for n in ("numbers", "text")}
    mods: dict[str, types.ModuleType] = {}
    try:
        for name in ["numbers", "text", *NAMES]:
            src = subprocess.run(
                ["git", "-C", str(ROOT), "show", f"{rev}:tcpmemlib/parsers/{name}.py"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            mod = types.ModuleType(f"baseline_{name}")
            exec(compile(src, f"{rev}:tcpmemlib/parsers/{name}.py", "exec"), mod.__dict__)
            if name in saved:
                sys.modules[f"tcpmemlib.parsers.{name}"] = mod
            else:
                mods[name] = mod
    finally:
        sys.modules.update({f"tcpmemlib.parsers.{n}": m for n, m in saved.items()})
    return types.SimpleNamespace(**mods)


def extend_lists(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The baseline accumulator: each column's lists extended."""
    out: dict[str, list[Any]] = {}
    for part in parts:
        for name, values in part.items():
            out.setdefault(name, []).extend(values)
    return out


Records = Callable[[Any, str, list[str]], Any]
Frames = Callable[[Any, list[Any], Callable[[list[Any]], Any]], list[pd.DataFrame]]


def _plain(name: str) -> tuple[str, Records, Frames]:
    return (
        f"{name}.txt",
        lambda m, text, names: getattr(m, name).records(text, None),
        lambda m, parts, join: [getattr(m, name).frame(join(parts))],
    )


def _netstat(file: str) -> tuple[str, Records, Frames]:
    return (
        f"{file}.txt",
        lambda m, text, names: m.netstat.records(text, None, file),
        lambda m, parts, join: [m.netstat.frame(join(parts))],
    )


# (file, records(modules, text, that snapshot's slab names), frames(modules, parts, join))
KINDS: list[tuple[str, Records, Frames]] = [
    _plain("ps"),
    _plain("slabinfo"),
    (
        "slab_aliases.txt",
        lambda m, text, names: m.slab_aliases.records(text, None, names),
        lambda m, parts, join: [m.slab_aliases.frame(join(parts))],
    ),
    _plain("zoneinfo"),
    _plain("meminfo"),
    _plain("protocols"),
    _netstat("netstat"),
    _netstat("snmp"),
    _plain("sockstat"),
    (
        "sockstat6.txt",
        lambda m, text, names: m.sockstat.records(text, None),
        lambda m, parts, join: [m.sockstat.frame(join(parts))],
    ),
    (
        "sockstat_after.txt",
        lambda m, text, names: m.sockstat.after_records(text, None),
        lambda m, parts, join: [m.sockstat.frame(join(parts))],
    ),
    _plain("sysctl"),
    (
        "cgroups.txt",
        lambda m, text, names: m.cgroups.records(text, None),
        lambda m, parts, join: [
            m.cgroups.frame(join([p[0] for p in parts])),
            m.cgroups.pids_frame(join([p[1] for p in parts])),
        ],
    ),
]


def read_capture(capture: Path) -> list[dict[str, str]]:
    """The small files of each snapshot (base name without .gz -> text), in name order."""
    wanted = {k[0] for k in KINDS}
    snaps: dict[str, dict[str, str]] = {}

    def add(snap: str, name: str, data: bytes) -> None:
        base = name[:-3] if name.endswith(".gz") else name
        if base in wanted:
            if name.endswith(".gz"):
                data = gzip.decompress(data)
            snaps.setdefault(snap, {})[base] = data.decode("utf-8", "backslashreplace")

    if capture.is_file():
        with tarfile.open(capture) as bundle:
            for member in bundle.getmembers():
                got = bundle.extractfile(member) if member.isfile() else None
                if got is not None and "/" in member.name:
                    snap, name = member.name.rsplit("/", 1)
                    add(snap, name, got.read())
    else:
        for path in sorted(capture.glob("*/*")):
            if path.is_file():
                add(path.parent.name, path.name, path.read_bytes())
    return [snaps[s] for s in sorted(snaps)]


def run(mods: Any, kind: tuple[str, Records, Frames], texts, names, join) -> list[pd.DataFrame]:
    _, records, frames = kind
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = [records(mods, text, slab) for text, slab in zip(texts, names, strict=True)]
        return frames(mods, parts, join)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("capture", nargs="?", type=Path, default=ROOT / "data/sample.tar.gz")
    ap.add_argument("--snapshots", type=int, default=360, help="files per kind (cycled)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--baseline", default="32a3938", help="git revision of the baseline parsers")
    ap.add_argument("--kinds", nargs="*", help="only these files (e.g. ps.txt netstat.txt)")
    ap.add_argument(
        "--parts", action="store_true", help="also this tree's time in records / join / frame"
    )
    args = ap.parse_args()
    snaps = read_capture(args.capture)
    old = load_baseline(args.baseline)
    print(
        f"capture {args.capture} ({len(snaps)} snapshots), {args.snapshots} files per kind, "
        f"{args.rounds} rounds, baseline {args.baseline}, CPU seconds (median)"
    )
    header = (
        f"| kind | files | rows | {args.baseline} ms | this tree ms | ratio | "
        f"{args.baseline} rows/CPU-s | this tree rows/CPU-s |"
    )
    print(header)
    print("|" + "---|" * 8)
    sums = [0.0, 0.0]
    for kind in KINDS:
        if args.kinds and kind[0] not in args.kinds:
            continue
        have = [s for s in snaps if kind[0] in s]
        if not have:
            print(f"| {kind[0]} | 0 | (not in this capture) | | | | | |")
            continue
        picked = [have[i % len(have)] for i in range(args.snapshots)]
        texts = [s[kind[0]] for s in picked]
        names = [
            slabinfo.records(s["slabinfo.txt"], None)["name"] if "slabinfo.txt" in s else None
            for s in picked
        ]
        got = run(CURRENT, kind, texts, names, join_columns)
        want = run(old, kind, texts, names, extend_lists)
        for new_frame, old_frame in zip(got, want, strict=True):
            assert_frame_equal(new_frame, old_frame, check_exact=True)
        rows = sum(len(f) for f in got)
        times: dict[str, list[float]] = {"old": [], "new": []}
        for r in range(args.rounds):
            order = [("old", old, extend_lists), ("new", CURRENT, join_columns)]
            for label, mods, join in order if r % 2 == 0 else order[::-1]:
                t = time.process_time()
                run(mods, kind, texts, names, join)
                times[label].append(time.process_time() - t)
        t_old, t_new = statistics.median(times["old"]), statistics.median(times["new"])
        sums[0] += t_old
        sums[1] += t_new
        print(
            f"| {kind[0]} | {len(texts)} | {rows:,} | {t_old * 1e3:.1f} | {t_new * 1e3:.1f} | "
            f"{t_old / t_new:.1f}x | {rows / t_old:,.0f} | {rows / t_new:,.0f} |"
        )
    print(
        f"| **all kinds** | | | {sums[0] * 1e3:.1f} | {sums[1] * 1e3:.1f} | "
        f"**{sums[0] / sums[1]:.1f}x** | | |"
    )
    if args.parts:
        print("\nthis tree, ms (median): | kind | records | join | frame |")
        for kind in KINDS:
            have = [s for s in snaps if kind[0] in s]
            if have and (not args.kinds or kind[0] in args.kinds):
                print(
                    f"| {kind[0]} | "
                    + " | ".join(f"{t:.1f}" for t in parts(kind, have, args))
                    + " |"
                )


def parts(kind: tuple[str, Records, Frames], have: list[dict[str, str]], args) -> list[float]:
    """This tree's median ms in records, join and frame for one kind."""
    picked = [have[i % len(have)] for i in range(args.snapshots)]
    texts = [s[kind[0]] for s in picked]
    names = [slabinfo.records(s["slabinfo.txt"], None)["name"] for s in picked]
    spent: list[list[float]] = [[], [], []]
    joined: list[Any] = []

    def join(got: list[Any]) -> Any:  # the frames' own call, timed apart
        t = time.process_time()
        out = join_columns(got)
        joined.append(time.process_time() - t)
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(args.rounds):
            joined.clear()
            t = time.process_time()
            got = [kind[1](CURRENT, text, slab) for text, slab in zip(texts, names, strict=True)]
            t1 = time.process_time()
            kind[2](CURRENT, got, join)
            t2 = time.process_time()
            spent[0].append(t1 - t)
            spent[1].append(sum(joined))
            spent[2].append(t2 - t1 - sum(joined))
    return [statistics.median(x) * 1e3 for x in spent]


if __name__ == "__main__":
    main()
