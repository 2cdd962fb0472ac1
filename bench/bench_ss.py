"""read_ss throughput on real `ss -tanmieOpH` output, vs a naive per-line regex parser and vs jc.

    .venv/bin/python bench/bench_ss.py [--pairs 1000] [--lines 1000000] [--repeat 3] [--baseline REV]

1. Opens ``--pairs`` loopback connection pairs (2 sockets each, 4096 bytes unread on each server
   socket, the listener shared with a forked worker) and runs the real ``ss -tanmieOpH`` (and
   ``ss -tuanmieOp`` with header and Netid, the form jc reads) filtered to the workload's port.
2. Replicates the output to about ``--lines`` socket lines and times ``read_ss`` on it (best of
   ``--repeat``), then the naive parser and jc on a slice of the same text, in this same process.
3. With ``--baseline REV``: also times ``read_ss`` as it was at git revision ``REV`` (its
   ``ss.py`` and ``_ss_fast.py``, loaded from ``git show``) on the same text, alternating with the
   current one, and checks that both give the same frame.
Prints lines/s for each and the ratios, plus what each one extracts.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import subprocess
import sys
import time
import types
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tcpmemlib.parsers.ss import read_ss  # noqa: E402

_HEAD = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s*(.*)$")
_KV = re.compile(r"(\w+):(\S+)")
_SKMEM = re.compile(r"skmem:\(([^)]*)\)")
_SKPART = re.compile(r"([a-z]+)(\d+)")
_USERS = re.compile(r'\("([^"]*)",pid=(\d+),fd=(\d+)\)')
_WANT = {"ino", "uid", "rcv_space", "rcv_ssthresh", "notsent", "bytes_sent", "bytes_acked"}
_WANT |= {"bytes_received", "snd_wnd", "rcv_wnd", "cwnd", "mss", "advmss", "rcvmss", "rtt"}


def naive_parse(text: str) -> pd.DataFrame:
    """The baseline: what a per-line regex loop looks like (no Netid, -O lines only)."""
    rows = []
    for line in text.splitlines():
        m = _HEAD.match(line)
        if m is None:
            continue
        state, rq, sq, local, peer, rest = m.groups()
        row: dict[str, object] = {
            "state": state,
            "recv_q": int(rq),
            "send_q": int(sq),
            "local": local,
            "peer": peer,
        }
        sk = _SKMEM.search(rest)
        if sk:
            for key, val in _SKPART.findall(sk.group(1)):
                row["skmem_" + key] = int(val)
        for key, val in _KV.findall(rest):
            if key in _WANT and key not in row:
                row[key] = val
        row["owners"] = tuple((c, int(p), int(f)) for c, p, f in _USERS.findall(rest))
        rows.append(row)
    return pd.DataFrame(rows)


def _load_workload():
    path = ROOT / "tests" / "fixtures" / "ss" / "workload.py"
    spec = importlib.util.spec_from_file_location("ss_workload", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ss_workload"] = mod
    spec.loader.exec_module(mod)
    return mod


def capture(pairs: int) -> tuple[str, str]:
    wl = _load_workload()
    with wl.Loopback(max_life_s=300) as lb:
        lst = lb.listener()
        port = lst.getsockname()[1]
        lb.hold([lst])
        lb.pairs(lst, pairs, unread=4096)
        filt = f"sport = :{port} or dport = :{port}"
        one = wl.run_ss("-tanmieOpH", filt)
        with_header = wl.run_ss("-tuanmieOp", filt)
    return one, with_header


def load_baseline(rev: str):
    """``read_ss`` of git revision ``rev`` (its ss.py and _ss_fast.py; the rest as now)."""
    mods = {}
    for name in ("_ss_fast", "ss"):
        src = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:tcpmemlib/parsers/{name}.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        mod = types.ModuleType(f"baseline_{name}")
        sys.modules[mod.__name__] = mod  # (dataclasses look the module up)
        exec(compile(src, f"{rev}:tcpmemlib/parsers/{name}.py", "exec"), mod.__dict__)
        mods[name] = mod
    mods["ss"]._ss_fast = mods["_ss_fast"]
    return mods["ss"].read_ss


def timed(repeat: int, fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds, result) of the fastest of ``repeat`` runs."""
    best, cpu_best, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if wall < best:
            best, cpu_best = wall, cpu
    return best, cpu_best, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--naive-lines", type=int, default=100_000)
    ap.add_argument("--jc-lines", type=int, default=20_000)
    ap.add_argument("--baseline", help="git revision whose read_ss to time on the same text")
    args = ap.parse_args()

    one, with_header = capture(args.pairs)
    base_lines = one.count("\n")
    reps = max(1, args.lines // base_lines)
    text = one * reps
    n_lines = base_lines * reps
    mb = len(text.encode()) / 1e6
    print(f"ss: {subprocess.run(['ss', '-V'], capture_output=True, text=True).stdout.strip()}")
    print(f"kernel {platform.release()}, python {platform.python_version()}")
    print(f"input: {base_lines} real socket lines x {reps} = {n_lines:,} lines, {mb:,.0f} MB")

    base_rows = []
    if args.baseline:
        old_read_ss = load_baseline(args.baseline)
        # same values; dtypes may differ (the u32 fields became UInt32 after 5bd0963)
        pd.testing.assert_frame_equal(old_read_ss(one), read_ss(one), check_dtype=False)
        runs: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
        for _ in range(args.repeat):  # alternating, so both see the same load
            for key, fn in (("old", old_read_ss), ("new", read_ss)):
                t0, c0 = time.perf_counter(), time.process_time()
                fn(text)
                runs[key].append((time.perf_counter() - t0, time.process_time() - c0))
        for key, label in (("old", f"read_ss at {args.baseline}"), ("new", "read_ss (this tree)")):
            walls = sorted(w for w, _ in runs[key])
            cpu = min(c for _, c in runs[key])
            base_rows.append(
                (label, n_lines / walls[0], n_lines / walls[len(walls) // 2], n_lines / cpu)
            )

    t_fast, c_fast, df = timed(args.repeat, lambda: read_ss(text))
    assert isinstance(df, pd.DataFrame) and len(df) == n_lines, len(df)  # type: ignore[arg-type]
    fast_rate = n_lines / t_fast

    n_naive = min(n_lines, max(base_lines, args.naive_lines // base_lines * base_lines))
    naive_text = one * (n_naive // base_lines)
    t_naive, c_naive, ndf = timed(1, lambda: naive_parse(naive_text))
    assert len(ndf) == n_naive  # type: ignore[arg-type]
    naive_rate = n_naive / t_naive

    # read_ss on the same slice, for a same-size comparison
    t_fast_small, c_fast_small, _ = timed(args.repeat, lambda: read_ss(naive_text))
    fast_small_rate = n_naive / t_fast_small

    jc_rate = None
    try:
        import jc  # type: ignore[import-untyped]

        head, *body = with_header.splitlines()
        jc_reps = max(1, args.jc_lines // max(1, len(body)))
        jc_text = "\n".join([head] + body * jc_reps) + "\n"
        n_jc = len(body) * jc_reps
        t_jc, c_jc, jres = timed(1, lambda: jc.parse("ss", jc_text, quiet=True))
        assert len(jres) == n_jc, (len(jres), n_jc)  # type: ignore[arg-type]
        jc_rate = n_jc / t_jc
        t_fast_jc, c_fast_jc, _ = timed(args.repeat, lambda: read_ss(jc_text))
        fast_jc_rate = n_jc / t_fast_jc
    except ImportError:
        print("jc not installed: skipped")

    print()
    print(f"load average during the run: {os.getloadavg()[0]:.2f} (2 CPUs)")
    print(
        "| parser | input | lines | wall lines/s | lines per CPU-second | read_ss speed-up (wall) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    print(
        f"| read_ss | `-tanmieOpH` | {n_lines:,} | {fast_rate:,.0f} | {n_lines / c_fast:,.0f} | |"
    )
    print(
        f"| read_ss | `-tanmieOpH` | {n_naive:,} | {fast_small_rate:,.0f} | "
        f"{n_naive / c_fast_small:,.0f} | |"
    )
    print(
        f"| naive per-line regex | `-tanmieOpH` | {n_naive:,} | {naive_rate:,.0f} | "
        f"{n_naive / c_naive:,.0f} | {fast_small_rate / naive_rate:.1f}x |"
    )
    if jc_rate is not None:
        print(
            f"| read_ss | `-tuanmieOp` (header, Netid) | {n_jc:,} | {fast_jc_rate:,.0f} | "
            f"{n_jc / c_fast_jc:,.0f} | |"
        )
        print(
            f"| jc.parse('ss') | `-tuanmieOp` (header, Netid) | {n_jc:,} | {jc_rate:,.0f} | "
            f"{n_jc / c_jc:,.0f} | {fast_jc_rate / jc_rate:.1f}x |"
        )
    if base_rows:
        print()
        print(
            "| read_ss | lines | wall lines/s (best) | wall lines/s (median) | lines per CPU-s (best) |"
        )
        print("|---|---:|---:|---:|---:|")
        for label, best, med, cpu in base_rows:
            print(f"| {label} | {n_lines:,} | {best:,.0f} | {med:,.0f} | {cpu:,.0f} |")
        (_, ob, om, oc), (_, nb, nm, nc) = base_rows
        print(f"speed-up: {nb / ob:.2f}x wall (best), {nm / om:.2f}x (median), {nc / oc:.2f}x CPU")
    print()
    print(
        "read_ss: every column of docs/design.md (queues, addresses, owners, inode/uid/sk/cgroup,"
    )
    print("  timer, 9 skmem fields, 13 -i fields, unparsed), typed, NA where not printed.")
    print("naive: state, queues, raw address tokens, skmem fields, 15 -i keys as strings, owners.")
    print("jc: netid, state, queues, addresses, ports, pid/fd, timer, inode, cookie, cgroup,")
    print("  v6only; no skmem, no -i fields (it needs the header and the Netid column).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
