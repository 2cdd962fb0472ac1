"""The fleet answers in words and human units, for the notebook and the report.

Every sentence is computed from the frames ``fleet.queries`` returns; nothing here queries.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = ["answers", "human", "in_mib"]

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


def answers(ranking: pd.DataFrame, holders: pd.DataFrame, verdicts: pd.DataFrame) -> dict[str, str]:
    """One sentence per question, from ``host_ranking``, ``top_holders`` and ``host_verdicts``."""
    out: dict[str, str] = {}
    if len(ranking):
        top = ranking.iloc[0]
        tight = ranking.sort_values("min_headroom_bytes", na_position="last").iloc[0]
        out["peak"] = (
            f"{top['host']} peaked highest: {human(top['peak_tcp_mem_bytes'])} of TCP memory "
            f"(sockstat), of {len(ranking)} host(s)."
        )
        frac = tight["peak_fraction_of_pressure"]
        frac_text = "n/a" if frac is pd.NA or frac != frac else f"{float(frac):.0%}"
        out["headroom"] = (
            f"{tight['host']} came closest to its own pressure threshold: "
            f"{human(tight['min_headroom_bytes'])} left at worst (peak {frac_text} of tcp_mem[1] "
            f"= {human(tight['pressure_bytes'])})."
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
        counts = verdicts["growth"].value_counts()
        parts = ", ".join(f"{int(n)} {label}" for label, n in counts.items())
        flagged = verdicts[verdicts["unexplained_gap"] | verdicts["pressure_events"]]
        out["growth"] = f"Per host (latest capture): {parts}."
        out["flagged"] = (
            f"{len(flagged)} host(s) with an unexplained gap or pressure events: "
            + (", ".join(flagged["host"]) if len(flagged) else "none")
            + "."
        )
    return out
