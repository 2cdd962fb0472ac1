"""A tuning rollout across the fleet: group A (changed) vs group B (unchanged), before vs after.

``rollout(fleet, group_a, group_b, before=(start, end), after=(start, end), metric="buffer_bytes")``
takes each host's per-snapshot ``metric`` (a ``snapshots`` column) in the two windows, in the engine
(DuckDB or Dask: per host and window the mean, min, max, count), then applies ``compare``'s rule per
host: the means' delta is significant when larger than the larger of the two windows' spreads (plus,
for ``sockstat_tcp_mem_bytes``, the per-CPU reserve bound ``reconcile`` reports: the counter may lag
by that much). Per group: how many hosts went down or up significantly, and the mean delta; the
rollout's ``effect`` is group A's mean delta minus group B's (what the change did beyond what
happened anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tcpmemlib.fleet.engines import Fleet, FleetError, dask_agg, utc_time

__all__ = ["ROLLOUT_METRICS", "RolloutResult", "rollout"]


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
            part = dask_agg(d, ["host"], spec)
        parts.append(part.assign(side=side))
    return pd.concat(parts, ignore_index=True)


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
        "before": (utc_time(before[0]), utc_time(before[1])),
        "after": (utc_time(after[0]), utc_time(after[1])),
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
