"""Every ss fixture pair: ``<name>.txt`` (or ``.txt.gz``) + ``<name>.expected.json``.

expected.json: ``rows`` (optional: number of sockets), ``checks``: a list of ``{"where": {col: value},
"expect": {col: value}}``; ``where`` must select exactly one row. Values: a number/string (equal),
``null`` (NA), ``"present"`` (not NA); ``owners`` a list of ``[comm, pid, fd]``; ``owners_sorted`` the
same compared after sorting. Also: the fast path and the per-line reference parser agree on every
fixture, and each fixture folder has a SOURCE.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tcpmemlib.parsers.ss import ENGINES, read_numbered
from tcpmemlib.parsers.text import read_text

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ss"
EXPECTED = sorted(FIXTURES.glob("*/*.expected.json"))


def _input_for(expected: Path) -> Path:
    stem = expected.name[: -len(".expected.json")]
    for suffix in (".txt", ".txt.gz"):
        p = expected.with_name(stem + suffix)
        if p.exists():
            return p
    raise AssertionError(f"no input for {expected}")


def _matches(value: object, want: object) -> bool:
    if want is None:
        return value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value))
    if want == "present":
        return not pd.isna(value)  # type: ignore[arg-type]
    if isinstance(want, float):
        return value == pytest.approx(want)
    return value == want


def test_fixtures_exist_with_source():
    assert len(EXPECTED) >= 8
    for folder in {e.parent for e in EXPECTED}:
        assert (folder / "SOURCE.md").exists(), folder


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture(expected: Path):
    spec = json.loads(expected.read_text())
    path, text = read_text(_input_for(expected))
    result = read_numbered(path, text)
    assert [e.line_no for e in result.errors] == spec.get("errors", []), result.errors
    df = result.frame
    if "rows" in spec:
        assert len(df) == spec["rows"]
    assert spec["checks"], "a fixture must check something"
    for check in spec["checks"]:
        sel = pd.Series(True, index=df.index)
        for col, val in check["where"].items():
            sel &= df[col].astype(object) == val
        rows = df[sel.fillna(False).astype(bool)]
        assert len(rows) == 1, (check["where"], len(rows))
        row = rows.iloc[0]
        for col, want in check["expect"].items():
            if col == "owners":
                assert [list(o) for o in row["owners"]] == want, (check["where"], col)
            elif col == "owners_sorted":
                assert sorted(list(o) for o in row["owners"]) == want, (check["where"], col)
            else:
                assert _matches(row[col], want), (check["where"], col, row[col], want)


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_engine_gives_the_same(expected: Path):
    path, text = read_text(_input_for(expected))
    results = [read_numbered(path, text, engine=e) for e in ENGINES]
    for other in results[1:]:
        pd.testing.assert_frame_equal(other.frame, results[0].frame)
        assert other.line_numbers.tolist() == results[0].line_numbers.tolist()
        assert [str(e) for e in other.errors] == [str(e) for e in results[0].errors]
