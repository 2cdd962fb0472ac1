"""One pass over a capture's socket rows, summed into the small frames every analysis reads.

A day of snapshots is ~17M socket rows: more than an analysis may hold. So no analysis reads
``Capture.sockets``/``Capture.owners``; :func:`socket_summary` reads the rows once, a batch of whole
snapshots at a time (``Capture.socket_batches``), sums each batch with the building blocks of
``socket_rows`` (``tcp_sockets``, ``attributed_sockets``, ``snapshot_sums``) and keeps only sums per
snapshot, per (snapshot, process) and value counts. The result is memoized on the capture
(``Capture.memo``), so where_is_it, by_process, reconcile, idle_cost, growth, compare and the plots'
views share that one pass.

Batches hold whole snapshots, so every per-snapshot figure comes from one batch; the only figure
that spans two snapshots, growth's socket traffic, carries the previous batch's last snapshot over
the batch boundary (``traffic.traffic_deltas``).

``SocketSummary`` fields (all TCP sockets unless said otherwise; a snapshot without TCP sockets has
no row in the per-snapshot frames):

| field | one row per | columns |
|---|---|---|
| ``per_snapshot`` | snapshot (index ``ts``) | ``socket_rows.SNAPSHOT_SUMS``, ``full_sockets`` (not TIME-WAIT/SYN-RECV), ``backlog_bytes`` (Σ skmem_bl), ``connections_with_buffer`` (r+w+f ≥ a page), and the per-connection distribution :data:`DISTRIBUTION_COLUMNS` |
| ``held_sockets`` | connection that held at least a page of r+w+f in some snapshot | ``held_sockets.COLUMNS``: how much, how long, its peer and its owner |
| ``traffic_bytes`` | snapshot of ``snapshots(cap)`` (index ``ts``) | Σ over sockets also in the snapshot just before of Δ(bytes_received + bytes_acked), clipped at 0 (float) |
| ``by_process`` | (snapshot, primary pid; -1 = unattributed) | ``ts``, ``key_pid``, ``comm``, ``sockets``, ``connections``, ``socket_rows.SKMEM_SUMS``, ``shared_sockets``, ``other_owners`` |
| ``owner_pids`` | (snapshot, pid owning a TCP socket) | ``ts``, ``pid`` (Int64; every owner, not only the primary) |
| ``limits`` | (primary comm, limit, value) over connections | ``comm``, ``limit`` (``rcvbuf``/``sndbuf``), ``value`` (Float64 rb/tb, NA kept), ``count`` |
| ``owner_comms`` | (phase, comm of any owner) over sockets of any protocol not LISTEN/TIME-WAIT/SYN-RECV | ``phase`` (``(all)`` without one), ``comm``, ``rows``, ``snapshots``, ``first_ts``, ``max_r``, ``max_w`` |
| ``owner_comm_limits`` | (phase, comm, column, value) of the same sockets | ``phase``, ``comm``, ``column`` (``skmem_rb``/``skmem_tb``), ``value``, ``count`` |

Scalars: ``tcp_rows`` (TCP socket rows), ``owner_rows`` (owners rows of any protocol),
``full_sockets``, ``ipv6_sockets`` (full sockets with a ``:`` in the local address),
``connected_sockets`` (connections whose local port no listener of their snapshot has: connect()-ed).

The per-connection distribution per snapshot (:data:`DISTRIBUTION_COLUMNS`, over connections that
print skmem): ``socket_{w,r}_{p50,p99,max}_bytes`` (quantiles of w and r over the snapshot's
connections), ``socket_buffer_max_bytes`` (the largest r+w+f of one socket: "max per connection"),
``holding_buffer_p50_bytes`` (median r+w+f of the connections holding at least a page; NA when none
does), ``sending_connections`` (connections with w ≥ a page: data not yet sent or acked) with
their median w and tb (``sending_w_p50_bytes``, ``sending_tb_p50_bytes``), ``receiving_connections``
(r ≥ a page: data not yet read) with their median r and rb (``receiving_r_p50_bytes``,
``receiving_rb_p50_bytes``),
``at_sndbuf_limit`` (connections with w > 0 and w ≥ :data:`AT_LIMIT` × tb: a sender blocked on a
full send buffer) and ``at_rcvbuf_limit`` (r > 0 and r ≥ :data:`AT_LIMIT` × rb: a receive queue
full up to its limit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tcpmemlib.analysis import held_sockets
from tcpmemlib.analysis import socket_rows as R
from tcpmemlib.analysis.common import snapshots
from tcpmemlib.analysis.traffic import KeyIds, traffic_deltas, traffic_rows
from tcpmemlib.errors import TcpmemError

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture

__all__ = [
    "AT_LIMIT",
    "DISTRIBUTION_COLUMNS",
    "SUMMARY_COLUMNS",
    "SocketSummary",
    "median_max",
    "per_snapshot_socket_sums",
    "process_sums",
    "socket_summary",
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
    "inode",
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
# what process_sums and the limits' value counts read of the attributed sockets
_ATTRIBUTED_COLUMNS = ["ts", "sock_id", "is_connection", *dict.fromkeys(R.SKMEM_SUMS.values())]
OWNER_LIMIT_COLUMNS = ("skmem_rb", "skmem_tb")
NOT_OWNER_CONNECTION = ["LISTEN", "TIME-WAIT", "SYN-RECV"]
NO_PHASE = "(all)"
#: A connection is at its limit when w (r) is at least this share of tb (rb).
AT_LIMIT = 0.9
#: The per-connection distribution columns of ``per_snapshot`` (module doc).
DISTRIBUTION_COLUMNS = (
    "socket_w_p50_bytes",
    "socket_w_p99_bytes",
    "socket_w_max_bytes",
    "socket_r_p50_bytes",
    "socket_r_p99_bytes",
    "socket_r_max_bytes",
    "socket_buffer_max_bytes",
    "holding_buffer_p50_bytes",
    "sending_connections",
    "sending_w_p50_bytes",
    "sending_tb_p50_bytes",
    "receiving_connections",
    "receiving_r_p50_bytes",
    "receiving_rb_p50_bytes",
    "at_sndbuf_limit",
    "at_rcvbuf_limit",
)
# dtypes of the columns read, for a capture with no socket row at all (no batch to take them from)
_EMPTY_SOCKETS = {
    "ts": "datetime64[ns, UTC]",
    "host": "category",
    "sock_id": "int64",
    "netid": "category",
    "state": "category",
    **{c: "UInt32" for c in ("recv_q", "send_q")},
    **{c: "category" for c in ("local_address", "local_port", "peer_address", "peer_port", "sk")},
    "inode": "UInt32",
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
    held_sockets: pd.DataFrame
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


def socket_summary(cap: Capture) -> SocketSummary:
    """The capture's :class:`SocketSummary`: one pass over ``cap.socket_batches``, memoized."""
    return cap.memo("analysis.socket_summary", lambda: _summarize(cap))


def _summarize(cap: Capture) -> SocketSummary:
    snaps = snapshots(cap)
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
    """Per (``ts``, ``key_pid``) of attributed sockets ``a`` (``socket_rows.attributed_sockets``; key_pid
    -1 for unattributed): ``comm``, ``sockets``, ``connections``, the ``SKMEM_SUMS``, ``shared_sockets``,
    ``other_owners`` (the other pids holding any of these sockets, sorted, NA if none)."""
    a = a.assign(
        one=1,
        conn=a["is_connection"].astype("int64"),
        shared=a["other_owners"].notna().astype("int64"),
        key_pid=a["pid"].fillna(-1).astype("int64"),
    )
    g = a.groupby(["ts", "key_pid"], sort=True)
    agg = pd.DataFrame(
        {
            "comm": g["comm"].first(),
            "sockets": g["one"].sum(),
            "connections": g["conn"].sum(),
            **R.skmem_sums(g),
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
        self.held: list[pd.DataFrame] = []
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
        s = R.tcp_sockets(sockets)
        self.counts["tcp_rows"] += len(s)
        self._snapshot(s)
        tr = traffic_rows(s, self.order, self.key_ids)
        part, self.carry = traffic_deltas(tr, len(self.order), self.carry)
        self.traffic += part
        self.held.append(held_sockets.held_rows(s, owners, self.page or 0, AT_LIMIT))
        a = R.attributed_sockets(s[_ATTRIBUTED_COLUMNS], owners)
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
        sums = R.snapshot_sums(s)
        sums["full_sockets"] = g["full"].sum()
        sums["backlog_bytes"] = g["skmem_bl"].sum()
        sums["connections_with_buffer"] = g["holding"].sum()
        self.per_snapshot.append(sums.join(_distribution(s, holding, max(page, 1))))
        # idle_cost's shares: IPv6 and connect()-ed among full sockets
        f = s[full]
        self.counts["full_sockets"] += len(f)
        v6 = R.string_test(f["local_address"], lambda a: a.str.contains(":", regex=False))
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
        listener = R.string_test(sockets["state"], lambda st: st.isin(NOT_OWNER_CONNECTION))
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
            held_sockets=held_sockets.combine(self.held),
            traffic_bytes=traffic,
            by_process=by_process,
            owner_pids=pids,
            limits=limits,
            owner_comms=comms,
            owner_comm_limits=comm_limits,
            **self.counts,
        )


def _distribution(s: pd.DataFrame, holding: pd.Series, page_bytes: int) -> pd.DataFrame:
    """Per ts of the TCP socket rows ``s``: the per-connection distribution columns (module doc)."""
    conns = s[s["is_connection"] & s["buffer_bytes"].notna()]
    w = conns["skmem_w"].astype("float64")
    r = conns["skmem_r"].astype("float64")
    tb = conns["skmem_tb"].astype("float64")
    rb = conns["skmem_rb"].astype("float64")
    frame = pd.DataFrame(
        {
            "ts": conns["ts"],
            "w": w,
            "r": r,
            "buffer": conns["buffer_bytes"].astype("float64"),
            "snd_full": ((w > 0) & (w >= AT_LIMIT * tb)).astype("int64"),
            "rcv_full": ((r > 0) & (r >= AT_LIMIT * rb)).astype("int64"),
        }
    )
    g = frame.groupby("ts")
    out = pd.DataFrame(index=g.size().index)
    for name in ("w", "r"):
        q = g[name].quantile([0.5, 0.99]).unstack() if len(frame) else None
        for label, at in (("p50", 0.5), ("p99", 0.99)):
            out[f"socket_{name}_{label}_bytes"] = q[at] if q is not None else np.nan
        out[f"socket_{name}_max_bytes"] = g[name].max()
    out["socket_buffer_max_bytes"] = g["buffer"].max()
    held = s[holding.to_numpy(dtype=bool)]
    out["holding_buffer_p50_bytes"] = held.groupby("ts")["buffer_bytes"].median().astype("float64")
    for side, col, limit in (("sending", "w", "tb"), ("receiving", "r", "rb")):
        part = frame[frame[col] >= page_bytes].assign(limit=conns[f"skmem_{limit}"])
        pg = part.groupby("ts")
        out[f"{side}_connections"] = pg.size()
        out[f"{side}_{col}_p50_bytes"] = pg[col].median()
        out[f"{side}_{limit}_p50_bytes"] = pg["limit"].median().astype("float64")
    out["at_sndbuf_limit"] = g["snd_full"].sum()
    out["at_rcvbuf_limit"] = g["rcv_full"].sum()
    out = out.reindex(s["ts"].unique())
    for c in DISTRIBUTION_COLUMNS:
        counts = c.startswith("at_") or c.endswith("_connections")
        out[c] = out[c].astype("Int64").fillna(0) if counts else out[c].astype("Float64")
    return out[list(DISTRIBUTION_COLUMNS)]


def per_snapshot_socket_sums(cap: Capture, sockets: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per snapshot (every snapshot, 0 when it had no TCP socket): ``tcp_sockets``, ``connections``,
    ``listeners``, ``buffer_bytes``, ``skmem_{r,w,f,t}_bytes``, ``rcvbuf_limit_bytes``,
    ``sndbuf_limit_bytes``, ``queued_bytes`` (= ``recv_q_bytes`` + ``send_q_bytes``, connections
    only), ``max_f_bytes`` (the largest ``f`` of any socket), ``sockets_without_skmem``.

    From the capture's one pass over its socket rows (:func:`socket_summary`), or from ``sockets``
    (rows of ``socket_rows.tcp_sockets``) when given."""
    if sockets is None:
        sums = socket_summary(cap).per_snapshot[list(R.SNAPSHOT_SUMS)]
    else:
        sums = R.snapshot_sums(sockets)
    out = snapshots(cap).merge(sums.reset_index(), on="ts", how="left")
    for c in R.SNAPSHOT_SUMS:
        out[c] = out[c].astype("Int64").fillna(0)
    return out


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
