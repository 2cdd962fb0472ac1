"""One pass over a capture's socket rows, summed into the small frames every analysis reads.

A day of snapshots is ~17M socket rows: more than an analysis may hold. So no analysis reads
``Capture.sockets``/``Capture.owners``; :func:`socket_summary` reads the rows once, a batch of whole
snapshots at a time (``Capture.socket_batches``), sums each batch with the building blocks of
``_frames`` (``tcp_sockets``, ``attributed_sockets``, ``snapshot_sums``) and keeps only sums per
snapshot, per (snapshot, process) and value counts. The result is memoized on the capture
(``Capture.memo``), so where_is_it, by_process, reconcile, idle_cost, growth, compare and the plots'
views share that one pass.

Batches hold whole snapshots, so every per-snapshot figure comes from one batch; the only figure
that spans two snapshots, growth's socket traffic, carries the previous batch's last snapshot over
the batch boundary (:func:`traffic_deltas`).

``SocketSummary`` fields (all TCP sockets unless said otherwise; a snapshot without TCP sockets has
no row in the per-snapshot frames):

| field | one row per | columns |
|---|---|---|
| ``per_snapshot`` | snapshot (index ``ts``) | ``_frames.SNAPSHOT_SUMS``, ``full_sockets`` (not TIME-WAIT/SYN-RECV), ``backlog_bytes`` (Σ skmem_bl), ``connections_with_buffer`` (r+w+f ≥ a page) |
| ``traffic_bytes`` | snapshot of ``snapshots(cap)`` (index ``ts``) | Σ over sockets also in the snapshot just before of Δ(bytes_received + bytes_acked), clipped at 0 (float) |
| ``by_process`` | (snapshot, primary pid; -1 = unattributed) | ``ts``, ``key_pid``, ``comm``, ``sockets``, ``_frames.SKMEM_SUMS``, ``shared_sockets``, ``other_owners`` |
| ``owner_pids`` | (snapshot, pid owning a TCP socket) | ``ts``, ``pid`` (Int64; every owner, not only the primary) |
| ``limits`` | (primary comm, limit, value) over connections | ``comm``, ``limit`` (``rcvbuf``/``sndbuf``), ``value`` (Float64 rb/tb, NA kept), ``count`` |
| ``owner_comms`` | (phase, comm of any owner) over sockets of any protocol not LISTEN/TIME-WAIT/SYN-RECV | ``phase`` (``(all)`` without one), ``comm``, ``rows``, ``snapshots``, ``first_ts``, ``max_r``, ``max_w`` |
| ``owner_comm_limits`` | (phase, comm, column, value) of the same sockets | ``phase``, ``comm``, ``column`` (``skmem_rb``/``skmem_tb``), ``value``, ``count`` |

Scalars: ``tcp_rows`` (TCP socket rows), ``owner_rows`` (owners rows of any protocol),
``full_sockets``, ``ipv6_sockets`` (full sockets with a ``:`` in the local address),
``connected_sockets`` (connections whose local port no listener of their snapshot has: connect()-ed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tcpmemlib.analysis import _frames as F
from tcpmemlib.errors import TcpmemError

__all__ = [
    "SUMMARY_COLUMNS",
    "TRAFFIC_KEY",
    "KeyIds",
    "SocketSummary",
    "median_max",
    "process_sums",
    "socket_summary",
    "traffic_deltas",
    "traffic_rows",
]

#: The socket columns the pass reads (ts, host, sock_id come always).
SUMMARY_COLUMNS = (
    "netid",
    "state",
    "recv_q",
    "send_q",
    "local_address",
    "local_port",
    "peer_address",
    "peer_port",
    "sk",
    "skmem_r",
    "skmem_rb",
    "skmem_t",
    "skmem_tb",
    "skmem_f",
    "skmem_w",
    "skmem_bl",
    "bytes_acked",
    "bytes_received",
)
#: What names a socket from one snapshot to the next (growth's traffic).
TRAFFIC_KEY = ["sk", "local_address", "local_port", "peer_address", "peer_port"]
# what process_sums and the limits' value counts read of the attributed sockets
_ATTRIBUTED_COLUMNS = ["ts", "sock_id", "is_connection", *dict.fromkeys(F.SKMEM_SUMS.values())]
OWNER_LIMIT_COLUMNS = ("skmem_rb", "skmem_tb")
NOT_OWNER_CONNECTION = ["LISTEN", "TIME-WAIT", "SYN-RECV"]
NO_PHASE = "(all)"
# dtypes of the columns read, for a capture with no socket row at all (no batch to take them from)
_EMPTY_SOCKETS = {
    "ts": "datetime64[ns, UTC]",
    "host": "category",
    "sock_id": "int64",
    "netid": "category",
    "state": "category",
    **{c: "UInt32" for c in ("recv_q", "send_q")},
    **{c: "category" for c in ("local_address", "local_port", "peer_address", "peer_port", "sk")},
    **{c: "UInt32" for c in SUMMARY_COLUMNS if c.startswith("skmem_")},
    "bytes_acked": "Int64",
    "bytes_received": "Int64",
}
_EMPTY_OWNERS = {
    "ts": "datetime64[ns, UTC]",
    "host": "category",
    "sock_id": "int64",
    "pid": "UInt32",
    "comm": "category",
    "fd": "UInt32",
}


@dataclass(frozen=True)
class SocketSummary:
    """The sums of one pass over a capture's socket rows (schemas in the module doc)."""

    per_snapshot: pd.DataFrame
    traffic_bytes: pd.Series
    by_process: pd.DataFrame
    owner_pids: pd.DataFrame
    limits: pd.DataFrame
    owner_comms: pd.DataFrame
    owner_comm_limits: pd.DataFrame
    tcp_rows: int
    owner_rows: int
    full_sockets: int
    ipv6_sockets: int
    connected_sockets: int


def socket_summary(cap: Any) -> SocketSummary:
    """The capture's :class:`SocketSummary`: one pass over ``cap.socket_batches``, memoized."""
    return cap.memo("analysis.socket_summary", lambda: _summarize(cap))


def _summarize(cap: Any) -> SocketSummary:
    snaps = F.snapshots(cap)
    try:
        page: int | None = int(cap.page_size_bytes)
    except (TcpmemError, ValueError):  # no page size: growth (the only user) raises on its own
        page = None
    acc = _Pass(snaps, page)
    for sockets, owners in cap.socket_batches(SUMMARY_COLUMNS, owners=True):
        acc.add(sockets, owners)
    return acc.result()


# ------------------------------------------------------------------------------- building blocks
def _concat(parts: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    """Concatenate the non-empty ``parts`` (``empty`` when there are none)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty
    return parts[0] if len(parts) == 1 else pd.concat(parts)


def process_sums(a: pd.DataFrame) -> pd.DataFrame:
    """Per (``ts``, ``key_pid``) of attributed sockets ``a`` (``_frames.attributed_sockets``; key_pid
    -1 for unattributed): ``comm``, ``sockets``, the ``SKMEM_SUMS``, ``shared_sockets``,
    ``other_owners`` (the other pids holding any of these sockets, sorted, NA if none)."""
    a = a.assign(
        one=1,
        shared=a["other_owners"].notna().astype("int64"),
        key_pid=a["pid"].fillna(-1).astype("int64"),
    )
    g = a.groupby(["ts", "key_pid"], sort=True)
    agg = pd.DataFrame(
        {
            "comm": g["comm"].first(),
            "sockets": g["one"].sum(),
            **F.skmem_sums(g),
            "shared_sockets": g["shared"].sum(),
        }
    )
    shared = a[a["shared"] == 1]
    others = pd.Series(pd.NA, index=agg.index, dtype=object)
    if len(shared):  # (a join per group with shared sockets only: most groups have none)
        joined = shared.groupby(["ts", "key_pid"], sort=True)["other_owners"].agg(
            lambda v: " ".join(sorted({p for x in v for p in str(x).split()}, key=int)) or pd.NA
        )
        others.loc[joined.index] = joined.to_numpy()
    agg["other_owners"] = others
    return agg.reset_index()


class KeyIds:
    """Integer ids for the strings of the ``TRAFFIC_KEY`` columns, the same in every batch (a
    batch's categories are its own): a socket is matched across batches by ids, not by rows of
    strings. NA counts as the empty string."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {"": 0}

    def __call__(self, column: pd.Series) -> np.ndarray:
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        table = np.fromiter(
            (self.ids.setdefault(str(u), len(self.ids)) for u in uniques),
            dtype=np.int64,
            count=len(uniques),
        )
        return np.append(table, 0)[codes]  # code -1 (NA): the last entry, 0 = ""


def traffic_rows(s: pd.DataFrame, order: pd.Index, ids: KeyIds | None = None) -> pd.DataFrame:
    """One row per (snapshot of ``order``, socket) of ``s`` (socket rows with the ``TRAFFIC_KEY``
    columns, bytes_received and bytes_acked): the key as ids (``ids``, shared by every batch of a
    pass), ``snap`` (position in ``order``) and ``total`` (bytes_received + bytes_acked, NA as 0).
    Rows of other snapshots are dropped."""
    ids = ids if ids is not None else KeyIds()
    d = pd.DataFrame({c: ids(s[c]) for c in TRAFFIC_KEY})
    d["snap"] = order.get_indexer(s["ts"])
    total = s["bytes_received"].astype("Int64").fillna(0) + s["bytes_acked"].astype("Int64").fillna(
        0
    )
    d["total"] = total.to_numpy(dtype="int64")
    d = d[d["snap"] >= 0].drop_duplicates(["snap", *TRAFFIC_KEY])
    return d.reset_index(drop=True)


def traffic_deltas(
    rows: pd.DataFrame, snapshots: int, carry: pd.DataFrame | None = None
) -> tuple[np.ndarray, pd.DataFrame | None]:
    """Per snapshot (``snapshots`` of them): Σ over the sockets of ``rows`` (:func:`traffic_rows`)
    that were also in the snapshot just before of total − total there, clipped at 0 (a counter that
    went back is a new socket).

    ``carry``: the rows of the previous batch's last snapshot, so a pair across the batch boundary
    counts; returns the sums and the carry for the next batch."""
    if carry is not None and len(carry):
        rows = pd.concat([carry, rows], ignore_index=True)
    per_snap = np.zeros(snapshots, dtype=np.float64)
    if not len(rows):
        return per_snap, carry
    # A socket's rows sorted by snapshot; a row whose socket was also in the snapshot just before
    # counts total - total there (clipped at 0), summed per snapshot.
    sock = rows.groupby(TRAFFIC_KEY, sort=False, dropna=False).ngroup().to_numpy()
    snap = rows["snap"].to_numpy()
    total = rows["total"].to_numpy(dtype="int64")
    by = np.lexsort((snap, sock))
    sock, snap_s, total = sock[by], snap[by], total[by]
    pair = np.zeros(len(by), dtype=bool)
    pair[1:] = (sock[1:] == sock[:-1]) & (snap_s[1:] == snap_s[:-1] + 1)
    delta = np.zeros(len(by), dtype=np.int64)
    delta[1:] = np.clip(total[1:] - total[:-1], 0, None)
    per_snap += np.bincount(snap_s[pair], weights=delta[pair], minlength=snapshots)
    last = rows[snap == snap.max()].reset_index(drop=True)
    return per_snap, last


def median_max(values: pd.Series, counts: pd.Series) -> tuple[float, float]:
    """Median and maximum of the multiset ``values`` × ``counts`` (NA values left out; NaN when
    nothing is left): the median of the rows those counts stand for, as pandas computes it."""
    v = pd.to_numeric(values, errors="coerce").astype("Float64")
    ok = v.notna().to_numpy(dtype=bool)
    vals = v.to_numpy(dtype="float64", na_value=np.nan)[ok]
    cnt = np.asarray(counts, dtype=np.int64)[ok]
    keep = cnt > 0
    vals, cnt = vals[keep], cnt[keep]
    if not len(vals):
        return float("nan"), float("nan")
    order = np.argsort(vals, kind="stable")
    vals, cum = vals[order], np.cumsum(cnt[order])
    n = int(cum[-1])

    def at(k: int) -> float:  # the k-th smallest row (0-based)
        return float(vals[np.searchsorted(cum, k, side="right")])

    med = at(n // 2) if n % 2 else (at(n // 2 - 1) + at(n // 2)) / 2
    return med, float(vals[-1])


# ------------------------------------------------------------------------------- the pass
class _Pass:
    """Accumulates the sums of one batch after another (see the module doc)."""

    def __init__(self, snaps: pd.DataFrame, page: int | None) -> None:
        self.snaps = snaps
        self.order = pd.Index(snaps["ts"])
        self.phase_of = pd.Series(
            snaps["phase"].astype("string").to_numpy(), index=self.order
        ).fillna(NO_PHASE)
        self.page = page
        self.per_snapshot: list[pd.DataFrame] = []
        self.processes: list[pd.DataFrame] = []
        self.pids: list[pd.DataFrame] = []
        self.limits: list[pd.DataFrame] = []
        self.comms: list[pd.DataFrame] = []
        self.comm_limits: list[pd.DataFrame] = []
        self.traffic = np.zeros(len(snaps), dtype=np.float64)
        self.carry: pd.DataFrame | None = None
        self.key_ids = KeyIds()
        self.counts = dict.fromkeys(
            ("tcp_rows", "owner_rows", "full_sockets", "ipv6_sockets", "connected_sockets"), 0
        )
        self.batches = 0

    def add(self, sockets: pd.DataFrame, owners: pd.DataFrame | None) -> None:
        self.batches += 1
        owners = owners if owners is not None else _empty(_EMPTY_OWNERS)
        self.counts["owner_rows"] += len(owners)
        self._owner_comms(sockets, owners)
        s = F.tcp_sockets(sockets)
        self.counts["tcp_rows"] += len(s)
        self._snapshot(s)
        tr = traffic_rows(s, self.order, self.key_ids)
        part, self.carry = traffic_deltas(tr, len(self.order), self.carry)
        self.traffic += part
        a = F.attributed_sockets(s[_ATTRIBUTED_COLUMNS], owners)
        self.processes.append(process_sums(a))
        conns = a[a["is_connection"]]
        for name, col in (("rcvbuf", "skmem_rb"), ("sndbuf", "skmem_tb")):
            vc = (
                pd.DataFrame({"comm": conns["comm"], "value": conns[col].astype("Float64")})
                .groupby(["comm", "value"], dropna=False)
                .size()
                .rename("count")
                .reset_index()
            )
            self.limits.append(vc.assign(limit=name))
        if len(owners):
            pids = owners[owners["sock_id"].isin(s["sock_id"])][["ts", "pid"]]
            pids = pids.dropna().drop_duplicates()
            self.pids.append(pids.assign(pid=pids["pid"].astype("Int64")))

    def _snapshot(self, s: pd.DataFrame) -> None:
        full = ~s["state"].isin(["TIME-WAIT", "SYN-RECV"]).fillna(False).astype(bool)
        page = self.page if self.page is not None else 0
        holding = s["is_connection"] & (s["buffer_bytes"] >= page).fillna(False).astype(bool)
        g = s.assign(full=full.astype("int64"), holding=holding.astype("int64")).groupby("ts")
        sums = F.snapshot_sums(s)
        sums["full_sockets"] = g["full"].sum()
        sums["backlog_bytes"] = g["skmem_bl"].sum()
        sums["connections_with_buffer"] = g["holding"].sum()
        self.per_snapshot.append(sums)
        # idle_cost's shares: IPv6 and connect()-ed among full sockets
        f = s[full]
        self.counts["full_sockets"] += len(f)
        v6 = F.string_test(f["local_address"], lambda a: a.str.contains(":", regex=False))
        self.counts["ipv6_sockets"] += int(v6.sum())
        # connect()-ed: a connection whose (snapshot, local port) no listener has (NA port = NA)
        port = pd.factorize(f["local_port"], use_na_sentinel=True)[0].astype(np.int64)
        key = f["ts"].to_numpy(dtype="datetime64[ns]").view(np.int64)
        pairs = pd.MultiIndex.from_arrays([key, port])
        listening = pairs[(f["state"] == "LISTEN").fillna(False).to_numpy(dtype=bool)]
        conns = pairs[f["is_connection"].to_numpy(dtype=bool)]
        self.counts["connected_sockets"] += int((~conns.isin(listening)).sum())

    def _owner_comms(self, sockets: pd.DataFrame, owners: pd.DataFrame) -> None:
        """plots.owner_limits_by_phase: sockets by the name of any owner, per phase."""
        if not len(owners):
            return
        listener = F.string_test(sockets["state"], lambda st: st.isin(NOT_OWNER_CONNECTION))
        s = sockets[~listener]
        s = s[["sock_id", "ts", "skmem_r", "skmem_w", *OWNER_LIMIT_COLUMNS]]
        o = pd.DataFrame({"sock_id": owners["sock_id"].to_numpy(), "comm": owners["comm"]})
        o = o.dropna(subset=["comm"]).drop_duplicates()
        rows = o.merge(s, on="sock_id", how="inner")
        if not len(rows):
            return
        at = self.order.get_indexer(rows["ts"])
        rows["phase"] = np.append(self.phase_of.to_numpy(dtype=object), NO_PHASE)[at]
        g = rows.groupby(["phase", "comm"], observed=True)
        snaps = rows.drop_duplicates(["phase", "comm", "ts"]).groupby(
            ["phase", "comm"], observed=True
        )
        self.comms.append(
            _string_keys(
                pd.DataFrame(
                    {
                        "rows": g.size(),
                        "snapshots": snaps.size(),
                        "first_ts": g["ts"].min(),
                        "max_r": g["skmem_r"].max(),
                        "max_w": g["skmem_w"].max(),
                    }
                ).reset_index()
            )
        )
        for col in OWNER_LIMIT_COLUMNS:
            vc = rows.groupby(["phase", "comm", col], observed=True).size()
            vc = _string_keys(vc.rename("count").reset_index())
            self.comm_limits.append(vc.rename(columns={col: "value"}).assign(column=col))

    def result(self) -> SocketSummary:
        if not self.batches:  # no socket row at all: the frames of an empty batch
            self.add(_empty(_EMPTY_SOCKETS), _empty(_EMPTY_OWNERS))
        per_snapshot = _concat(self.per_snapshot, self.per_snapshot[0])
        traffic = pd.Series(self.traffic, index=self.order, name="traffic_bytes")
        by_process = _concat(self.processes, self.processes[0]).reset_index(drop=True)
        pids = _concat(
            self.pids,
            pd.DataFrame(
                {
                    "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
                    "pid": pd.Series([], dtype="Int64"),
                }
            ),
        ).reset_index(drop=True)
        limits = _sum_counts(self.limits, ["comm", "limit", "value"], self.limits[0])
        comms = _concat(self.comms, _empty_comms())
        if len(self.comms) > 1:
            g = comms.groupby(["phase", "comm"], sort=False)
            comms = pd.DataFrame(
                {
                    "rows": g["rows"].sum(),
                    "snapshots": g["snapshots"].sum(),
                    "first_ts": g["first_ts"].min(),
                    "max_r": g["max_r"].max(),
                    "max_w": g["max_w"].max(),
                }
            )
        comms = comms.reset_index(drop=len(self.comms) <= 1)
        comm_limits = _sum_counts(
            self.comm_limits,
            ["phase", "comm", "column", "value"],
            pd.DataFrame(
                {
                    "phase": pd.Series([], dtype="string"),
                    "comm": pd.Series([], dtype="string"),
                    "value": pd.Series([], dtype="UInt32"),
                    "count": pd.Series([], dtype="int64"),
                    "column": pd.Series([], dtype="string"),
                }
            ),
        )
        return SocketSummary(
            per_snapshot=per_snapshot,
            traffic_bytes=traffic,
            by_process=by_process,
            owner_pids=pids,
            limits=limits,
            owner_comms=comms,
            owner_comm_limits=comm_limits,
            **self.counts,
        )


def _sum_counts(
    parts: list[pd.DataFrame], keys: Sequence[str], empty: pd.DataFrame
) -> pd.DataFrame:
    """Value counts of several batches as one: ``count`` summed per ``keys`` (NA values kept)."""
    frame = _concat(parts, empty)
    if len([p for p in parts if len(p)]) <= 1:
        return frame.reset_index(drop=True)
    summed = frame.groupby(list(keys), dropna=False, sort=False)["count"].sum()
    return summed.reset_index()


def _string_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """``phase`` and ``comm`` as strings (a batch's categories are its own)."""
    return frame.astype({"phase": "string", "comm": "string"})


def _empty(dtypes: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in dtypes.items()})


def _empty_comms() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "phase": pd.Series([], dtype="string"),
            "comm": pd.Series([], dtype="string"),
            "rows": pd.Series([], dtype="int64"),
            "snapshots": pd.Series([], dtype="int64"),
            "first_ts": pd.Series([], dtype="datetime64[ns, UTC]"),
            "max_r": pd.Series([], dtype="UInt32"),
            "max_w": pd.Series([], dtype="UInt32"),
        }
    )
