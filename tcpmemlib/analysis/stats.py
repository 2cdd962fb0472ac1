"""Statistics for before/after comparisons: per-snapshot values of each side, compared by their
medians with a bootstrap interval of the change (a ramp on one side widens its spread but cannot
hide a shift of the medians), each side's spread (median absolute deviation) and peak.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["STAT_COLUMNS", "compare_values", "stats_frame"]

STAT_COLUMNS = (
    "before",
    "after",
    "delta",
    "ratio",
    "delta_low",
    "delta_high",
    "noise",
    "before_peak",
    "after_peak",
    "before_spread",
    "after_spread",
    "n_before",
    "n_after",
    "significant",
)
#: Bootstrap resamples and seed (the interval is the same on every run).
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20261204


def _values(series: pd.Series) -> np.ndarray:
    v = pd.to_numeric(series, errors="coerce").astype("Float64").dropna()
    return v.to_numpy(dtype="float64")


def _bootstrap_delta(b: np.ndarray, a: np.ndarray) -> tuple[float, float]:
    """95 % interval of median(a) − median(b), resampling each side's snapshots (seeded)."""
    if len(b) < 2 and len(a) < 2:
        d = float(np.median(a) - np.median(b))
        return d, d
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    mb = np.median(b[rng.integers(0, len(b), (BOOTSTRAP_RESAMPLES, len(b)))], axis=1)
    ma = np.median(a[rng.integers(0, len(a), (BOOTSTRAP_RESAMPLES, len(a)))], axis=1)
    lo, hi = np.percentile(ma - mb, [2.5, 97.5])
    return float(lo), float(hi)


def _spread(v: np.ndarray) -> float:
    return float(np.median(np.abs(v - np.median(v)))) if len(v) else float("nan")


def compare_values(
    before: pd.Series,
    after: pd.Series,
    before_all: pd.Series,
    after_all: pd.Series,
    floor: float = 0.0,
) -> dict[str, Any]:
    """The :data:`STAT_COLUMNS` of one metric from its per-snapshot values: ``before``/``after``
    those compared (medians, bootstrap interval of their change, spread), ``before_all``/``after_all``
    every snapshot of each side (for the peaks). ``floor``: a change must also exceed it."""
    b, a = _values(before), _values(after)
    pb, pa = _values(before_all), _values(after_all)
    row: dict[str, Any] = {
        "before_peak": float(pb.max()) if len(pb) else np.nan,
        "after_peak": float(pa.max()) if len(pa) else np.nan,
        "n_before": len(b),
        "n_after": len(a),
        "before_spread": _spread(b),
        "after_spread": _spread(a),
    }
    if not len(b) or not len(a):
        nan = float("nan")
        row.update(
            before=np.median(b) if len(b) else nan,
            after=np.median(a) if len(a) else nan,
            delta=nan,
            ratio=nan,
            delta_low=nan,
            delta_high=nan,
            noise=nan,
            significant=pd.NA,
        )
        return row
    mb, ma = float(np.median(b)), float(np.median(a))
    lo, hi = _bootstrap_delta(b, a)
    delta = ma - mb
    row.update(
        before=mb,
        after=ma,
        delta=delta,
        ratio=ma / mb if mb else np.nan,
        delta_low=lo,
        delta_high=hi,
        noise=(hi - lo) / 2 + floor,
        significant=bool((lo > 0 or hi < 0) and abs(delta) > floor),
    )
    return row


def stats_frame(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows of :func:`compare_values` (plus the ``keys`` columns) as a typed frame."""
    types = {c: "Float64" for c in STAT_COLUMNS}
    types.update(n_before="Int64", n_after="Int64", significant="boolean")
    types.update({k: "string" for k in keys})
    if not len(frame):
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in types.items()})[
            keys + list(STAT_COLUMNS)
        ]
    return frame.astype(types)[keys + list(STAT_COLUMNS)]
