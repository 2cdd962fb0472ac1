"""Q2: which process holds the TCP buffer memory?

``by_process(capture) -> pandas.DataFrame``, one row per (snapshot, process that owns TCP sockets),
plus one ``(unattributed)`` row per snapshot (always present, 0 when every socket has an owner).

Attribution rule: a socket held by several processes (a listener or connection shared by forked
workers) is counted once, for the **lowest pid** among its owners; the other owners' pids are listed in
``other_owners`` and the number of such sockets in ``shared_sockets``. Sockets with no owning process
(orphans with unsent data, TIME-WAIT, sockets of other users when collected as non-root, a process that
exited between ``ss`` and ``ps``) go to the ``(unattributed)`` row, so per snapshot
Σ over rows of ``buffer_bytes`` == Σ over all TCP sockets of r + w + f.

| column | dtype | unit | meaning |
|---|---|---|---|
| ts, host, phase | | | snapshot |
| pid | Int64 | | the process (NA for ``(unattributed)``) |
| comm | string | | process name as ss printed it (``(unattributed)`` for the no-owner row) |
| sockets | Int64 | sockets | TCP sockets counted for this process (every state) |
| connections | Int64 | sockets | those of them that are connections (not LISTEN/TIME-WAIT/SYN-RECV) |
| buffer_bytes | Int64 | bytes | Σ r + w + f: memory charged for these sockets' queues |
| skmem_r_bytes, skmem_w_bytes, skmem_f_bytes, skmem_t_bytes | Int64 | bytes | Σ of each skmem field |
| rcvbuf_limit_bytes, sndbuf_limit_bytes | Int64 | bytes | Σ rb and Σ tb: **limits** (ceilings), not allocations |
| queued_bytes | Int64 | bytes | Σ Recv-Q + Send-Q payload over connections |
| rss_bytes | Int64 | bytes | the process's RSS from ps (NA if it exited before ps ran) |
| cgroup | string | | the process's cgroup (v2 path, or v1 memory path) |
| cgroup_sock_bytes | Int64 | bytes | that cgroup's v2 ``memory.stat sock`` (whole cgroup, not just this process), else v1 ``kmem.tcp.usage_in_bytes``; NA when not collected |
| other_owners | string | | other pids (space-separated) that also hold sockets counted here |
| shared_sockets | Int64 | sockets | sockets counted here that other processes also hold |
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from tcpmemlib.analysis.common import MIB, as_output, snapshots
from tcpmemlib.analysis.socket_rows import UNATTRIBUTED
from tcpmemlib.analysis.summary import socket_summary
from tcpmemlib.analysis.verdict import Verdict

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture

__all__ = ["COLUMNS", "by_process", "top_process"]

COLUMNS: dict[str, str] = {
    "ts": "datetime64[ns, UTC]",
    "host": "string",
    "phase": "string",
    "pid": "Int64",
    "comm": "string",
    "sockets": "Int64",
    "connections": "Int64",
    "buffer_bytes": "Int64",
    "skmem_r_bytes": "Int64",
    "skmem_w_bytes": "Int64",
    "skmem_f_bytes": "Int64",
    "skmem_t_bytes": "Int64",
    "rcvbuf_limit_bytes": "Int64",
    "sndbuf_limit_bytes": "Int64",
    "queued_bytes": "Int64",
    "rss_bytes": "Int64",
    "cgroup": "string",
    "cgroup_sock_bytes": "Int64",
    "other_owners": "string",
    "shared_sockets": "Int64",
}


def _cgroup_values(cap: Capture) -> tuple[pd.DataFrame, pd.DataFrame]:
    pc = getattr(cap, "proc_cgroups", None)
    cg = getattr(cap, "cgroups", None)
    if pc is None or not len(pc):
        pcf = pd.DataFrame(
            {
                "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
                "pid": pd.Series([], dtype="Int64"),
                "cgroup": pd.Series([], dtype="string"),
            }
        )
    else:
        pcf = pc[["ts", "pid", "cgroup"]].drop_duplicates(["ts", "pid"]).copy()
        pcf["pid"] = pcf["pid"].astype("Int64")
        pcf["cgroup"] = pcf["cgroup"].astype("string")
    empty = pd.DataFrame(
        {
            "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
            "cgroup": pd.Series([], dtype="string"),
            "cgroup_sock_bytes": pd.Series([], dtype="Int64"),
        }
    )
    if cg is None or not len(cg):
        return pcf, empty
    key = cg["key"].astype("string")
    v2 = cg[key == "sock"]
    v1 = cg[key == "kmem.tcp.usage_in_bytes"]
    rows = pd.concat(
        [v2, v1[~v1.set_index(["ts", "cgroup"]).index.isin(v2.set_index(["ts", "cgroup"]).index)]]
    )
    vals = rows.drop_duplicates(["ts", "cgroup"])[["ts", "cgroup", "value_bytes"]]
    vals = vals.rename(columns={"value_bytes": "cgroup_sock_bytes"})
    vals["cgroup"] = vals["cgroup"].astype("string")
    vals["cgroup_sock_bytes"] = vals["cgroup_sock_bytes"].astype("Int64")
    return pcf, vals


def by_process(capture: Capture) -> pd.DataFrame:
    """Per snapshot and process: sockets, buffer bytes, limits, RSS, cgroup (schema in module doc)."""
    cap = capture
    snaps = snapshots(cap)
    agg = socket_summary(cap).by_process.copy()
    # the (unattributed) row exists in every snapshot, even when empty
    present = set(zip(agg["ts"], agg["key_pid"], strict=True))
    missing = [ts for ts in snaps["ts"] if (ts, -1) not in present]
    if missing:
        zero = pd.DataFrame({"ts": missing, "key_pid": -1, "comm": UNATTRIBUTED})
        for c in agg.columns:
            if c not in zero.columns:
                zero[c] = 0 if c not in ("other_owners",) else pd.NA
        agg = pd.concat([agg, zero[agg.columns]], ignore_index=True)
    agg["pid"] = agg["key_pid"].astype("Int64").mask(agg["key_pid"] == -1)
    agg = agg.drop(columns="key_pid")
    agg = agg.merge(snaps, on="ts", how="left")
    procs = cap.processes
    if procs is not None and len(procs):
        rss = procs[["ts", "pid", "rss_bytes"]].drop_duplicates(["ts", "pid"]).copy()
        rss["pid"] = rss["pid"].astype("Int64")
        agg = agg.merge(rss, on=["ts", "pid"], how="left")
    else:
        agg["rss_bytes"] = pd.NA
    pcf, vals = _cgroup_values(cap)
    agg = agg.merge(pcf, on=["ts", "pid"], how="left")
    agg = agg.merge(vals, on=["ts", "cgroup"], how="left")
    out = agg.astype({c: t for c, t in COLUMNS.items() if c not in ("ts",)})[list(COLUMNS)]
    out["_u"] = out["pid"].isna()
    out = out.sort_values(["ts", "_u", "buffer_bytes", "pid"], ascending=[True, True, False, True])
    return as_output(out.drop(columns="_u"))


def top_process(rows: pd.DataFrame) -> Verdict:
    """Name the process that held the most buffer memory in ``rows`` (one snapshot of
    :func:`by_process`, e.g. the peak). Label ``top process``; the text quotes its share of what all
    processes held. The process name is plain text: whatever displays it must escape it."""
    named = rows[rows["pid"].notna()]
    values = pd.to_numeric(named["buffer_bytes"], errors="coerce").astype("float64")
    if not len(named) or not values.max() > 0:
        return Verdict("top process", "No process held TCP buffer memory in this capture.", {})
    top = named.loc[values.idxmax()]
    held = float(values.max())
    total = float(pd.to_numeric(rows["buffer_bytes"], errors="coerce").astype("float64").sum())
    text = (
        f"At the peak, process {top['comm']} (pid {int(top['pid'])}) held {held / MIB:.1f} MiB "
        f"of socket buffers in {int(top['sockets'])} sockets, {held / total:.0%} of the "
        f"{total / MIB:.1f} MiB all processes held; its RSS does not include it."
    )
    figures = {
        "pid": float(top["pid"]),
        "buffer_bytes": held,
        "sockets": float(top["sockets"]),
        "total_buffer_bytes": total,
    }
    return Verdict("top process", text, figures)
