"""Ground-truth figures per snapshot from a workload's ``truth.json`` (what the tests compare with
and what data/README.md and the captures' README quote).

    python -m realserver.summary DIR/truth.json [--markdown]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

MiB = 1 << 20
SKMEM_KEYS = ("r", "t", "f", "w")  # the bytes a socket holds; rb/tb are limits, o/bl/d not bytes


def _port(addr: str) -> int | None:
    port = addr.rsplit(":", 1)[-1]
    return int(port) if port.isdigit() else None


def redis_row(t: dict[str, Any], slow_ports: set[int]) -> dict[str, Any]:
    """The figures of one ground-truth reading of the Redis workload (bytes unless named)."""
    socks = t["redis_sockets"]
    slow = [s for s in socks if _port(s["peer"]) in slow_ports]
    slow_w = [s["skmem"].get("w", 0) for s in slow]
    slow_tb = [s["skmem"].get("tb", 0) for s in slow]
    omem = {int(k): v for k, v in t["omem_by_peer_port"].items()}
    return {
        "redis_vmrss_bytes": t["redis_vmrss_bytes"],
        "used_memory_bytes": int(t["info_memory"]["used_memory"]),
        "omem_bytes": sum(omem.values()),
        "omem_slow_bytes": sum(v for k, v in omem.items() if k in slow_ports),
        "redis_sockets": len(socks),
        "redis_skmem_bytes": sum(s["skmem"].get(k, 0) for s in socks for k in SKMEM_KEYS),
        "redis_send_q_bytes": sum(s["send_q"] for s in socks),
        "slow_sockets": len(slow),
        "slow_w_median_bytes": int(statistics.median(slow_w)) if slow_w else 0,
        "slow_w_max_bytes": max(slow_w, default=0),
        "slow_tb_median_bytes": int(statistics.median(slow_tb)) if slow_tb else 0,
        "slow_at_limit": sum(
            1 for w, tb in zip(slow_w, slow_tb, strict=True) if tb and w >= 0.9 * tb
        ),
        "sockstat_tcp_mem_pages": t["sockstat_tcp"]["mem"],
    }


def nginx_row(t: dict[str, Any]) -> dict[str, Any]:
    procs = t["processes"]
    row: dict[str, Any] = {}
    for i, (pid, p) in enumerate(sorted(procs.items(), key=lambda kv: int(kv[0]))):
        label = "master" if p["role"] == "master" else f"worker{i}"
        row[f"{label}_pid"] = int(pid)
        row[f"{label}_established"] = p["established"]
        row[f"{label}_sockets"] = p["sockets"]
    row["skmem_bytes"] = sum(p["skmem_r_t_f_w_bytes"] for p in procs.values())
    row["stub_active"] = t["stub_status"]["active"]
    row["stub_waiting"] = t["stub_status"]["waiting"]
    return row


def rows(truth: dict[str, Any], which: str = "after") -> list[dict[str, Any]]:
    """One dict per snapshot (``name``, ``phase`` and the figures read ``which`` = before/after)."""
    out = []
    slow_ports = set(truth.get("slow_ports", []))
    for s in truth["snapshots"]:
        t = s[which]
        figs = redis_row(t, slow_ports) if "redis_sockets" in t else nginx_row(t)
        out.append({"snapshot": s["name"], "phase": s["phase"], **figs})
    return out


def markdown(truth: dict[str, Any]) -> str:
    table = rows(truth)
    if not table:
        return ""
    cols = list(table[0])

    def fmt(col: str, v: Any) -> str:
        if col.endswith("_bytes") and isinstance(v, int):
            return f"{v / MiB:.1f}" if v >= 10 * 1024 else f"{v / 1024:.1f}K"
        return str(v)

    head = "| " + " | ".join(c.replace("_bytes", " MiB") for c in cols) + " |"
    lines = [head, "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(c, r[c]) for c in cols) + " |" for r in table]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="realserver.summary")
    ap.add_argument("truth", type=Path)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    truth = json.loads(args.truth.read_text())
    if args.markdown:
        print(markdown(truth))
    else:
        for r in rows(truth):
            print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
