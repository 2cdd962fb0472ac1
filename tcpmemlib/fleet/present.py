"""The fleet answers in words and human units, for the notebook and the report.

Every sentence is computed from the frames ``fleet.queries`` returns; nothing here queries.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

__all__ = ["answers", "human", "in_mib", "ranking_plot", "rollout_sentence"]

MIB = float(1 << 20)


def human(value: Any) -> str:
    """Bytes as ``1.2 GiB``, ``34.5 MiB``, ``12.0 KiB``, ``512 B``; NA as ``n/a``."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    v = float(value)
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(v) >= size:
            return f"{v / size:.1f} {unit}"
    return f"{v:.0f} B"


def in_mib(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy for display: every ``*_bytes`` column as ``*_MiB`` (1 decimal)."""
    out = frame.copy()
    for col in [c for c in out.columns if c.endswith("_bytes")]:
        out[col[: -len("_bytes")] + "_MiB"] = (out.pop(col).astype("Float64") / MIB).round(1)
    return out


def _names(hosts: pd.Series, most: int = 5) -> str:
    names = [str(h) for h in hosts]
    more = f", +{len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def answers(ranking: pd.DataFrame, holders: pd.DataFrame, verdicts: pd.DataFrame) -> dict[str, str]:
    """One sentence per question, from ``host_ranking``, ``top_holders`` and ``host_verdicts``."""
    out: dict[str, str] = {}
    if len(ranking):
        top = ranking.iloc[0]
        out["peak"] = (
            f"{top['host']} peaked highest: {human(top['peak_tcp_mem_bytes'])} of TCP memory "
            f"(sockstat), of {len(ranking)} host(s)."
        )
        known = ranking[ranking["min_headroom_bytes"].notna()]
        if len(known):
            tight = known.sort_values("min_headroom_bytes").iloc[0]
            frac = tight["peak_fraction_of_pressure"]
            frac_text = "n/a" if frac is pd.NA or frac != frac else f"{float(frac):.0%}"
            out["headroom"] = (
                f"{tight['host']} came closest to its own pressure threshold: "
                f"{human(tight['min_headroom_bytes'])} left at worst (peak {frac_text} of "
                f"tcp_mem[1] = {human(tight['pressure_bytes'])}); {len(known)} of "
                f"{len(ranking)} host(s) recorded net.ipv4.tcp_mem."
            )
        else:
            out["headroom"] = (
                "No host recorded net.ipv4.tcp_mem (e.g. collected inside a network namespace): "
                "no headroom to its pressure threshold can be given."
            )
    named = holders[holders.iloc[:, 0] != "(unattributed)"] if len(holders) else holders
    if len(named):
        h = named.iloc[0]
        out["holders"] = (
            f"{h.iloc[0]} holds the most across the fleet: {human(h['fleet_peak_bytes'])} summed "
            f"over the peaks of the {int(h['hosts'])} host(s) it runs on, most on {h['top_host']} "
            f"({human(h['max_host_peak_bytes'])})."
        )
    if len(verdicts):
        by_label = verdicts.groupby(verdicts["growth"].fillna("(no verdict)"), sort=False)["host"]
        parts = ", ".join(
            f"{len(hosts)} {label} ({_names(hosts)})"
            for label, hosts in sorted(by_label, key=lambda kv: -len(kv[1]))
        )
        flagged = verdicts[verdicts["unexplained_gap"] | verdicts["pressure_events"]]
        out["growth"] = f"Per host (latest capture): {parts}."
        out["flagged"] = (
            f"{len(flagged)} host(s) with an unexplained gap or pressure events: "
            + (_names(flagged["host"], 10) if len(flagged) else "none")
            + "."
        )
    return out


def ranking_plot(ranking: pd.DataFrame, n: int = 30, ax: Axes | None = None) -> Axes:
    """Horizontal bars of the ``n`` hosts of ``host_ranking`` with the most TCP memory (MiB), each
    with its ``tcp_mem[1]`` pressure threshold as a mark where the host recorded it."""
    import matplotlib.pyplot as plt

    shown = ranking.head(n).iloc[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(9, max(2.5, 0.3 * len(shown) + 1)))
    y = np.arange(len(shown))
    peak = shown["peak_tcp_mem_bytes"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    ax.barh(y, peak / MIB, label="peak TCP memory (sockstat)")
    limit = shown["pressure_bytes"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    known = ~np.isnan(limit)
    if known.any():
        ax.scatter(limit[known] / MIB, y[known], color="C3", marker="|", s=300, label="tcp_mem[1]")
    ax.set_yticks(y, [str(h) for h in shown["host"]])
    ax.set_xlabel("MiB")
    more = f" (top {len(shown)} of {len(ranking)})" if len(ranking) > len(shown) else ""
    ax.set_title(f"Peak TCP memory per host against its pressure threshold{more}")
    ax.legend(loc="best")
    return ax


def rollout_sentence(roll: Any) -> str:
    """The rollout's answer (a ``RolloutResult``) in one or two sentences."""
    groups = roll.groups.set_index("group")
    hosts = roll.hosts
    seen = hosts[(hosts["n_before"] > 0) & (hosts["n_after"] > 0)]
    a = groups.loc["A"]
    if not len(seen[seen["group"] == "A"]):
        return "No host of group A has snapshots in both windows: nothing to compare."
    text = (
        f"Group A ({int(a['hosts'])} host(s), {len(seen[seen['group'] == 'A'])} with snapshots "
        f"in both windows): mean change {human(a['mean_delta'])}, {int(a['reduced'])} reduced and "
        f"{int(a['increased'])} increased beyond noise"
    )
    b = groups.loc["B"]
    if len(seen[seen["group"] == "B"]):
        text += (
            f"; group B ({int(b['hosts'])} host(s)): {human(b['mean_delta'])}, so the change did "
            f"{human(roll.effect)} beyond what happened anyway."
        )
    else:
        text += "; no group B host in both windows to compare with."
    return text
