"""collect.sh -n 1 vs `ss -tanmieOpH > /dev/null` alone, at 1k and 10k loopback connection pairs.

Run: `.venv/bin/python bench/bench_collect.py [--rounds N] [--pairs 1000,10000] [--levels auto,auto+f]
[--scripts collect.sh,/tmp/other.sh]`, or `... --breakdown [--pairs 10000] [--rounds N]`, or
`... --netns 100x20 [--rounds N] [--scripts ...]` (root only)

For each connection count, the connections are opened once (spread over several holder processes:
RLIMIT_NOFILE is per process), then the baseline (`ss` alone) and `collect.sh -n 1` (default gzip
choice, then each fixed level; `+f` = with -f, full ss text; each of `--scripts`) run alternately,
`rounds` times each, in the same run. Reported: median wall time and median
CPU (user+sys of the children, from getrusage) of each, the ratio collect/ss, and the bytes one
snapshot takes (apparent bytes and du-style allocated blocks, plus ss_tcp.txt.gz alone).

`--breakdown` (at the first of `--pairs`): where the collector's time goes, each part measured
alternately in the same run: ss alone (-t and -tu), ss into a pipe (`| cat`), ss into the split awk,
ss into the split awk and gzip -1 (collect.sh's pipeline at >= 10000 sockets), collect.sh itself;
then, on one saved ss text, the split awk alone (lean and -f) and gzip -1 alone (lean and full text,
with MB/s); and when ss's bytes arrive on a pipe (first byte, 25/50/75/100 % of the bytes, ss's exit,
ms after start): ss prints its text in bursts in its last third. The split awk is collect.sh's own
`ss_split` function, cut out of the script.

`--netns NxC`: N network namespaces (one process alone in each, tests/collect_helpers.NetnsWorkloads),
C connection pairs in each on its loopback; then `ss -tanmieOpH` in this namespace, `ss -tuanmieOpH`
here and `ss -tuanmieOH` (no -p) in every other namespace through nsenter (a shell loop: the floor of
collect.sh's way of reading them all),
and `collect.sh -n 1` (each of `--scripts`), alternately: medians of wall and CPU, the whole snapshot's
wall time, and its size (the namespaces' files alone too).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from collect_helpers import (
    COLLECT,
    LoopbackPairs,
    NetnsWorkloads,
    apparent_bytes,
    dir_usage_bytes,
)


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


SPLIT_SH = """{awk_cgroup}
{func}
lean=$1
GZIP_LEVEL=1
cg_mem=none
cg_v1=
cg_v2=
nscap=0
ss_split "$2"
"""


def split_script(collect: Path, work: Path) -> Path:
    """A sh script running collect.sh's own ss_split: `sh SCRIPT LEAN(0|1) DIR` (stdin -> stdout)."""
    text = collect.read_text()
    m = re.search(r"^ss_split\(\) \{\n.*?^\}\n", text, re.M | re.S)
    if m is None:
        raise SystemExit(f"{collect}: no ss_split() function found")
    # the awk functions it shares with other programs (collect.sh since the netns work)
    a = re.search(r"^AWK_CGROUP='\n.*?^\}'\n", text, re.M | re.S)
    path = work / "split.sh"
    path.write_text(SPLIT_SH.format(awk_cgroup=a.group(0) if a else "", func=m.group(0)))
    return path


def arrival(rounds: int) -> dict[str, float]:
    """Median ms after start at which ss -tuanmieOpH's bytes reach a pipe reader, and ss exits."""
    rows = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        p = subprocess.Popen(["ss", "-tuanmieOpH"], stdout=subprocess.PIPE, bufsize=0)
        assert p.stdout is not None
        marks: list[tuple[float, int]] = []
        n = 0
        while b := os.read(p.stdout.fileno(), 1 << 20):
            n += len(b)
            marks.append((time.perf_counter() - t0, n))
        p.wait(timeout=60)
        done = time.perf_counter() - t0
        p.stdout.close()
        row = {"first byte": marks[0][0]}
        for frac in (0.25, 0.5, 0.75, 1.0):
            row[f"{frac:.0%} of bytes"] = next(t for t, m in marks if m >= frac * n)
        row["ss exit"] = done
        rows.append(row)
    return {k: statistics.median(r[k] for r in rows) * 1000 for k in rows[0]}


def breakdown(n_pairs: int, rounds: int, work: Path, collect: Path) -> None:
    """Print where collect.sh's time goes at n_pairs connection pairs (see the module docstring)."""
    split = split_script(collect, work)
    snap = work / "snap"
    snap.mkdir()
    full, lean = work / "full.txt", work / "lean.txt"
    pipe_out = work / "pipe.gz"
    n_procs = max(1, -(-n_pairs // 2500))
    sh = ["sh", "-c"]
    on_ss = {
        "ss -tanmieOpH >/dev/null (baseline)": ["ss", "-tanmieOpH"],
        "ss -tuanmieOpH >/dev/null": ["ss", "-tuanmieOpH"],
        "ss -tuanmieOpH | cat >/dev/null": [*sh, "ss -tuanmieOpH | cat"],
        "ss -tuanmieOpH >file (same disk as the snapshots)": [
            *sh,
            f"ss -tuanmieOpH >{work}/raw.txt",
        ],
        "ss -tuanmieOpH | gzip -1 >file (full text, no awk)": [
            *sh,
            f"ss -tuanmieOpH | gzip -1 >{pipe_out}",
        ],
        "ss -tuanmieOpH | split awk (lean) >/dev/null": [
            *sh,
            f"ss -tuanmieOpH | sh {split} 1 {snap}",
        ],
        "ss -tuanmieOpH | split awk (lean) | gzip -1 >file": [
            *sh,
            f"ss -tuanmieOpH | sh {split} 1 {snap} | gzip -1 >{pipe_out}",
        ],
        "collect.sh -n 1 (whole snapshot)": [
            *sh,
            f"rm -rf {work}/c && sh {collect} -o {work}/c -n 1 -i 0 -m 4096 2>/dev/null",
        ],
    }
    offline = {
        "split awk (lean), saved text": ([*sh, f"sh {split} 1 {snap} <{full}"], full),
        "split awk (-f, no cut), saved text": ([*sh, f"sh {split} 0 {snap} <{full}"], full),
        "gzip -1, lean text": ([*sh, f"gzip -1 <{lean} >{pipe_out}"], lean),
        "gzip -1, full text": ([*sh, f"gzip -1 <{full} >{pipe_out}"], full),
    }
    with LoopbackPairs(n_pairs, n_procs=n_procs):
        sockets = count_sockets()
        with full.open("wb") as f:
            subprocess.run(["ss", "-tuanmieOpH"], stdout=f, check=True)
        with full.open("rb") as f, lean.open("wb") as g:
            subprocess.run(["sh", str(split), "1", str(snap)], stdin=f, stdout=g, check=True)
        cmds = dict(on_ss) | {k: c for k, (c, _) in offline.items()}
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
        for c in cmds.values():  # warm-up: page cache, dentries of /proc/*/fd
            timed(c)
        for _ in range(rounds):
            for k, c in cmds.items():
                runs[k].append(timed(c))
        arrive = arrival(rounds)
    base_w = statistics.median(w for w, _ in runs["ss -tanmieOpH >/dev/null (baseline)"])
    base_c = statistics.median(c for _, c in runs["ss -tanmieOpH >/dev/null (baseline)"])
    print(
        f"breakdown at {n_pairs} pairs ({sockets} sockets), {rounds} rounds alternating, medians; "
        f"ss text {full.stat().st_size / 1e6:.1f} MB full, {lean.stat().st_size / 1e6:.1f} MB lean"
    )
    print("| what | wall | CPU user+sys | wall / baseline | CPU / baseline | CPU MB/s |")
    print("|---|---|---|---|---|---|")
    med: dict[str, tuple[float, float]] = {}
    for k in cmds:
        w = statistics.median(x for x, _ in runs[k])
        c = statistics.median(x for _, x in runs[k])
        med[k] = (w, c)
        rate = ""
        if k in offline and c > 0:
            rate = f"{offline[k][1].stat().st_size / 1e6 / c:.0f}"
        label = k.replace("|", "\\|")
        print(
            f"| {label} | {w * 1000:.0f} ms | {c * 1000:.0f} ms | {w / base_w:.2f} | "
            f"{c / base_c:.2f} | {rate} |"
        )
    print("| ss -tuanmieOpH \\| reader: ms after start | " + " | ".join(arrive) + " |")
    print("|---|" + "---|" * len(arrive))
    print("| (median) | " + " | ".join(f"{v:.0f}" for v in arrive.values()) + " |")
    floor = (
        med["ss -tuanmieOpH >/dev/null"][1]
        + med["split awk (lean), saved text"][1]
        + med["gzip -1, lean text"][1]
    )
    print(
        f"CPU floor of the pipeline (ss -tu + split awk + gzip -1 on the lean text, no fixed "
        f"costs): {floor * 1000:.0f} ms = {floor / base_c:.2f}x the baseline's CPU"
    )


def bench_netns(n_ns: int, conns: int, rounds: int, work: Path, scripts: list[Path]) -> None:
    """collect.sh -n 1 with n_ns network namespaces of conns connection pairs each (see docstring)."""
    with NetnsWorkloads(n_ns, conns) as ns:
        pids = " ".join(str(h.pid) for h in ns.holders)
        loop = (
            f"ss -tuanmieOpH; for p in {pids}; do nsenter --net=/proc/$p/ns/net ss -tuanmieOH; "
            "done >/dev/null"
        )
        cmds: dict[str, list[str]] = {
            "ss -tanmieOpH >/dev/null (this namespace only)": ["ss", "-tanmieOpH"],
            f"ss -tuanmieOpH here + nsenter ss -tuanmieOH in each of the {n_ns} others": [
                "sh",
                "-c",
                loop,
            ],
        }
        for script in scripts:
            cmds[f"{script.name} -n 1 (whole snapshot)"] = [
                "sh",
                "-c",
                f"rm -rf {work}/c && sh {script} -o {work}/c -n 1 -i 0 -m 4096 2>/dev/null",
            ]
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
        for c in cmds.values():  # warm-up
            timed(c)
        sizes: dict[str, tuple[int, int, int]] = {}
        for _ in range(rounds):
            for k, c in cmds.items():
                runs[k].append(timed(c))
                if k.endswith("(whole snapshot)"):
                    (snap,) = [p for p in (work / "c").iterdir() if not p.name.startswith(".")]
                    ns_bytes = sum(p.stat().st_size for p in snap.glob("*.ns*.txt*"))
                    sizes[k] = (apparent_bytes(snap), dir_usage_bytes(snap), ns_bytes)
    base_w = statistics.median(w for w, _ in runs[next(iter(cmds))])
    base_c = statistics.median(c for _, c in runs[next(iter(cmds))])
    print(
        f"{n_ns} network namespaces x {conns} connection pairs, {rounds} rounds alternating, medians"
    )
    print(
        "| what | wall | CPU user+sys | wall / ss | CPU / ss | one snapshot: bytes / du / ns files |"
    )
    print("|---|---|---|---|---|---|")
    for k in cmds:
        w = statistics.median(x for x, _ in runs[k])
        c = statistics.median(x for _, x in runs[k])
        size = sizes.get(k)
        size_s = (
            ""
            if size is None
            else f"{size[0] / 1024:.0f} KiB / {size[1] / 1024:.0f} KiB / {size[2] / 1024:.0f} KiB"
        )
        print(
            f"| {k} | {w * 1000:.0f} ms | {c * 1000:.0f} ms | {w / base_w:.2f} | {c / base_c:.2f} "
            f"| {size_s} |",
            flush=True,
        )


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
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="where the time goes, at the first --pairs value (default 10000)",
    )
    ap.add_argument(
        "--netns",
        default="",
        help="NxC: N network namespaces of C connection pairs each (root only; e.g. 100x20)",
    )
    args = ap.parse_args()
    levels = args.levels.split(",")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.netns:
        n_ns, conns = (int(x) for x in args.netns.split("x"))
        print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
        print(f"kernel {os.uname().release}, load {os.getloadavg()[0]:.1f}")
        with tempfile.TemporaryDirectory(prefix="bench_collect_") as tmp:
            scripts = [Path(x) for x in args.scripts.split(",")]
            bench_netns(n_ns, conns, args.rounds, Path(tmp), scripts)
        return 0
    if args.breakdown:
        pairs = int(args.pairs.split(",")[0]) if args.pairs != "1000,10000" else 10000
        print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
        with tempfile.TemporaryDirectory(prefix="bench_collect_") as tmp:
            breakdown(pairs, args.rounds, Path(tmp), Path(args.scripts.split(",")[0]))
        return 0
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
