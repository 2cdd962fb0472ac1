"""The fleet questions, each computed in the engine (DuckDB SQL or Dask) and finished in pandas.

Every function takes a :class:`~tcpmemlib.fleet.engines.Fleet` (``open_fleet(dataset, engine)``).
The heavy part (scanning snapshots, processes, counters of every host) runs in the engine and ends
in a small frame per host (or per host and process); the same pandas code then ranks and words it, so
both engines give the same numbers by construction of the last step and by test of the first.

| function | answers | one row per |
|---|---|---|
| :func:`host_ranking` | which hosts peak highest, and how close each came to its own ``tcp_mem`` pressure threshold | host |
| :func:`top_holders` | which processes (``by="comm"``) or containers (``by="cgroup"``) hold the most, on how many hosts | comm or cgroup |
| :func:`host_verdicts` | each host's single-capture verdicts (growth, reconcile, pressure, where) and memory-counter deltas | host |
| :func:`socket_rows` | drill-down: the socket rows of one host (and snapshot, process) | socket |
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from tcpmemlib.fleet.engines import Fleet, FleetError, as_utc, dask_agg, typed, utc_time
from tcpmemlib.fleet.layout import host_dir

__all__ = [
    "PRESSURE_LABELS",
    "host_ranking",
    "host_verdicts",
    "socket_rows",
    "top_holders",
]

PRESSURE_LABELS = ("over tcp_mem max", "under pressure", "memory drops")
GAP_LABEL = "unexplained gap"
ANALYSES = ("growth", "reconcile", "pressure", "where")


# ------------------------------------------------------------------------------- ranking
_RANK_INTS = (
    "snapshots",
    "peak_tcp_mem_bytes",
    "peak_buffer_bytes",
    "peak_connections",
    "pressure_bytes",
    "max_bytes",
    "min_headroom_bytes",
)


def _ranking_raw(fleet: Fleet) -> pd.DataFrame:
    fleet.need("snapshots")
    if fleet.engine == "duckdb":
        return fleet.sql(
            """
            SELECT host, count(*) AS snapshots, min(ts) AS first_ts, max(ts) AS last_ts,
                   max(sockstat_tcp_mem_bytes) AS peak_tcp_mem_bytes,
                   max(buffer_bytes) AS peak_buffer_bytes,
                   max(connections) AS peak_connections,
                   min(tcp_mem_pressure_bytes) AS pressure_bytes,
                   min(tcp_mem_max_bytes) AS max_bytes,
                   min(tcp_mem_pressure_bytes - sockstat_tcp_mem_bytes) AS min_headroom_bytes
            FROM snapshots GROUP BY host
            """
        )
    cols = ["host", "ts", "sockstat_tcp_mem_bytes", "buffer_bytes", "connections"]
    d = fleet.frame("snapshots", [*cols, "tcp_mem_pressure_bytes", "tcp_mem_max_bytes"])
    d = d.assign(headroom=d["tcp_mem_pressure_bytes"] - d["sockstat_tcp_mem_bytes"])
    spec = {
        "snapshots": ("ts", "count"),
        "first_ts": ("ts", "min"),
        "last_ts": ("ts", "max"),
        "peak_tcp_mem_bytes": ("sockstat_tcp_mem_bytes", "max"),
        "peak_buffer_bytes": ("buffer_bytes", "max"),
        "peak_connections": ("connections", "max"),
        "pressure_bytes": ("tcp_mem_pressure_bytes", "min"),
        "max_bytes": ("tcp_mem_max_bytes", "min"),
        "min_headroom_bytes": ("headroom", "min"),
    }
    return dask_agg(d, ["host"], spec)


def host_ranking(fleet: Fleet) -> pd.DataFrame:
    """Per host: ``snapshots``, ``first_ts``, ``last_ts``, ``peak_tcp_mem_bytes`` (sockstat TCP
    mem, the kernel's own count), ``peak_buffer_bytes`` (Σ skmem r+w+f of the sockets ss listed),
    ``peak_connections``, ``pressure_bytes`` / ``max_bytes`` (the host's ``tcp_mem[1]``/``[2]`` × page
    size; the lowest if it changed), ``min_headroom_bytes`` (the least, over snapshots, of
    pressure threshold − TCP mem; negative: it was under pressure), ``peak_fraction_of_pressure``,
    ``rank_by_peak`` (1 = most memory) and ``rank_by_headroom`` (1 = least headroom). Sorted by
    peak, largest first."""
    raw = typed(_ranking_raw(fleet), ints=_RANK_INTS, strings=["host"])
    out = as_utc(raw, "first_ts", "last_ts")
    out["peak_fraction_of_pressure"] = out["peak_tcp_mem_bytes"].astype("Float64") / out[
        "pressure_bytes"
    ].astype("Float64").replace(0, pd.NA)
    out["rank_by_peak"] = out["peak_tcp_mem_bytes"].rank(method="min", ascending=False)
    out["rank_by_headroom"] = out["min_headroom_bytes"].rank(method="min", ascending=True)
    out = out.astype({"rank_by_peak": "Int64", "rank_by_headroom": "Int64"})
    return out.sort_values(["peak_tcp_mem_bytes", "host"], ascending=[False, True]).reset_index(
        drop=True
    )


# ------------------------------------------------------------------------------- holders
def _holders_raw(fleet: Fleet, by: str) -> pd.DataFrame:
    fleet.need("processes")
    if fleet.engine == "duckdb":
        return fleet.sql(
            f"""
            WITH per_snapshot AS (
                SELECT host, ts, {by} AS holder, sum(buffer_bytes) AS buffer_bytes,
                       sum(sockets) AS sockets, count(*) AS processes
                FROM (SELECT host, ts, {by}, buffer_bytes, tcp_sockets AS sockets FROM processes
                      WHERE {by} IS NOT NULL)
                GROUP BY host, ts, {by}
            )
            SELECT host, holder, max(buffer_bytes) AS peak_buffer_bytes,
                   max(sockets) AS peak_sockets, max(processes) AS peak_processes,
                   count(*) AS snapshots
            FROM per_snapshot GROUP BY host, holder
            """
        )
    d = fleet.frame("processes", ["host", "ts", by, "buffer_bytes", "tcp_sockets"])
    d = d[d[by].notnull()].assign(one=1)
    per = (
        d.groupby(["host", "ts", by])
        .agg({"buffer_bytes": "sum", "tcp_sockets": "sum", "one": "sum"})
        .reset_index()
    )
    per = per.rename(columns={by: "holder", "tcp_sockets": "sockets", "one": "processes"})
    spec = {
        "peak_buffer_bytes": ("buffer_bytes", "max"),
        "peak_sockets": ("sockets", "max"),
        "peak_processes": ("processes", "max"),
        "snapshots": ("ts", "count"),
    }
    return dask_agg(per, ["host", "holder"], spec)


def top_holders(fleet: Fleet, by: str = "comm", n: int | None = 20) -> pd.DataFrame:
    """Who holds socket buffer memory across the fleet: per ``comm`` (processes by name, the
    ``(unattributed)`` sockets included as one) or ``cgroup`` (containers, where collected).

    Per holder: ``hosts`` (on how many it held sockets), ``fleet_peak_bytes`` (Σ over hosts of the
    holder's peak there: Σ r+w+f over its processes in one snapshot), ``max_host_peak_bytes`` and
    ``top_host`` (where it peaked highest), ``peak_sockets`` (its most sockets on one host),
    ``share_of_fleet`` (its ``fleet_peak_bytes`` over every holder's). Largest first; ``n`` rows."""
    if by not in ("comm", "cgroup"):
        raise ValueError(f"by must be 'comm' or 'cgroup', not {by!r}")
    raw = typed(
        _holders_raw(fleet, by),
        ints=["peak_buffer_bytes", "peak_sockets", "peak_processes", "snapshots"],
        strings=["host", "holder"],
    )
    raw = raw.sort_values(["holder", "peak_buffer_bytes", "host"], ascending=[True, False, True])
    g = raw.groupby("holder", sort=True)
    out = pd.DataFrame(
        {
            "hosts": g["host"].nunique(),
            "fleet_peak_bytes": g["peak_buffer_bytes"].sum(),
            "max_host_peak_bytes": g["peak_buffer_bytes"].max(),
            "top_host": g["host"].first(),
            "peak_sockets": g["peak_sockets"].max(),
        }
    ).reset_index()
    out = out.rename(columns={"holder": by}).astype(
        {"hosts": "Int64", "fleet_peak_bytes": "Int64", "max_host_peak_bytes": "Int64"}
    )
    total = float(out["fleet_peak_bytes"].sum())
    out["share_of_fleet"] = (out["fleet_peak_bytes"].astype("Float64") / total) if total else pd.NA
    out = out.sort_values(["fleet_peak_bytes", by], ascending=[False, True]).reset_index(drop=True)
    return out.head(n) if n is not None else out


# ------------------------------------------------------------------------------- verdicts
def _counter_deltas(fleet: Fleet) -> pd.DataFrame:
    """Per (host, capture, counter): last − first value (as ``pressure`` reports it)."""
    if not fleet.has("counters"):
        return pd.DataFrame(columns=["host", "capture_key", "counter", "delta"])
    if fleet.engine == "duckdb":
        return fleet.sql(
            """
            SELECT host, capture_key, counter,
                   arg_max(value, ts) - arg_min(value, ts) AS delta
            FROM counters WHERE value IS NOT NULL GROUP BY host, capture_key, counter
            """
        )
    d = fleet.frame("counters", ["host", "capture_key", "counter", "ts", "value"])
    d = d[d["value"].notnull()]
    keys = ["host", "capture_key", "counter"]
    ends = d.groupby(keys)["ts"].agg(["min", "max"]).reset_index()
    first = d.merge(ends, left_on=[*keys, "ts"], right_on=[*keys, "min"])[[*keys, "value"]]
    last = d.merge(ends, left_on=[*keys, "ts"], right_on=[*keys, "max"])[[*keys, "value"]]
    both = first.merge(last, on=keys, suffixes=("_first", "_last")).compute()
    both["delta"] = both["value_last"] - both["value_first"]
    return both[[*keys, "delta"]]


def _verdict_rows(fleet: Fleet) -> pd.DataFrame:
    fleet.need("verdicts")
    cols = ["host", "capture_key", "analysis", "phase", "label"]
    if fleet.engine == "duckdb":
        return fleet.sql(f"SELECT {', '.join(cols)} FROM verdicts WHERE phase IS NULL")
    d = fleet.frame("verdicts", cols)
    return d[d["phase"].isnull()].compute()


def host_verdicts(fleet: Fleet) -> pd.DataFrame:
    """Per host, from its latest capture (by first snapshot): ``capture_key``, ``captures`` (how
    many the dataset holds), the verdict label of each single-capture analysis (``growth``,
    ``reconcile``, ``pressure``, ``where``: what the host's own report says), the deltas of
    ``TCPMemoryPressures`` and of the drop/prune counters summed (``memory_drops``) over that capture,
    and the flags ``unexplained_gap`` (reconcile says ``unexplained gap``) and ``pressure_events``
    (pressure says ``under pressure``/``over tcp_mem max``/``memory drops``, or TCPMemoryPressures
    rose). Sorted: flagged hosts first."""
    v = typed(_verdict_rows(fleet), strings=["host", "capture_key", "analysis", "label"])
    wide = v.pivot_table(
        index=["host", "capture_key"], columns="analysis", values="label", aggfunc="first"
    )
    wide = wide.reindex(columns=list(ANALYSES)).reset_index()
    cat = fleet.catalog[fleet.catalog["status"] == "ok"][["key", "first_ts"]]
    wide = wide.merge(cat.rename(columns={"key": "capture_key"}), on="capture_key", how="left")
    counts = wide.groupby("host")["capture_key"].nunique().rename("captures")
    wide = wide.sort_values(["host", "first_ts"]).drop_duplicates("host", keep="last")
    deltas = typed(
        _counter_deltas(fleet), ints=["delta"], strings=["host", "capture_key", "counter"]
    )
    keys = ["host", "capture_key"]
    pressures = deltas[deltas["counter"] == "TCPMemoryPressures"][[*keys, "delta"]]
    drops = deltas[deltas["counter"].isin(_DROP_COUNTERS)].groupby(keys, as_index=False)["delta"]
    out = wide.merge(counts.reset_index(), on="host")
    out = out.merge(pressures.rename(columns={"delta": "memory_pressures"}), on=keys, how="left")
    out = out.merge(drops.sum().rename(columns={"delta": "memory_drops"}), on=keys, how="left")
    out = out.astype({"memory_pressures": "Int64", "memory_drops": "Int64"})
    out["unexplained_gap"] = (out["reconcile"] == GAP_LABEL).fillna(False).astype(bool)
    out["pressure_events"] = out["pressure"].isin(PRESSURE_LABELS).fillna(False).astype(bool) | (
        out["memory_pressures"].fillna(0) > 0
    ).astype(bool)
    for c in ANALYSES:
        out[c] = out[c].astype("string")
    out["captures"] = out["captures"].astype("Int64")
    out = out.drop(columns="first_ts")
    flagged = out["unexplained_gap"] | out["pressure_events"]
    out = out.assign(_f=~flagged).sort_values(["_f", "host"]).drop(columns="_f")
    return out.reset_index(drop=True)


_DROP_COUNTERS = (
    "RcvPruned",
    "OfoPruned",
    "TCPRcvQDrop",
    "TCPOFODrop",
    "TCPBacklogDrop",
    "TCPAbortOnMemory",
    "PruneCalled",
    "TCPRcvCollapsed",
)


# ------------------------------------------------------------------------------- drill-down
def socket_rows(
    fleet: Fleet, host: str, ts: Any = None, comm: str | None = None, limit: int | None = 1000
) -> pd.DataFrame:
    """The socket rows of ``host`` (in snapshot ``ts`` if given: the snapshot start; of process
    name ``comm`` if given) with ``buffer_bytes`` (r+w+f, NA as 0), largest first, then by time and
    ``sock_id``; at most ``limit``. Only that host's files are read (its ``host=`` directory)."""
    fleet.need("sockets")
    when = utc_time(ts) if ts is not None else None
    if fleet.engine == "dask":
        return _socket_rows_dask(fleet, str(host), when, comm, limit)
    where, params = ["host = ?"], [str(host)]
    if when is not None:
        where.append("ts >= ? AND ts < ?")
        start = when.floor("us")  # the parameter is a datetime (µs); the column keeps ns
        params += [start.to_pydatetime(), (start + pd.Timedelta("1us")).to_pydatetime()]
    if comm is not None:
        where.append("comm = ?")
        params.append(str(comm))
    lim = f"LIMIT {int(limit)}" if limit is not None else ""
    out = fleet.sql(
        f"""
        SELECT * EXCLUDE (date, capture_key),
               coalesce(skmem_r, 0) + coalesce(skmem_w, 0) + coalesce(skmem_f, 0) AS buffer_bytes
        FROM sockets WHERE {" AND ".join(where)}
        ORDER BY buffer_bytes DESC, ts, sock_id {lim}
        """,
        params,
    )
    return as_utc(out, "ts")


def _socket_rows_dask(
    fleet: Fleet, host: str, when: pd.Timestamp | None, comm: str | None, limit: int | None
) -> pd.DataFrame:
    import dask.dataframe as dd

    files = [f for f in fleet.files("sockets") if f"/{host_dir(host)}/" in f]
    if not files:
        raise FleetError(f"{fleet.root}: no socket rows of host {host!r}")
    d = dd.read_parquet(files)
    d = d[d["host"] == host]
    if when is not None:
        d = d[(d["ts"] >= when.floor("us")) & (d["ts"] < when.floor("us") + pd.Timedelta("1us"))]
    if comm is not None:
        d = d[d["comm"] == comm]
    out = d.compute().drop(columns=["date", "capture_key"])
    r, w, f = (out[c].astype("Int64").fillna(0) for c in ("skmem_r", "skmem_w", "skmem_f"))
    out["buffer_bytes"] = r + w + f
    out = out.sort_values(["buffer_bytes", "ts", "sock_id"], ascending=[False, True, True])
    out = out.reset_index(drop=True)
    return out.head(limit) if limit is not None else out
