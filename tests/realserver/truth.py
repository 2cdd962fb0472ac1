"""Ground-truth readers, independent of tcpmemlib: ``ss -tanmp`` lines, /proc RSS, Redis
``CLIENT LIST`` and ``INFO``, /proc/net/sockstat, nginx ``stub_status``."""

from __future__ import annotations

import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from realserver.resp import Resp

SKMEM_RE = re.compile(r"skmem:\(([^)]*)\)")
USER_RE = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=(\d+)\)')
SKMEM_KEY_RE = re.compile(r"([a-z]+)(\d+)")


def ss_tcp() -> list[dict[str, Any]]:
    """Every TCP socket of the current network namespace, one ``ss -HtanmpO`` run: state, queues,
    addresses, skmem fields (``r rb t tb f w o bl d``, bytes) and owners ``[(comm, pid, fd)]``."""
    out = subprocess.run(
        ["ss", "-HtanmpO"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    rows = []
    for line in out.splitlines():
        words = line.split()
        if len(words) < 5:
            continue
        m = SKMEM_RE.search(line)
        skmem = {k: int(v) for k, v in SKMEM_KEY_RE.findall(m.group(1))} if m else {}
        owners = [(c, int(p), int(f)) for c, p, f in USER_RE.findall(line)]
        rows.append(
            {
                "state": words[0],
                "recv_q": int(words[1]),
                "send_q": int(words[2]),
                "local": words[3],
                "peer": words[4],
                "skmem": skmem,
                "owners": owners,
            }
        )
    return rows


def owned_by(rows: list[dict[str, Any]], pids: set[int]) -> list[dict[str, Any]]:
    return [r for r in rows if any(p in pids for _, p, _ in r["owners"])]


def skmem_sum(rows: list[dict[str, Any]], keys: tuple[str, ...] = ("r", "t", "f", "w")) -> int:
    return sum(r["skmem"].get(k, 0) for r in rows for k in keys)


def vm_rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` from /proc/PID/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


def sockstat_tcp() -> dict[str, int]:
    """The TCP line of /proc/net/sockstat (``mem`` in pages)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            w = line.split()[1:]
            return {w[i]: int(w[i + 1]) for i in range(0, len(w) - 1, 2)}
    raise RuntimeError("/proc/net/sockstat has no TCP line")


def client_list(r: Resp) -> list[dict[str, str]]:
    """Redis ``CLIENT LIST``: one dict per client (``id addr laddr name omem tot-mem ...``)."""
    text = r.call("CLIENT", "LIST")
    clients = []
    for line in text.splitlines():
        fields = {}
        for word in line.split(" "):
            key, _, value = word.partition("=")
            fields[key] = value
        clients.append(fields)
    return clients


def info(r: Resp, section: str) -> dict[str, str]:
    """Redis ``INFO section`` as a dict of strings."""
    text = r.call("INFO", section)
    return dict(
        line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#")
    )


def stub_status(port: int, path: str = "/nginx_status") -> dict[str, int]:
    """nginx ``stub_status``: active, accepts, handled, requests, reading, writing, waiting."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        text = resp.read().decode()
    nums = [int(x) for x in re.findall(r"\d+", text)]
    keys = ("active", "accepts", "handled", "requests", "reading", "writing", "waiting")
    if len(nums) != len(keys):
        raise RuntimeError(f"stub_status: unexpected text {text!r}")
    return dict(zip(keys, nums, strict=True))
