"""collect.sh -n 1 vs `ss -tanmieOpH > /dev/null` alone, at 1k and 10k loopback connection pairs.

Run: `.venv/bin/python bench/bench_collect.py [--rounds N] [--pairs 1000,10000] [--levels auto,auto+f]
[--scripts collect.sh,/tmp/other.sh]`

For each connection count, the connections are opened once (spread over several holder processes:
RLIMIT_NOFILE is per process), then the baseline (`ss` alone) and `collect.sh -n 1` (default gzip
choice, then each fixed level; `+f` = with -f, full ss text; each of `--scripts`) run alternately,
`rounds` times each, in the same run. Reported: median wall time and median
CPU (user+sys of the children, from getrusage) of each, the ratio collect/ss, and the bytes one
snapshot takes (apparent bytes and du-style allocated blocks, plus ss_tcp.txt.gz alone).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from collect_helpers import COLLECT, LoopbackPairs, apparent_bytes, dir_usage_bytes


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run cmd (stdout to /dev/null); return (wall seconds, children's user+sys seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def count_sockets() -> int:
    out = subprocess.run(["ss", "-tanH"], capture_output=True, text=True, check=True).stdout
    return out.count("\n")


def variants(levels: list[str], scripts: list[Path]) -> list[tuple[str, Path, str, list[str]]]:
    """(label, script, gzip level or "auto", extra args) for each script x level[+f]."""
    out = []
    for script in scripts:
        for spec in levels:
            level, _, flag = spec.partition("+")
            extra = ["-f"] if flag == "f" else []
            gz = f"gzip {'-' if level != 'auto' else ''}{level}{', -f' if extra else ''}"
            name = f"{script.name} " if len(scripts) > 1 else "collect.sh "
            out.append((f"{name}-n 1 ({gz})", script, level, extra))
    return out


def bench_one(
    n_pairs: int, rounds: int, levels: list[str], work: Path, scripts: list[Path]
) -> list[dict[str, object]]:
    n_procs = max(1, -(-n_pairs // 2500))
    rows: list[dict[str, object]] = []
    with LoopbackPairs(n_pairs, n_procs=n_procs):
        sockets = count_sockets()
        ss_cmd = ["ss", "-tanmieOpH"]
        runs: dict[str, list[tuple[float, float]]] = {"ss": []}
        sizes: dict[str, tuple[int, int, int]] = {}
        todo = variants(levels, scripts)
        for label, *_ in todo:
            runs[label] = []
        # warm-up: one of each (page cache, dentries of /proc/*/fd)
        timed(ss_cmd)
        for r in range(rounds):
            runs["ss"].append(timed(ss_cmd))
            for k, (label, script, level, extra) in enumerate(todo):
                out = work / f"p{n_pairs}-v{k}-r{r}"
                env = dict(os.environ)
                env.pop("TCPMEM_GZIP_LEVEL", None)
                if level != "auto":
                    env["TCPMEM_GZIP_LEVEL"] = level
                cmd = [
                    "sh",
                    str(script),
                    "-o",
                    str(out),
                    "-n",
                    "1",
                    "-i",
                    "0",
                    "-m",
                    "4096",
                    *extra,
                ]
                runs[label].append(timed(cmd, env=env))
                snaps = [p for p in out.iterdir() if not p.name.startswith(".")]
                assert len(snaps) == 1, snaps
                snap = snaps[0]
                sizes[label] = (
                    apparent_bytes(snap),
                    dir_usage_bytes(snap),
                    (snap / "ss_tcp.txt.gz").stat().st_size,
                )
                shutil.rmtree(out)
    ss_wall = statistics.median(w for w, _ in runs["ss"])
    ss_cpu = statistics.median(c for _, c in runs["ss"])
    rows.append(
        {
            "pairs": n_pairs,
            "sockets": sockets,
            "what": "ss -tanmieOpH >/dev/null",
            "wall_s": ss_wall,
            "cpu_s": ss_cpu,
            "wall_ratio": 1.0,
            "cpu_ratio": 1.0,
            "bytes": None,
        }
    )
    for label, *_ in todo:
        wall = statistics.median(w for w, _ in runs[label])
        cpu = statistics.median(c for _, c in runs[label])
        rows.append(
            {
                "pairs": n_pairs,
                "sockets": sockets,
                "what": label,
                "wall_s": wall,
                "cpu_s": cpu,
                "wall_ratio": wall / ss_wall,
                "cpu_ratio": cpu / ss_cpu if ss_cpu else float("nan"),
                "bytes": sizes[label],
            }
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--pairs", default="1000,10000")
    ap.add_argument(
        "--levels",
        default="auto,auto+f",
        help="gzip levels; auto = collect.sh's own choice; +f = with -f (full ss text)",
    )
    ap.add_argument(
        "--scripts", default=str(COLLECT), help="comma-separated collect.sh copies to measure"
    )
    args = ap.parse_args()
    levels = args.levels.split(",")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"rounds: {args.rounds} (alternating, medians), kernel {os.uname().release}")
    print(
        "| pairs | sockets | what | wall (median) | CPU user+sys (median) | wall ratio | CPU ratio "
        "| one snapshot: bytes / du blocks / ss_tcp.txt.gz |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench_collect_") as tmp:
        for n in (int(x) for x in args.pairs.split(",")):
            scripts = [Path(x) for x in args.scripts.split(",")]
            for row in bench_one(n, args.rounds, levels, Path(tmp), scripts):
                size = row["bytes"]
                size_s = (
                    ""
                    if size is None
                    else f"{size[0] / 1024:.1f} KiB / {size[1] / 1024:.0f} KiB "
                    f"/ {size[2] / 1024:.1f} KiB"
                )
                print(
                    f"| {row['pairs']} | {row['sockets']} | {row['what']} | "
                    f"{row['wall_s'] * 1000:.0f} ms | {row['cpu_s'] * 1000:.0f} ms | "
                    f"{row['wall_ratio']:.2f} | {row['cpu_ratio']:.2f} | {size_s} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
