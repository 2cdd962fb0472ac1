"""The connections that held socket buffer memory, followed across snapshots.

A socket is named by its inode (``ss -e`` ``ino:``) and its addresses, so the same connection is one
row however many snapshots it held memory in. Built a batch at a time inside the summary pass
(:func:`held_rows` per batch, :func:`combine` at the end); only connections holding at least a page
of r + w + f in some snapshot are kept, so idle connections cost nothing here.

``COLUMNS`` (one row per connection, largest ``max_buffer_bytes`` first):

| column | unit | meaning |
|---|---|---|
| inode | | the socket's inode (0 for an orphan: then the addresses alone name it) |
| local_address, local_port, peer_address, peer_port | | the connection's ends |
| state | | its TCP state in the snapshot where it held the most |
| pid, comm | | its owner (the lowest pid among its owners; NA / ``(unattributed)`` when none) |
| snapshots_held | snapshots | snapshots in which it held at least a page |
| first_ts, last_ts | | the first and last of those snapshots |
| max_buffer_bytes | bytes | the most r + w + f it held in one snapshot |
| mean_buffer_bytes | bytes | its mean r + w + f over the snapshots it held memory in |
| max_w_bytes, max_r_bytes | bytes | the most w (send) and r (receive) it held |
| max_send_q_bytes, max_recv_q_bytes | bytes | the most payload it had queued |
| sndbuf_limit_bytes, rcvbuf_limit_bytes | bytes | its tb / rb in the snapshot where it held the most |
| snapshots_at_limit | snapshots | snapshots in which w ≥ AT_LIMIT × tb or r ≥ AT_LIMIT × rb (with w or r > 0) |
"""

from __future__ import annotations

import pandas as pd

from tcpmemlib.analysis.socket_rows import attributed_sockets

__all__ = ["COLUMNS", "KEY", "combine", "held_rows"]

#: What names a connection across snapshots.
KEY = ["inode", "local_address", "local_port", "peer_address", "peer_port"]
COLUMNS: dict[str, str] = {
    "inode": "Int64",
    "local_address": "string",
    "local_port": "string",
    "peer_address": "string",
    "peer_port": "string",
    "state": "string",
    "pid": "Int64",
    "comm": "string",
    "snapshots_held": "Int64",
    "first_ts": "datetime64[ns, UTC]",
    "last_ts": "datetime64[ns, UTC]",
    "max_buffer_bytes": "Int64",
    "mean_buffer_bytes": "Float64",
    "max_w_bytes": "Int64",
    "max_r_bytes": "Int64",
    "max_send_q_bytes": "Int64",
    "max_recv_q_bytes": "Int64",
    "sndbuf_limit_bytes": "Int64",
    "rcvbuf_limit_bytes": "Int64",
    "snapshots_at_limit": "Int64",
}


def _empty() -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series([], dtype=t) for c, t in COLUMNS.items()})
    out["sum_buffer_bytes"] = pd.Series([], dtype="float64")
    return out


def held_rows(
    sockets: pd.DataFrame, owners: pd.DataFrame | None, page_bytes: int, at_limit: float
) -> pd.DataFrame:
    """One row per connection of ``sockets`` (rows of ``socket_rows.tcp_sockets``, one batch) that
    held at least ``page_bytes`` (at least 1 byte) of r + w + f in some snapshot of the batch: the
    :data:`COLUMNS` over the batch's snapshots, plus ``sum_buffer_bytes`` for :func:`combine`."""
    s = sockets
    floor = max(int(page_bytes), 1)
    held = s[s["is_connection"] & (s["buffer_bytes"] >= floor).fillna(False).astype(bool)]
    if not len(held):
        return _empty()
    cols = [
        "ts",
        "sock_id",
        "state",
        "buffer_bytes",
        "skmem_w",
        "skmem_r",
        "skmem_tb",
        "skmem_rb",
        "recv_q_bytes",
        "send_q_bytes",
        "is_connection",
        *KEY,
    ]
    h = held[cols].copy()
    for c in KEY[1:]:
        h[c] = h[c].astype("string").fillna("")
    h["inode"] = h["inode"].astype("Int64").fillna(0)
    mine = owners[owners["sock_id"].isin(h["sock_id"])] if owners is not None else None
    h = attributed_sockets(h, mine)
    w, r = h["skmem_w"].astype("float64"), h["skmem_r"].astype("float64")
    full = ((w > 0) & (w >= at_limit * h["skmem_tb"].astype("float64"))) | (
        (r > 0) & (r >= at_limit * h["skmem_rb"].astype("float64"))
    )
    h["at_limit"] = full.astype("int64")
    h["buffer_bytes"] = h["buffer_bytes"].astype("int64")
    return _aggregate(
        h.rename(
            columns={
                "skmem_w": "max_w_bytes",
                "skmem_r": "max_r_bytes",
                "send_q_bytes": "max_send_q_bytes",
                "recv_q_bytes": "max_recv_q_bytes",
                "skmem_tb": "sndbuf_limit_bytes",
                "skmem_rb": "rcvbuf_limit_bytes",
            }
        ).assign(
            snapshots_held=1,
            first_ts=h["ts"],
            last_ts=h["ts"],
            max_buffer_bytes=h["buffer_bytes"],
            sum_buffer_bytes=h["buffer_bytes"].astype("float64"),
            snapshots_at_limit=h["at_limit"],
        )
    )


def _aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows (per snapshot, or partial rows of several batches) -> one row per connection."""
    # the descriptive columns come from the row where the connection held the most
    top = rows.sort_values("max_buffer_bytes", ascending=False, kind="stable")
    g = top.groupby(KEY, sort=False, dropna=False)
    out = g[["state", "pid", "comm", "sndbuf_limit_bytes", "rcvbuf_limit_bytes"]].first()
    out["snapshots_held"] = g["snapshots_held"].sum()
    out["first_ts"] = g["first_ts"].min()
    out["last_ts"] = g["last_ts"].max()
    for c in ("max_buffer_bytes", "max_w_bytes", "max_r_bytes", "max_send_q_bytes"):
        out[c] = g[c].max()
    out["max_recv_q_bytes"] = g["max_recv_q_bytes"].max()
    out["sum_buffer_bytes"] = g["sum_buffer_bytes"].sum()
    out["snapshots_at_limit"] = g["snapshots_at_limit"].sum()
    out = out.reset_index()
    out["mean_buffer_bytes"] = out["sum_buffer_bytes"] / out["snapshots_held"]
    out = out.astype(COLUMNS)
    return out[[*COLUMNS, "sum_buffer_bytes"]]


def combine(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The batches' :func:`held_rows` as one frame of :data:`COLUMNS`, largest holder first."""
    parts = [p for p in parts if len(p)]
    if not parts:
        out = _empty()
    elif len(parts) == 1:
        out = parts[0]
    else:
        out = _aggregate(pd.concat(parts, ignore_index=True))
    out = out.sort_values(
        ["max_buffer_bytes", "snapshots_held"], ascending=False, kind="stable"
    ).reset_index(drop=True)
    return out[list(COLUMNS)]
