"""The fleet questions, each computed in the engine (DuckDB SQL or Dask) and finished in pandas.

Every function takes a :class:`~tcpmemlib.fleet.engines.Fleet` (``open_fleet(dataset, engine)``).
The heavy part (scanning snapshots, processes, counters of every host) runs in the engine and ends in
a small frame per host (or per host and process); the same pandas code then ranks and words it, so
both engines give the same numbers by construction of the last step and by test of the first.

| function | answers | one row per |
|---|---|---|
| :func:`host_ranking` | which hosts peak highest, and how close each came to its own ``tcp_mem`` pressure threshold | host |
| :func:`top_holders` | which processes (``by="comm"``) or containers (``by="cgroup"``) hold the most, on how many hosts | comm or cgroup |
| :func:`host_verdicts` | each host's single-capture verdicts (growth, reconcile, pressure, where) and memory-counter deltas | host |
| :func:`rollout` | a tuning change: group A (changed) vs group B (unchanged), before vs after, ``compare``'s noise rule | host (``hosts``) and group (``groups``) |
| :func:`socket_rows` | drill-down: the socket rows of one host (and snapshot, process) | socket |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tcpmemlib.fleet.engines import Fleet, FleetError

__all__ = [
    "PRESSURE_LABELS",
    "RolloutResult",
    "host_ranking",
    "host_verdicts",
    "rollout",
    "socket_rows",
    "top_holders",
]

PRESSURE_LABELS = ("over tcp_mem max", "under pressure", "memory drops")
GAP_LABEL = "unexplained gap"
ANALYSES = ("growth", "reconcile", "pressure", "where")


def _utc(frame: pd.DataFrame, *cols: str) -> pd.DataFrame:
    for c in cols:
        ts = pd.to_datetime(frame[c])
        frame[c] = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    return frame


def _typed(
    frame: pd.DataFrame, ints: Sequence[str] = (), strings: Sequence[str] = ()
) -> pd.DataFrame:
    out = frame.copy()
    for c in ints:
        out[c] = pd.to_numeric(out[c]).astype("Float64").round().astype("Int64")
    for c in strings:
        out[c] = out[c].astype("string")
    return out


def _dask_agg(frame: Any, keys: list[str], spec: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """``groupby(keys).agg`` on Dask with named outputs: ``spec`` maps output -> (column, how)."""
    by_col: dict[str, list[str]] = {}
    for col, how in spec.values():
        by_col.setdefault(col, [])
        if how not in by_col[col]:
            by_col[col].append(how)
    got = frame.groupby(keys).agg(by_col).compute()
    out = pd.DataFrame(index=got.index)
    for name, (col, how) in spec.items():
        out[name] = got[(col, how)]
    return out.reset_index()


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
    return _dask_agg(d, ["host"], spec)


def host_ranking(fleet: Fleet) -> pd.DataFrame:
    """Per host: ``snapshots``, ``first_ts``, ``last_ts``, ``peak_tcp_mem_bytes`` (sockstat TCP
    mem, the kernel's own count), ``peak_buffer_bytes`` (Σ skmem r+w+f of the sockets ss listed),
    ``peak_connections``, ``pressure_bytes`` / ``max_bytes`` (the host's ``tcp_mem[1]``/``[2]`` × page
    size; the lowest if it changed), ``min_headroom_bytes`` (the least, over snapshots, of
    pressure threshold − TCP mem; negative: it was under pressure), ``peak_fraction_of_pressure``,
    ``rank_by_peak`` (1 = most memory) and ``rank_by_headroom`` (1 = least headroom). Sorted by
    peak, largest first."""
    raw = _typed(_ranking_raw(fleet), ints=_RANK_INTS, strings=["host"])
    out = _utc(raw, "first_ts", "last_ts")
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
    return _dask_agg(per, ["host", "holder"], spec)


def top_holders(fleet: Fleet, by: str = "comm", n: int | None = 20) -> pd.DataFrame:
    """Who holds socket buffer memory across the fleet: per ``comm`` (processes by name, the
    ``(unattributed)`` sockets included as one) or ``cgroup`` (containers, where collected).

    Per holder: ``hosts`` (on how many it held sockets), ``fleet_peak_bytes`` (Σ over hosts of the
    holder's peak there: Σ r+w+f over its processes in one snapshot), ``max_host_peak_bytes`` and
    ``top_host`` (where it peaked highest), ``peak_sockets`` (its most sockets on one host),
    ``share_of_fleet`` (its ``fleet_peak_bytes`` over every holder's). Largest first; ``n`` rows."""
    if by not in ("comm", "cgroup"):
        raise ValueError(f"by must be 'comm' or 'cgroup', not {by!r}")
    raw = _typed(
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
    v = _typed(_verdict_rows(fleet), strings=["host", "capture_key", "analysis", "label"])
    wide = v.pivot_table(
        index=["host", "capture_key"], columns="analysis", values="label", aggfunc="first"
    )
    wide = wide.reindex(columns=list(ANALYSES)).reset_index()
    cat = fleet.catalog[fleet.catalog["status"] == "ok"][["key", "first_ts"]]
    wide = wide.merge(cat.rename(columns={"key": "capture_key"}), on="capture_key", how="left")
    counts = wide.groupby("host")["capture_key"].nunique().rename("captures")
    wide = wide.sort_values(["host", "first_ts"]).drop_duplicates("host", keep="last")
    deltas = _typed(
        _counter_deltas(fleet), ints=["delta"], strings=["host", "capture_key", "counter"]
    )
    pressures = deltas[deltas["counter"] == "TCPMemoryPressures"].set_index("capture_key")["delta"]
    drops = deltas[deltas["counter"].isin(_DROP_COUNTERS)].groupby("capture_key")["delta"].sum()
    out = wide.merge(counts.reset_index(), on="host")
    out["memory_pressures"] = out["capture_key"].map(pressures).astype("Int64")
    out["memory_drops"] = out["capture_key"].map(drops).astype("Int64")
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


# ------------------------------------------------------------------------------- rollout
@dataclass(frozen=True)
class RolloutResult:
    """``hosts``: per host ``group`` (A/B), ``before``, ``after`` (means over each window),
    ``delta``, ``before_min`` .. ``after_max``, ``n_before``, ``n_after``, ``noise``,
    ``significant`` (``compare``'s rule: \\|delta\\| > the larger spread, plus the per-CPU reserve
    bound for sockstat TCP mem). ``groups``: per group ``hosts``, ``mean_delta``, ``median_delta``,
    ``reduced``/``increased`` (hosts with a significant change that way). ``effect``: mean delta
    of A − mean delta of B (NaN without both groups)."""

    metric: str
    hosts: pd.DataFrame
    groups: pd.DataFrame
    effect: float


ROLLOUT_METRICS = ("buffer_bytes", "sockstat_tcp_mem_bytes", "queued_bytes", "connections")


def _window_raw(
    fleet: Fleet, metric: str, hosts: list[str], windows: dict[str, tuple]
) -> pd.DataFrame:
    fleet.need("snapshots")
    parts = []
    for side, (start, end) in windows.items():
        if fleet.engine == "duckdb":
            marks = ", ".join("?" for _ in hosts)
            part = fleet.sql(
                f"""
                SELECT host, avg({metric}) AS mean, min({metric}) AS min, max({metric}) AS max,
                       count({metric}) AS n, max(pcpu_reserve_bound_bytes) AS pcpu
                FROM snapshots WHERE host IN ({marks}) AND ts >= ? AND ts < ?
                GROUP BY host
                """,
                [*hosts, start.to_pydatetime(), end.to_pydatetime()],
            )
        else:
            d = fleet.frame("snapshots", ["host", "ts", metric, "pcpu_reserve_bound_bytes"])
            d = d[d["host"].isin(hosts) & (d["ts"] >= start) & (d["ts"] < end)]
            d = d.assign(value=d[metric].astype("Float64"))
            spec = {
                "mean": ("value", "mean"),
                "min": ("value", "min"),
                "max": ("value", "max"),
                "n": ("value", "count"),
                "pcpu": ("pcpu_reserve_bound_bytes", "max"),
            }
            part = _dask_agg(d, ["host"], spec)
        parts.append(part.assign(side=side))
    return pd.concat(parts, ignore_index=True)


def _when(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def rollout(
    fleet: Fleet,
    group_a: Sequence[str],
    group_b: Sequence[str],
    before: tuple[Any, Any],
    after: tuple[Any, Any],
    metric: str = "buffer_bytes",
) -> RolloutResult:
    """A tuning rollout: group A's hosts got a change, group B's did not; ``before`` and ``after``
    are ``(start, end)`` windows (UTC; naive times are UTC). Per host and per group, the metric's
    mean before vs after with ``compare``'s noise rule (:class:`RolloutResult`). ``metric``: one of
    ``ROLLOUT_METRICS`` (``buffer_bytes`` is compare's ``skmem_buffer_bytes``)."""
    if metric not in ROLLOUT_METRICS:
        raise ValueError(f"metric must be one of {', '.join(ROLLOUT_METRICS)}, not {metric!r}")
    both = set(group_a) & set(group_b)
    if both:
        raise FleetError(f"hosts in both groups: {', '.join(sorted(both))}")
    hosts = [*group_a, *group_b]
    windows = {
        "before": (_when(before[0]), _when(before[1])),
        "after": (_when(after[0]), _when(after[1])),
    }
    raw = _window_raw(fleet, metric, list(map(str, hosts)), windows)
    raw = raw.astype({"host": "string", "side": "string"})
    for c in ("mean", "min", "max", "pcpu"):
        raw[c] = pd.to_numeric(raw[c]).astype("Float64")
    raw["n"] = pd.to_numeric(raw["n"]).astype("Int64")
    rows = []
    for host in hosts:
        b = raw[(raw["host"] == host) & (raw["side"] == "before")]
        a = raw[(raw["host"] == host) & (raw["side"] == "after")]
        rows.append(
            {"host": host, "group": "A" if host in group_a else "B", **_compare_row(b, a, metric)}
        )
    per_host = pd.DataFrame(rows)
    per_host = per_host.astype(
        {
            c: "Float64"
            for c in per_host.columns
            if c not in ("host", "group", "n_before", "n_after", "significant")
        }
    )
    per_host = per_host.astype(
        {
            "host": "string",
            "group": "string",
            "n_before": "Int64",
            "n_after": "Int64",
            "significant": "boolean",
        }
    )
    groups = []
    for name in ("A", "B"):
        g = per_host[per_host["group"] == name]
        d = g["delta"].dropna()
        sig = g["significant"].fillna(False).astype(bool)
        groups.append(
            {
                "group": name,
                "hosts": len(g),
                "mean_delta": float(d.mean()) if len(d) else np.nan,
                "median_delta": float(d.median()) if len(d) else np.nan,
                "reduced": int((sig & (g["delta"] < 0).fillna(False)).sum()),
                "increased": int((sig & (g["delta"] > 0).fillna(False)).sum()),
            }
        )
    groups_f = pd.DataFrame(groups).astype(
        {"group": "string", "hosts": "Int64", "reduced": "Int64", "increased": "Int64"}
    )
    effect = float(groups_f["mean_delta"].iloc[0] - groups_f["mean_delta"].iloc[1])
    return RolloutResult(metric, per_host, groups_f, effect)


def _compare_row(b: pd.DataFrame, a: pd.DataFrame, metric: str) -> dict[str, Any]:
    def side(rows: pd.DataFrame) -> tuple[float, float, float, int]:
        if not len(rows) or not int(rows["n"].iloc[0] or 0):
            return np.nan, np.nan, np.nan, 0
        r = rows.iloc[0]
        return float(r["mean"]), float(r["min"]), float(r["max"]), int(r["n"])

    bm, bmin, bmax, nb = side(b)
    am, amin, amax, na = side(a)
    spread = [x for x in (bmax - bmin, amax - amin) if x == x]
    floor = 0.0
    if metric == "sockstat_tcp_mem_bytes" and len(b) and b["pcpu"].notna().any():
        floor = float(b["pcpu"].iloc[0])
    noise = (max(spread) if spread else np.nan) + floor
    delta = am - bm
    sig: Any = pd.NA if delta != delta or noise != noise else bool(abs(delta) > noise)
    return {
        "before": bm,
        "after": am,
        "delta": delta,
        "before_min": bmin,
        "before_max": bmax,
        "after_min": amin,
        "after_max": amax,
        "n_before": nb,
        "n_after": na,
        "noise": noise,
        "significant": sig,
    }


# ------------------------------------------------------------------------------- drill-down
def socket_rows(
    fleet: Fleet, host: str, ts: Any = None, comm: str | None = None, limit: int | None = 1000
) -> pd.DataFrame:
    """The socket rows of ``host`` (in snapshot ``ts`` if given: the snapshot start; of process
    name ``comm`` if given), largest r+w+f first, at most ``limit``. DuckDB only (a drill-down reads
    one host's rows; the dataset's Hive paths let any engine do the same)."""
    fleet.need("sockets")
    where, params = ["host = ?"], [str(host)]
    if ts is not None:
        when = _when(ts)
        where.append("ts >= ? AND ts < ?")
        params += [when.to_pydatetime(), (when + pd.Timedelta(microseconds=1)).to_pydatetime()]
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
    return _utc(out, "ts")
