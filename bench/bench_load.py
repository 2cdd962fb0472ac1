"""load_capture on a synthetic day: cold (parse + write cache) vs warm (Parquet cache), peak memory.

Run: `.venv/bin/python bench/bench_load.py [--snapshots N] [--pairs P] [--rounds R]`

1. A real base snapshot: `collect.sh -n 1` (as root, inside `unshare --net` so that only this
   workload's sockets are in it) while one process holds P loopback connection pairs (2P sockets +
   1 listener), a tenth of the clients each having sent 64 KiB that nobody reads.
2. The capture: the base snapshot replicated N times, 10 s apart (directory name and meta.txt
   start/end shifted; every other file hard-linked). A full day at 10 s is N = 8640.
3. Each measurement runs in a fresh child process (so its peak RSS, ru_maxrss, is its own):
   - baseline "read+gunzip": read and decompress every file of the capture (the I/O floor);
   - baseline "read_ss": `read_ss` on every ss file's text, batched the way load_capture does it;
   - cold: `load_capture(path)` with no cache (parses, writes `.tcpmem-cache/`);
   - warm: `load_capture(path)` again (reads the cache).
   R rounds each, alternating; medians reported with the ratios cold/read_ss and warm/cold.
Numbers for N < 8640 are extrapolated linearly to the day (rows and time scale with N); the table
says which figures are measured and which are extrapolated.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
COLLECT = ROOT / "collect.sh"
DAY = 8640

_WORKLOAD = r"""
import os, resource, socket, sys, time
n = int(sys.argv[1]); ready = sys.argv[2]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(4096)
pairs = []
for i in range(n):
    c = socket.create_connection(lst.getsockname()); a, _ = lst.accept(); pairs.append((c, a))
for c, _ in pairs[: n // 10]:
    c.sendall(b"x" * 65536)
open(ready, "w").close()
time.sleep(600)
"""

_SHELL = r"""
set -eu
ip link set lo up
python3 -c "$WORKLOAD" "$PAIRS" "$READY" &
pid=$!
i=0
while [ ! -e "$READY" ]; do sleep 0.1; i=$((i+1)); [ "$i" -lt 1200 ] || exit 9; done
sh "$COLLECT" -N -o "$OUT" -n 1 >/dev/null 2>&1
kill "$pid"
"""


def make_base(work: Path, pairs: int) -> Path:
    """One real snapshot of `pairs` loopback connection pairs, in a private network namespace."""
    out = work / "base"
    env = dict(
        os.environ,
        WORKLOAD=_WORKLOAD,
        PAIRS=str(pairs),
        READY=str(work / "ready"),
        COLLECT=str(COLLECT),
        OUT=str(out),
    )
    subprocess.run(["unshare", "--net", "sh", "-c", _SHELL], env=env, check=True, timeout=600)
    (snap,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return snap


def replicate(base: Path, out: Path, n: int, interval_s: float = 10.0) -> Path:
    """`n` copies of snapshot `base`, `interval_s` apart: meta.txt rewritten, other files hard-linked."""
    out.mkdir(parents=True)
    meta = dict(
        line.split("=", 1) for line in (base / "meta.txt").read_text().splitlines() if "=" in line
    )
    start0 = pd.Timestamp(meta["start"])
    end0 = pd.Timestamp(meta["end"])
    meta_lines = (base / "meta.txt").read_text().splitlines()
    others = [p for p in base.iterdir() if p.name != "meta.txt"]
    for i in range(n):
        shift = pd.Timedelta(seconds=interval_s * i)
        start = start0 + shift
        name = start.strftime("%Y%m%dT%H%M%S") + f".{start.value % 10**9:09d}Z"
        snap = out / name
        snap.mkdir()
        lines = []
        for line in meta_lines:
            if line.startswith("start="):
                line = "start=" + _iso(start)
            elif line.startswith("end="):
                line = "end=" + _iso(end0 + shift)
            lines.append(line)
        (snap / "meta.txt").write_text("\n".join(lines) + "\n")
        for p in others:
            os.link(p, snap / p.name)
    return out


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts.value % 10**9:09d}Z"


# ---- measurements, each run in a child process: `python bench_load.py --child KIND PATH`


class _TreeRss:
    """Peak of the summed RSS of this process and all its descendants (worker processes included),
    sampled every 20 ms from /proc: ru_maxrss only knows one process at a time."""

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def _tree(pid: int) -> list[int]:
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            out.append(p)
            try:
                for task in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{task}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
            except OSError:
                continue
        return out

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            return 0

    def _run(self) -> None:
        me = os.getpid()
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, sum(self._rss(p) for p in self._tree(me)))

    def finish(self) -> int:
        self.stop.set()
        self.thread.join()
        return self.peak


def _child(kind: str, path: Path) -> dict[str, float]:
    import resource

    # Imports first, outside the timed part: a notebook has them loaded already.
    import tcpmemlib.capture
    import tcpmemlib.parsers.ss

    tree = _TreeRss()
    me0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    rows = 0
    frames = 0
    if kind == "read":
        for p in sorted(path.rglob("*")):
            if p.is_file() and ".tcpmem-cache" not in p.parts:
                data = p.read_bytes()
                rows += len(gzip.decompress(data) if p.name.endswith(".gz") else data)
    elif kind == "read_ss":
        from tcpmemlib.capture import SS_BATCH_BYTES
        from tcpmemlib.parsers.ss import read_ss
        from tcpmemlib.parsers.text import read_text

        batch: list[str] = []
        size = 0
        files = sorted(path.glob("*/ss_*.txt.gz"))
        for i, p in enumerate(files):
            text = read_text(p)[1]
            batch.append(text)
            size += len(text)
            if size >= SS_BATCH_BYTES or i == len(files) - 1:
                rows += len(read_ss("".join(batch)))
                batch, size = [], 0
    else:
        from tcpmemlib.capture import FRAMES, load_capture

        workers = {"cold1": 1, "cold2": 2}.get(kind)
        mode = "memory" if kind.endswith("_memory") else "auto"
        cap = load_capture(path, cache=True, progress=False, workers=workers, sockets=mode)
        rows = cap.socket_rows
        # frames held in memory (the socket rows only when they are not left on disk)
        held = [n for n in FRAMES if not (cap.sockets_on_disk and n in ("sockets", "owners"))]
        frames = sum(int(getattr(cap, n).memory_usage(deep=False).sum()) for n in held)
        if kind == "analyses":
            import tcpmemlib as t

            for fn in (t.where_is_it, t.by_process, t.reconcile, t.growth, t.idle_cost, t.pressure):
                fn(cap)
    seconds = time.perf_counter() - t0
    tree_peak = tree.finish()
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "seconds": seconds,
        # CPU of the measured work (this process since t0, plus any worker processes it spawned)
        "cpu_s": (me.ru_utime + me.ru_stime - me0.ru_utime - me0.ru_stime)
        + kids.ru_utime
        + kids.ru_stime,
        "peak_rss_bytes": float(max(me.ru_maxrss, kids.ru_maxrss) * 1024),
        "peak_tree_bytes": float(max(tree_peak, me.ru_maxrss * 1024)),
        "rows": float(rows),
        "frames_bytes": float(frames),
    }


def run_child(kind: str, path: Path, baseline: str | None = None) -> dict[str, float]:
    """Measure ``kind`` in a fresh child; ``base_<kind>`` runs ``kind`` on the tcpmemlib of the
    ``--baseline`` tree instead (the same capture, the same run: a ratio against the old code)."""
    env = dict(os.environ)
    if kind.startswith("base_"):
        kind = kind[len("base_") :]
        env["PYTHONPATH"] = str(baseline)
    if kind.startswith("cold"):  # (warm kinds run after a cold one has written the cache)
        shutil.rmtree(path / ".tcpmem-cache", ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
        env=env,
        cwd=path.parent,  # not a checkout: `python -m tcpmemlib.workers` puts the cwd first
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--snapshots", type=int, default=360, help="snapshots (8640 = a day at 10 s)")
    ap.add_argument("--pairs", type=int, default=1000, help="connection pairs (2 sockets each)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--baseline",
        help="a tree of an older tcpmemlib (with its C extension built), e.g. a git worktree of "
        "the previous release: kinds base_cold1, base_cold2, base_warm run on it",
    )
    ap.add_argument(
        "--kinds",
        default="read,read_ss,cold1,cold2,warm,warm_memory,analyses",
        help="measurements, comma-separated (also: cold_memory)",
    )
    ap.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], Path(args.child[1]))))
        return 0
    work = Path(tempfile.mkdtemp(prefix="tcpmem-bench-load-"))
    try:
        base = make_base(work, args.pairs)
        capture = replicate(base, work / "day", args.snapshots)
        ss_bytes = sum(p.stat().st_size for p in base.glob("ss_*"))
        kinds = tuple(args.kinds.split(","))
        results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        load = os.getloadavg()[0]
        for _ in range(args.rounds):
            for kind in kinds:
                results[kind].append(run_child(kind, capture, args.baseline))
        med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in results.items()}
        rows = max(m["rows"] for k, m in med.items() if k not in ("read", "read_ss"))
        scale = DAY / args.snapshots
        print(
            f"capture: {args.snapshots} snapshots x {rows / args.snapshots:.0f} sockets "
            f"= {rows:.0f} socket rows (base snapshot's ss files: {ss_bytes} bytes gz); "
            f"{args.rounds} rounds alternating, medians; load average at start {load:.1f} "
            f"on {os.cpu_count()} CPUs"
        )
        print(
            "| measurement | wall s | CPU s | peak RSS, largest process MB | peak RSS, all "
            f"processes MB | frames held MB | day (x{scale:.1f}) wall s, extrapolated | what |"
        )
        print("|---|---|---|---|---|---|---|---|")
        notes = {
            "read": "read + gunzip every file (I/O floor)",
            "read_ss": "read_ss alone on the same ss text, same batch size",
            "cold1": "load_capture, no cache, workers=1 (parse + write Parquet)",
            "cold2": "load_capture, no cache, 2 worker processes (the default for large captures)",
            "cold_memory": "cold2 with sockets='memory' (every socket row in memory: the old model)",
            "warm": "load_capture from the Parquet cache",
            "warm_memory": "warm with sockets='memory' (every socket row in memory: the old model)",
            "analyses": "warm + where_is_it, by_process, reconcile, growth, idle_cost, pressure",
            "base_cold1": "cold1 on the --baseline tree (the old code)",
            "base_cold2": "cold2 on the --baseline tree (the old code)",
            "base_warm": "warm on the --baseline tree (the old code)",
        }
        for kind in kinds:
            m = med[kind]
            print(
                f"| {kind} | {m['seconds']:.2f} | {m['cpu_s']:.2f} | "
                f"{m['peak_rss_bytes'] / 1e6:.0f} | {m['peak_tree_bytes'] / 1e6:.0f} | "
                f"{m['frames_bytes'] / 1e6:.0f} | {m['seconds'] * scale:.0f} | "
                f"{notes.get(kind, kind)} |"
            )
        pairs = [
            ("cold1", "base_cold1", "seconds"),
            ("cold2", "base_cold2", "seconds"),
            ("warm", "base_warm", "seconds"),
            ("cold2", "base_cold2", "peak_tree_bytes"),
            ("cold1", "read_ss", "seconds"),
            ("cold2", "cold1", "seconds"),
            ("warm", "cold2", "seconds"),
            ("warm", "warm_memory", "seconds"),
            ("warm", "warm_memory", "peak_tree_bytes"),
            ("cold2", "cold_memory", "peak_tree_bytes"),
            ("analyses", "warm", "peak_tree_bytes"),
        ]
        shown = [
            f"{a}/{b} {what.split('_')[0]} {med[a][what] / med[b][what]:.3f}"
            for a, b, what in pairs
            if a in med and b in med
        ]
        print("ratios (same run): " + "; ".join(shown))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
