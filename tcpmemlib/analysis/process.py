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

from tcpmemlib.analysis.common import MIB, as_output, fmt_bytes, snapshots
from tcpmemlib.analysis.socket_rows import UNATTRIBUTED
from tcpmemlib.analysis.summary import socket_summary
from tcpmemlib.analysis.verdict import Verdict

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture

__all__ = ["BUFFERS_NEGLIGIBLE_BYTES", "COLUMNS", "busiest_snapshot", "by_process", "top_process"]

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


#: Below this much socket buffer memory in every snapshot, the moment to show is the one with the
#: most connections (buffers ~0: who holds the connections is the story).
BUFFERS_NEGLIGIBLE_BYTES = 1 << 20


def busiest_snapshot(rows: pd.DataFrame) -> tuple[pd.Timestamp | None, str]:
    """The snapshot a per-process page should show, from :func:`by_process` rows, and why: the one
    where socket buffers peaked, or, when no snapshot held :data:`BUFFERS_NEGLIGIBLE_BYTES`, the
    one with the most connections (on an idle server every buffer is 0, and the first snapshot is
    often taken before any client connected). ``(None, reason)`` without rows."""
    if not len(rows):
        return None, "the capture has no snapshot"
    per = rows.groupby("ts")[["buffer_bytes", "connections"]].sum()
    buffers = pd.to_numeric(per["buffer_bytes"], errors="coerce").astype("float64")
    if buffers.max() >= BUFFERS_NEGLIGIBLE_BYTES:
        ts = buffers.idxmax()
        return ts, f"the snapshot where socket buffers peaked ({fmt_bytes(buffers.max())})"
    conns = pd.to_numeric(per["connections"], errors="coerce").astype("float64")
    ts = conns.idxmax()
    return ts, (
        f"the snapshot with the most connections ({conns.max():.0f}): no snapshot held "
        f"{fmt_bytes(BUFFERS_NEGLIGIBLE_BYTES)} of socket buffers (at most "
        f"{fmt_bytes(buffers.max())})"
    )


def _holders(named: pd.DataFrame, n: int = 3) -> str:
    """``comm (pid N) C connections`` of the ``n`` processes holding the most connections."""
    conns = pd.to_numeric(named["connections"], errors="coerce").astype("float64")
    top = named.assign(_c=conns).sort_values("_c", ascending=False, kind="stable").head(n)
    return ", ".join(
        f"{r['comm']} (pid {int(r['pid'])}) {int(r['_c'])}"
        for _, r in top.iterrows()
        if r["_c"] > 0
    )


def top_process(rows: pd.DataFrame) -> Verdict:
    """Name who holds the memory and who holds the connections in ``rows`` (one snapshot of
    :func:`by_process`, e.g. :func:`busiest_snapshot`'s). Label ``top process``; the text quotes the
    top holder's share of the buffer bytes, and the processes holding the most connections. The
    process names are plain text: whatever displays them must escape them."""
    named = rows[rows["pid"].notna()]
    values = pd.to_numeric(named["buffer_bytes"], errors="coerce").astype("float64")
    conns = (
        pd.to_numeric(rows["connections"], errors="coerce").astype("float64")
        if "connections" in rows
        else pd.Series(dtype="float64")
    )
    total_conns = float(conns.sum()) if "connections" in rows else float("nan")
    holders = _holders(named) if "connections" in named and len(named) else ""
    figures: dict[str, float] = {"connections": total_conns}
    if not len(named) or not values.max() > 0:
        text = "No process held TCP buffer memory in this snapshot"
        text += f"; its {total_conns:.0f} connections are held by {holders}." if holders else "."
        return Verdict("top process", text, figures)
    top = named.loc[values.idxmax()]
    held = float(values.max())
    total = float(pd.to_numeric(rows["buffer_bytes"], errors="coerce").astype("float64").sum())
    text = (
        f"Process {top['comm']} (pid {int(top['pid'])}) held {held / MIB:.1f} MiB "
        f"of socket buffers in {int(top['sockets'])} sockets, {held / total:.0%} of the "
        f"{total / MIB:.1f} MiB all processes held; its RSS does not include it."
    )
    if holders:
        text += f" Most connections: {holders} (of {total_conns:.0f})."
    figures.update(
        pid=float(top["pid"]),
        buffer_bytes=held,
        sockets=float(top["sockets"]),
        total_buffer_bytes=total,
    )
    return Verdict("top process", text, figures)
