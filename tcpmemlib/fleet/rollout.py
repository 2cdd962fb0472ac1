"""A tuning rollout across the fleet: group A (changed) vs group B (unchanged), before vs after.

``rollout(fleet, group_a, group_b, before=(start, end), after=(start, end), metric="buffer_bytes")``
reads each host's per-snapshot ``metric`` (a ``snapshots`` column) in the two windows in the engine
(DuckDB or Dask: only those hosts' snapshots in those windows), then compares each host's two
windows with ``compare``'s own rule (``tcpmemlib.analysis.stats.compare_values``): the medians, a
seeded bootstrap 95 % interval of their change, significant when the interval excludes 0 and the
change exceeds the floor (for ``sockstat_tcp_mem_bytes``, the per-CPU reserve bound ``reconcile``
reports: that counter may lag by that much). Per group: how many hosts went down or up
significantly, and the mean change; the rollout's ``effect`` is group A's mean change minus group
B's (what the change did beyond what happened anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tcpmemlib.analysis.stats import compare_values, stats_frame
from tcpmemlib.fleet.engines import Fleet, FleetError, utc_time

__all__ = ["ROLLOUT_METRICS", "RolloutResult", "rollout"]


@dataclass(frozen=True)
class RolloutResult:
    """``hosts``: per host ``host``, ``group`` (A/B) and ``compare``'s statistics of the metric
    over the two windows (``before``, ``after``: medians; ``delta``, ``ratio``, ``delta_low``,
    ``delta_high``, ``noise``, ``before_peak``, ``after_peak`` (in the windows), ``before_spread``,
    ``after_spread``, ``n_before``, ``n_after``, ``significant``). ``groups``: per group ``hosts``,
    ``mean_delta``, ``median_delta``, ``reduced``/``increased`` (hosts with a significant change that
    way). ``effect``: mean delta of A − mean delta of B (NaN without both groups)."""

    metric: str
    hosts: pd.DataFrame
    groups: pd.DataFrame
    effect: float


#: ``buffer_bytes`` is compare's ``kernel_socket_bytes`` (Σ skmem r+w+f).
ROLLOUT_METRICS = ("buffer_bytes", "sockstat_tcp_mem_bytes", "queued_bytes", "connections")


def _window_values(
    fleet: Fleet, metric: str, hosts: list[str], windows: dict[str, tuple]
) -> pd.DataFrame:
    """``host``, ``side`` (before/after), ``ts``, ``value``, ``pcpu`` of the hosts' snapshots in
    the windows, sorted by host and time."""
    fleet.need("snapshots")
    (b0, b1), (a0, a1) = windows["before"], windows["after"]
    if fleet.engine == "duckdb":
        marks = ", ".join("?" for _ in hosts)
        out = fleet.sql(
            f"""
            SELECT host, CASE WHEN ts >= ? AND ts < ? THEN 'before' ELSE 'after' END AS side,
                   ts, {metric} AS value, pcpu_reserve_bound_bytes AS pcpu
            FROM snapshots
            WHERE host IN ({marks}) AND ((ts >= ? AND ts < ?) OR (ts >= ? AND ts < ?))
            """,
            [b0, b1, *hosts, b0, b1, a0, a1],
        )
    else:
        d = fleet.frame("snapshots", ["host", "ts", metric, "pcpu_reserve_bound_bytes"])
        in_b = (d["ts"] >= b0) & (d["ts"] < b1)
        in_a = (d["ts"] >= a0) & (d["ts"] < a1)
        d = d[d["host"].isin(hosts) & (in_b | in_a)]
        before_side = (d["ts"] >= b0) & (d["ts"] < b1)
        out = d.assign(
            side=before_side.map({True: "before", False: "after"}, meta=("side", "object")),
            value=d[metric],
            pcpu=d["pcpu_reserve_bound_bytes"],
        )[["host", "side", "ts", "value", "pcpu"]].compute()
    out = out.astype({"host": "string", "side": "string"})
    out["value"] = pd.to_numeric(out["value"]).astype("Float64")
    out["pcpu"] = pd.to_numeric(out["pcpu"]).astype("Float64")
    return out.sort_values(["host", "ts"], kind="stable").reset_index(drop=True)


def rollout(
    fleet: Fleet,
    group_a: Sequence[str],
    group_b: Sequence[str],
    before: tuple[Any, Any],
    after: tuple[Any, Any],
    metric: str = "buffer_bytes",
) -> RolloutResult:
    """A tuning rollout: group A's hosts got a change, group B's did not; ``before`` and ``after``
    are ``(start, end)`` windows (UTC; naive times are UTC). Per host and per group, the metric
    before vs after with ``compare``'s rule (module doc, :class:`RolloutResult`). ``metric``: one
    of ``ROLLOUT_METRICS``."""
    if metric not in ROLLOUT_METRICS:
        raise ValueError(f"metric must be one of {', '.join(ROLLOUT_METRICS)}, not {metric!r}")
    both = set(group_a) & set(group_b)
    if both:
        raise FleetError(f"hosts in both groups: {', '.join(sorted(both))}")
    hosts = [str(h) for h in (*group_a, *group_b)]
    windows = {
        "before": (utc_time(before[0]).to_pydatetime(), utc_time(before[1]).to_pydatetime()),
        "after": (utc_time(after[0]).to_pydatetime(), utc_time(after[1]).to_pydatetime()),
    }
    values = _window_values(fleet, metric, hosts, windows)
    rows = []
    for host in hosts:
        mine = values[values["host"] == host]
        b = mine.loc[mine["side"] == "before", "value"]
        a = mine.loc[mine["side"] == "after", "value"]
        floor = 0.0
        pcpu = mine.loc[mine["side"] == "before", "pcpu"].dropna()
        if metric == "sockstat_tcp_mem_bytes" and len(pcpu):
            floor = float(pcpu.max())
        group = "A" if host in set(map(str, group_a)) else "B"
        rows.append({"host": host, "group": group, **compare_values(b, a, b, a, floor)})
    per_host = stats_frame(pd.DataFrame(rows), ["host", "group"])
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
    frame = pd.DataFrame(groups).astype(
        {"group": "string", "hosts": "Int64", "reduced": "Int64", "increased": "Int64"}
    )
    effect = float(frame["mean_delta"].iloc[0] - frame["mean_delta"].iloc[1])
    return RolloutResult(metric, per_host, frame, effect)
