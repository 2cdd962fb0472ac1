"""Shared helpers for the analyses: snapshot index and phases, TCP socket selection, owner attribution,
per-snapshot sums, meminfo/sysctl/netstat pivots and SLUB alias resolution.

Everything here takes a ``Capture`` (docs/design.md §2) or its frames and returns frames; nothing here
prints or decides. No analysis reads ``Capture.sockets``/``Capture.owners`` (a large capture keeps
them on disk): the socket helpers (``tcp_sockets``, ``attributed_sockets``, ``snapshot_sums``) work on
one batch of socket rows, and :func:`socket_summary` runs them over every batch of
``Capture.socket_batches`` once per capture (``_summary``), keeping only the sums the analyses read.
Conventions shared by every analysis:

- ``buffer_bytes`` = ``skmem_r + skmem_w + skmem_f`` of a socket (bytes the socket has charged to the
  protocol's ``memory_allocated``, reference §1.1). A socket that prints no skmem (TIME-WAIT, SYN-RECV)
  has ``<NA>`` and adds nothing to a sum.
- A *connection* is a TCP socket in any state except LISTEN, TIME-WAIT, SYN-RECV (minisockets without
  buffers) and UNCONN/CLOSE.
- ``queued_bytes`` = ``recv_q + send_q`` over connections (payload bytes; a listener's Recv-Q/Send-Q is
  its accept queue and backlog, so listeners are left out).
- A socket held by several processes (a listener shared by forked workers) is attributed to the lowest
  pid among its owners; the other pids are listed in ``other_owners``. A socket with no owner (orphans,
  TIME-WAIT, other users' sockets when collected as non-root) is *unattributed*.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "NON_CONNECTION_STATES",
    "UNATTRIBUTED",
    "as_output",
    "attributed_sockets",
    "corr",
    "fmt_bytes",
    "meminfo_wide",
    "netstat_wide",
    "page_size_bytes",
    "per_snapshot_socket_sums",
    "resolve_cache",
    "slab_frame",
    "snapshot_sums",
    "snapshots",
    "socket_summary",
    "string_test",
    "sysctl_ints",
    "tcp_sockets",
]

NON_CONNECTION_STATES = frozenset({"LISTEN", "TIME-WAIT", "SYN-RECV", "UNCONN", "CLOSE", "CLOSED"})
UNATTRIBUTED = "(unattributed)"
MIB = float(1 << 20)
KIB = 1024.0


# --------------------------------------------------------------------------------------- formatting
def fmt_bytes(value: Any) -> str:
    """Human bytes for verdict text: ``12.3 MiB``, ``3.8 KiB``, ``512 B``; NA -> ``n/a``."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    v = float(value)
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v >= MIB:
        return f"{sign}{v / MIB:.1f} MiB"
    if v >= KIB:
        return f"{sign}{v / KIB:.1f} KiB"
    return f"{sign}{v:.0f} B"


def as_output(frame: pd.DataFrame, categories: Iterable[str] = ("host", "phase")) -> pd.DataFrame:
    """Final touch for result frames: repeated labels as ``category``, fresh index."""
    out = frame.reset_index(drop=True)
    for col in categories:
        if col in out.columns:
            out[col] = out[col].astype("string").astype("category")
    return out


def _num(x: Any) -> float:
    """A scalar as float, NA/None -> nan."""
    if x is None or x is pd.NA:
        return float("nan")
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def corr(a: pd.Series, b: pd.Series) -> float:
    """Pearson correlation of two aligned series, NaN when undefined (constant or < 3 points)."""
    x = pd.to_numeric(a, errors="coerce").astype("float64")
    y = pd.to_numeric(b, errors="coerce").astype("float64")
    ok = x.notna() & y.notna()
    x, y = x[ok].to_numpy(), y[ok].to_numpy()
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


# --------------------------------------------------------------------------------------- snapshots
def snapshots(cap: Any) -> pd.DataFrame:
    """One row per snapshot, sorted by time: ``ts``, ``host``, ``phase`` (string, NA without phases)."""
    meta = cap.meta
    if meta is not None and len(meta):
        out = meta[["ts", "host"]].copy()
        out["phase"] = (
            meta["phase"].astype("string")
            if "phase" in meta.columns
            else pd.Series(pd.NA, index=meta.index, dtype="string")
        )
    else:  # fall back to the snapshots sockstat saw
        st = cap.sockstat
        out = st[["ts", "host"]].copy()
        out["phase"] = pd.Series(pd.NA, index=st.index, dtype="string")
    out["host"] = out["host"].astype("string")
    return out.drop_duplicates("ts").sort_values("ts").reset_index(drop=True)


def _phase_of(frame: pd.DataFrame, snaps: pd.DataFrame) -> pd.DataFrame:
    """Add ``phase`` (and ``host`` if missing) by ``ts`` from ``snapshots()``."""
    cols = ["ts", "phase"] + ([] if "host" in frame.columns else ["host"])
    drop = [c for c in ("phase",) if c in frame.columns]
    return frame.drop(columns=drop).merge(snaps[cols], on="ts", how="left")


def page_size_bytes(cap: Any) -> int:
    """The capture's page size (from meta; never assumed)."""
    return int(cap.page_size_bytes)


# --------------------------------------------------------------------------------------- sockets
def string_test(column: pd.Series, test: Any) -> np.ndarray:
    """``test`` (a function of a string Series giving booleans) of each row's value as a string,
    False for NA; on a categorical column it runs once per category, not once per row."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        cats = pd.Series(column.cat.categories.astype("string"))
        per_cat = test(cats).fillna(False).to_numpy(dtype=bool)
        return np.append(per_cat, False)[column.cat.codes.to_numpy()]
    return test(column.astype("string")).fillna(False).to_numpy(dtype=bool)


# Per-batch building blocks: each takes socket rows (a batch of whole snapshots from
# ``Capture.socket_batches``, or any frame of socket rows) and never reads the capture's rows itself.
def tcp_sockets(sockets: pd.DataFrame) -> pd.DataFrame:
    """The TCP sockets (all states) of ``sockets`` (socket rows: a batch, or a whole frame), with
    ``buffer_bytes`` = r + w + f (NA if no skmem), ``state`` as string, ``is_connection``,
    ``recv_q_bytes``, ``send_q_bytes`` and ``queued_bytes`` (connections only, else 0)."""
    s = sockets
    if "netid" in s.columns and len(s):
        other = string_test(s["netid"], lambda n: ~n.str.startswith("tcp"))  # (NA: TCP)
        if other.any():
            s = s[~other]
    # A shallow copy: with pandas' copy-on-write (always on since 3.0) the columns added below never
    # reach the caller's frame.
    s = s.copy(deep=False)
    r, w, f = (s[c].astype("Int64") for c in ("skmem_r", "skmem_w", "skmem_f"))
    none = r.isna() & w.isna() & f.isna()
    buf = r.fillna(0) + w.fillna(0) + f.fillna(0)
    s["buffer_bytes"] = buf.mask(none)
    s["state"] = s["state"].astype("string")
    s["is_connection"] = ~s["state"].isin(list(NON_CONNECTION_STATES)).fillna(False).astype(bool)
    # Recv-Q/Send-Q are payload bytes only on connections: on a listener they count connections.
    s["recv_q_bytes"] = s["recv_q"].astype("Int64").fillna(0).where(s["is_connection"], 0)
    s["send_q_bytes"] = s["send_q"].astype("Int64").fillna(0).where(s["is_connection"], 0)
    s["queued_bytes"] = (s["recv_q_bytes"] + s["send_q_bytes"]).astype("Int64")
    return s


def attributed_sockets(sockets: pd.DataFrame, owners: pd.DataFrame | None) -> pd.DataFrame:
    """``sockets`` (from :func:`tcp_sockets`) with their primary owner from ``owners`` (the owners
    rows of those sockets, or more): ``pid`` (Int64, NA = unattributed), ``comm`` (string,
    ``(unattributed)`` when no owner), ``other_owners`` (string: the other pids, space-separated, NA
    if none). Rule: the lowest pid among the socket's owners counts the socket."""
    s, own = sockets, owners
    if own is None or not len(own):
        prim = pd.DataFrame(
            {
                "sock_id": pd.Series([], dtype="int64"),
                "pid": pd.Series([], dtype="Int64"),
                "comm": pd.Series([], dtype="string"),
                "other_owners": pd.Series([], dtype="string"),
            }
        )
    else:
        o = own[["sock_id", "pid", "comm"]].dropna(subset=["pid"]).copy()
        o["pid"] = o["pid"].astype("int64")
        o = o.drop_duplicates(["sock_id", "pid"]).sort_values(["sock_id", "pid"])
        first = o.drop_duplicates("sock_id", keep="first")
        rest = o[o.duplicated("sock_id", keep="first")]
        others = rest.groupby("sock_id")["pid"].agg(lambda p: " ".join(str(int(v)) for v in p))
        prim = first[["sock_id", "pid", "comm"]].copy()
        prim["other_owners"] = prim["sock_id"].map(others).astype("string")
        prim["pid"] = prim["pid"].astype("Int64")
        prim["comm"] = prim["comm"].astype("string")
    out = s.drop(columns=[c for c in ("pid", "comm", "other_owners") if c in s.columns]).merge(
        prim, on="sock_id", how="left"
    )
    out["comm"] = out["comm"].astype("string").fillna(UNATTRIBUTED)
    out.loc[out["pid"].isna(), "comm"] = UNATTRIBUTED
    return out


# Output column -> socket column, summed per group by both the per-snapshot and per-process views.
SKMEM_SUMS: dict[str, str] = {
    "buffer_bytes": "buffer_bytes",
    "skmem_r_bytes": "skmem_r",
    "skmem_w_bytes": "skmem_w",
    "skmem_f_bytes": "skmem_f",
    "skmem_t_bytes": "skmem_t",
    "rcvbuf_limit_bytes": "skmem_rb",
    "sndbuf_limit_bytes": "skmem_tb",
    "queued_bytes": "queued_bytes",
}
#: The columns of :func:`per_snapshot_socket_sums` besides ts, host, phase.
SNAPSHOT_SUMS = (
    "tcp_sockets",
    "connections",
    "listeners",
    *SKMEM_SUMS,
    "recv_q_bytes",
    "send_q_bytes",
    "max_f_bytes",
    "sockets_without_skmem",
)


def skmem_sums(grouped: Any) -> dict[str, pd.Series]:
    """The memory sums of :data:`SKMEM_SUMS` for a ``DataFrameGroupBy`` of socket rows (Int64; the
    ``UInt32`` socket columns sum into ``UInt64``, which does not mix with signed columns)."""
    return {out: grouped[col].sum().astype("Int64") for out, col in SKMEM_SUMS.items()}


def snapshot_sums(s: pd.DataFrame) -> pd.DataFrame:
    """Per ``ts`` of ``s`` (from :func:`tcp_sockets`; only the snapshots it has rows of): the
    :data:`SNAPSHOT_SUMS` columns, index ``ts``."""
    g = s.assign(
        one=1,
        conn=s["is_connection"].astype("int64"),
        lis=(s["state"] == "LISTEN").fillna(False).astype("int64"),
        noskmem=s["buffer_bytes"].isna().astype("int64"),
    ).groupby("ts")
    return pd.DataFrame(
        {
            "tcp_sockets": g["one"].sum(),
            "connections": g["conn"].sum(),
            "listeners": g["lis"].sum(),
            **skmem_sums(g),
            "recv_q_bytes": g["recv_q_bytes"].sum(),
            "send_q_bytes": g["send_q_bytes"].sum(),
            "max_f_bytes": g["skmem_f"].max(),
            "sockets_without_skmem": g["noskmem"].sum(),
        }
    )


def per_snapshot_socket_sums(cap: Any, sockets: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per snapshot (every snapshot, 0 when it had no TCP socket): ``tcp_sockets``, ``connections``,
    ``listeners``, ``buffer_bytes``, ``skmem_{r,w,f,t}_bytes``, ``rcvbuf_limit_bytes``,
    ``sndbuf_limit_bytes``, ``queued_bytes`` (= ``recv_q_bytes`` + ``send_q_bytes``, connections
    only), ``max_f_bytes`` (the largest ``f`` of any socket), ``sockets_without_skmem``.

    From the capture's one pass over its socket rows (:func:`socket_summary`), or from ``sockets``
    (rows of :func:`tcp_sockets`) when given."""
    if sockets is None:
        sums = socket_summary(cap).per_snapshot[list(SNAPSHOT_SUMS)]
    else:
        sums = snapshot_sums(sockets)
    out = snapshots(cap).merge(sums.reset_index(), on="ts", how="left")
    for c in SNAPSHOT_SUMS:
        out[c] = out[c].astype("Int64").fillna(0)
    return out


def socket_summary(cap: Any) -> Any:
    """The capture's socket rows summed in one pass (``_summary.SocketSummary``, memoized)."""
    from tcpmemlib.analysis._summary import socket_summary as summary

    return summary(cap)


# --------------------------------------------------------------------------------------- pivots
def meminfo_wide(cap: Any) -> pd.DataFrame:
    """``ts`` + one Int64 column per meminfo field (bytes when the source said kB)."""
    m = cap.meminfo
    snaps = snapshots(cap)[["ts"]]
    if m is None or not len(m):
        return snaps
    w = m.assign(field=m["field"].astype("string")).pivot_table(
        index="ts", columns="field", values="value", aggfunc="first", observed=True
    )
    w.columns = [str(c) for c in w.columns]
    w = w.astype("Int64").reset_index()
    return snaps.merge(w, on="ts", how="left")


def sysctl_ints(cap: Any, name: str) -> pd.Series:
    """Per ``ts``: the integers of sysctl ``name`` (a list; empty when the snapshot lacks it)."""
    sc = cap.sysctl
    snaps = snapshots(cap)
    vals: dict[Any, list[int]] = {ts: [] for ts in snaps["ts"]}
    if sc is not None and len(sc):
        rows = sc[sc["name"].astype("string") == name]
        for ts, value in zip(rows["ts"], rows["value"], strict=True):
            try:
                vals[ts] = [int(v) for v in str(value).split()]
            except ValueError:
                vals[ts] = []
    return pd.Series(vals, name=name)


def netstat_wide(cap: Any, counters: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """``ts`` + one Int64 column ``<group><counter>`` per requested (group, counter) pair (NA when the
    kernel does not print it)."""
    ns = cap.netstat
    out = snapshots(cap)[["ts"]].copy()
    wanted = list(counters)
    if ns is None or not len(ns):
        for grp, ctr in wanted:
            out[grp + ctr] = pd.Series(pd.NA, index=out.index, dtype="Int64")
        return out
    key = ns["group"].astype("string") + ns["counter"].astype("string")
    for grp, ctr in wanted:
        rows = ns[key == grp + ctr].drop_duplicates("ts")
        out = out.merge(
            rows[["ts", "value"]].rename(columns={"value": grp + ctr}), on="ts", how="left"
        )
        out[grp + ctr] = out[grp + ctr].astype("Int64")
    return out


# --------------------------------------------------------------------------------------- slab
def slab_frame(cap: Any) -> pd.DataFrame | None:
    """The slab frame, or None when the capture has no slabinfo (collected as non-root)."""
    sl = getattr(cap, "slab", None)
    if sl is None or not len(sl):
        return None
    out = sl.copy()
    out["name"] = out["name"].astype("string")
    return out


def resolve_cache(cap: Any, cache: str, slab_names: set[str]) -> tuple[str | None, list[str]]:
    """Where ``cache``'s objects are counted in slabinfo, with SLUB merging.

    Returns ``(shown_as, merged_with)``: ``shown_as`` is the slabinfo row name holding the cache's
    objects (None when no row holds them), ``merged_with`` the other cache names sharing that merged
    cache (empty when the cache is not merged).
    """
    al = getattr(cap, "slab_aliases", None)
    if al is None or not len(al):
        return (cache if cache in slab_names else None), []
    al = al.drop_duplicates(["cache"])
    row = al[al["cache"].astype("string") == cache]
    if not len(row):
        if cache not in slab_names:
            return None, []
        # not a symlink: a cache of its own, unless other caches are merged into it
        merged = al[al["shown_as"].astype("string") == cache]["cache"].astype("string").tolist()
        return cache, sorted(c for c in merged if c != cache)
    target = str(row["target"].iloc[0])
    shown = row["shown_as"].iloc[0]
    same = al[al["target"].astype("string") == target]["cache"].astype("string").tolist()
    merged = sorted(c for c in same if c != cache)
    if shown is pd.NA or shown is None or str(shown) not in slab_names:
        shown = next((c for c in sorted(same) if c in slab_names), None)
    return (None if shown is None else str(shown)), merged
