"""compare's noise model: per-snapshot values of each side, medians, a bootstrap interval of their
change. A load that ramps up widens a side's spread but must not hide a 7x cut (issue 11.1); the
same load twice must not read as a change."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tcpmemlib.analysis.stats import compare_values

MIB = float(1 << 20)


def _ramp(top: float, ramp: int, steady: int) -> pd.Series:
    return pd.Series(np.r_[np.linspace(0, top, ramp), np.full(steady, top)])


def test_a_ramp_cannot_hide_a_7x_cut() -> None:
    # before ramps 0 -> 800 MiB over 12 snapshots then holds; after ramps 0 -> 110 MiB.
    # Each side's min-max range (800 MiB) is wider than the change (690 MiB): the old noise band.
    before, after = _ramp(800 * MIB, 12, 6), _ramp(110 * MIB, 12, 6)
    row = compare_values(before, after, before, after)
    assert row["significant"] is True
    assert row["delta_high"] < 0
    assert row["before_peak"] == 800 * MIB and row["after_peak"] == 110 * MIB
    # the steady parts alone: the same verdict, with the exact change
    steady = compare_values(before[12:], after[12:], before, after)
    assert steady["significant"] is True
    assert steady["delta"] == pytest.approx(-690 * MIB)
    assert steady["ratio"] == pytest.approx(110 / 800)


def test_the_same_noisy_load_twice_is_no_change() -> None:
    rng = np.random.default_rng(1)
    before = pd.Series(100 * MIB + rng.normal(0, 20 * MIB, 40))
    after = pd.Series(100 * MIB + rng.normal(0, 20 * MIB, 40))
    row = compare_values(before, after, before, after)
    assert row["significant"] is False
    assert row["delta_low"] < 0 < row["delta_high"]


def test_a_shift_within_noise_of_one_side_is_seen_with_enough_snapshots() -> None:
    rng = np.random.default_rng(2)
    before = pd.Series(100 * MIB + rng.normal(0, 20 * MIB, 200))
    after = pd.Series(80 * MIB + rng.normal(0, 20 * MIB, 200))
    row = compare_values(before, after, before, after)
    assert row["significant"] is True
    assert -30 * MIB < row["delta"] < -10 * MIB


def test_one_snapshot_a_side_counts_any_change_over_the_floor() -> None:
    b, a = pd.Series([1000.0]), pd.Series([900.0])
    assert compare_values(b, a, b, a)["significant"] is True
    assert compare_values(b, a, b, a, floor=200.0)["significant"] is False
    nothing = compare_values(pd.Series([], dtype="float64"), a, b, a)
    assert nothing["significant"] is pd.NA and nothing["n_before"] == 0


def test_the_interval_is_the_same_on_every_run() -> None:
    before, after = _ramp(800 * MIB, 12, 6), _ramp(110 * MIB, 12, 6)
    one = compare_values(before, after, before, after)
    two = compare_values(before, after, before, after)
    assert (one["delta_low"], one["delta_high"]) == (two["delta_low"], two["delta_high"])
