"""The analyses read socket rows in batches of whole snapshots (``Capture.socket_batches``), in one
shared pass (``analysis.summary.socket_summary``), and never the whole ``sockets``/``owners``.

Every result must not depend on how the rows are cut into batches: each analysis and each plots view
that reads socket rows is computed with one batch, then with many small ones (``BATCH_ROWS``
monkeypatched), and from Parquet on disk (one row group per snapshot), and must be equal frame for
frame. Captures: the hand-written two-snapshot capture of test_analysis_frames.py (every number
known) and the bundled real sample (data/sample.tar.gz: 21 snapshots, ~44k socket rows).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from analysis_helpers import T0, T1, load, traffic_workload, write_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

import tcpmemlib
from tcpmemlib import capture as capture_mod
from tcpmemlib import sockstore, views
from tcpmemlib.analysis import summary, traffic
from tcpmemlib.capture import Capture

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.tar.gz"
ONE_BATCH = 1 << 40


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_snapshot(root, T0, backlog=False)
    write_snapshot(root, T1, backlog=True)
    (root / "phases.tsv").write_text(
        "2026-11-25T09:59:59.000000000Z\tidle\n2026-11-25T10:00:09.000000000Z\tbacklog\n"
    )
    return root


@pytest.fixture(scope="module")
def synth(synth_dir: Path) -> Capture:
    return load(synth_dir, sockets="memory")


@pytest.fixture(scope="module")
def sample() -> Capture:
    return load(SAMPLE, sockets="memory")


@pytest.fixture(scope="module")
def sample_results(sample: Capture) -> Callable[..., dict[str, Any]]:
    """``results(sample)``, computed once per batch size and ``phases``: the reference that several
    tests compare other cuts of the same rows with (read-only: nothing compared is changed)."""
    memo: dict[tuple[int, bool], dict[str, Any]] = {}

    def get(*, phases: bool = True) -> dict[str, Any]:
        key = (sockstore.BATCH_ROWS, phases)
        if key not in memo:
            memo[key] = results(sample, phases=phases)
        return memo[key]

    return get


@pytest.fixture(scope="module")
def sample_disk() -> Capture:
    """The sample with its socket rows on disk, one Parquet row group (= batch) per snapshot."""
    mp = pytest.MonkeyPatch()
    mp.setattr(capture_mod, "SS_BATCH_BYTES", 1)
    try:
        cap = load(SAMPLE, sockets="disk")
    finally:
        mp.undo()
    assert cap.sockets_on_disk
    return cap


def _flat(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _flat(getattr(x, f.name)) for f in dataclasses.fields(x)}
    return x


def results(cap: Capture, *, phases: bool = True) -> dict[str, Any]:
    """Every analysis result and socket-reading plots view of ``cap`` (a fresh memo each call)."""
    cap = cap._replace()  # a new Capture on the same rows: nothing memoized yet
    out: dict[str, Any] = {
        "where_is_it": _flat(tcpmemlib.where_is_it(cap)),
        "reconcile": _flat(tcpmemlib.reconcile(cap)),
        "idle_cost": _flat(tcpmemlib.idle_cost(cap)),
        "growth": _flat(tcpmemlib.growth(cap)),
        "pressure": _flat(tcpmemlib.pressure(cap)),
        "compare_self": _flat(tcpmemlib.compare(cap, cap)),
        # (every row but where the socket rows are kept, which is what differs on purpose)
        "capture_overview": _overview_but_where_kept(cap),
        "socket_totals": views.socket_totals(cap),
        # the connections that held memory, followed across snapshots (and so across batches)
        "held_sockets": views.held_sockets(cap, 10_000),
        "by_peer": views.by_peer(cap),
        "limit_counts": views.limit_counts(cap),
        "per_snapshot": summary.socket_summary(cap).per_snapshot,
    }
    bp = tcpmemlib.by_process(cap)
    out["by_process"] = bp
    peak = bp.groupby("ts")["buffer_bytes"].sum().idxmax()
    out["top_process"] = _flat(tcpmemlib.top_process(bp[bp["ts"] == peak]))
    for field in ("skmem_r", "skmem_w"):
        out[f"example_socket {field}"] = views.example_socket(cap, field)
    for comm in [*sorted(set(bp["comm"].astype(str))), "no such process"]:
        out[f"owner_limits_by_phase {comm}"] = views.owner_limits_by_phase(cap, comm)
    names = list(dict.fromkeys(cap.meta.sort_values("ts")["phase"].dropna()))
    if phases and len(names) >= 2:
        first, last = cap.select(phase=names[0]), cap.select(phase=names[-1])
        out["compare_phases"] = _flat(tcpmemlib.compare(first, last))
    return out


def assert_same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=where)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=True, obj=where)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def _overview_but_where_kept(cap: Any) -> pd.DataFrame:
    overview = views.capture_overview(cap)
    kept = overview["item"] == "socket rows kept"
    assert kept.sum() == 1
    where = "on disk" if cap.sockets_on_disk else "in memory"
    assert overview.loc[kept, "value"].iloc[0].startswith(where)
    return overview[~kept].reset_index(drop=True)


def _batches(cap: Capture) -> int:
    return sum(1 for _ in cap.socket_batches(["state"]))


# ------------------------------------------------------------------------------------ batch cuts
@pytest.mark.parametrize("rows", [1, 3])
def test_synthetic_capture_same_results_in_small_batches(synth, monkeypatch, rows) -> None:
    monkeypatch.setattr(sockstore, "BATCH_ROWS", ONE_BATCH)
    assert _batches(synth) == 1
    whole = results(synth)
    monkeypatch.setattr(sockstore, "BATCH_ROWS", rows)
    assert _batches(synth) == 2  # 4 and 5 socket rows: one snapshot a batch
    assert_same(whole, results(synth))


@pytest.mark.parametrize("rows", [7, 100, 10_000])
def test_sample_same_results_in_small_batches(sample, sample_results, monkeypatch, rows) -> None:
    monkeypatch.setattr(sockstore, "BATCH_ROWS", ONE_BATCH)
    whole = sample_results()
    monkeypatch.setattr(sockstore, "BATCH_ROWS", rows)
    n = _batches(sample)
    # ~2100 rows a snapshot: one snapshot a batch, or a few snapshots a batch
    assert n == 21 if rows < 2000 else 3 <= n <= 6
    assert_same(whole, results(sample))


def test_sample_on_disk_same_results_as_in_memory(sample_results, sample_disk, monkeypatch) -> None:
    monkeypatch.setattr(sockstore, "BATCH_ROWS", ONE_BATCH)
    assert _batches(sample_disk) == 21
    assert_same(sample_results(), results(sample_disk))


def test_results_match_the_hand_counted_numbers_in_batches(synth, monkeypatch) -> None:
    """The numbers test_analysis_frames.py checks with one batch, with one snapshot a batch."""
    monkeypatch.setattr(sockstore, "BATCH_ROWS", 1)
    cap = synth.select()
    bp = tcpmemlib.by_process(cap)
    back = bp[bp["phase"] == "backlog"].set_index("pid")
    assert int(back["buffer_bytes"].sum()) == 68032 + 1600 + 8192
    assert back.loc[100, "other_owners"] == "101"
    assert list(tcpmemlib.reconcile(cap).by_snapshot["ss_full_sockets"]) == [3, 4]
    ic = tcpmemlib.idle_cost(cap)
    obj = ic.by_object.set_index("cache")
    assert float(obj.loc["tcp_bind_bucket", "objects_per_socket"]) == pytest.approx(2 / 7)
    lim = views.owner_limits_by_phase(cap, "srv").set_index("phase")
    # srv owns the connection :5000 <- :40000 in both phases, and the orphan is nobody's
    assert lim["connections (per snapshot)"].tolist() == [1, 1]
    assert int(lim.loc["backlog", "max r"]) == 68032


# ------------------------------------------------------------------------------------ traffic
def test_growth_traffic_across_a_batch_boundary(synth, monkeypatch) -> None:
    """The backlog snapshot's traffic pairs each socket with its row in the idle snapshot, which
    is in the batch before: +65536 received and +65536 acked over 10 s."""
    monkeypatch.setattr(sockstore, "BATCH_ROWS", 1)
    cap = synth.select()
    assert _batches(cap) == 2
    traffic = tcpmemlib.growth(cap).by_snapshot.set_index("phase")["traffic_bytes_per_s"]
    assert float(traffic["backlog"]) == pytest.approx(2 * 65536 / 10)
    assert pd.isna(traffic["idle"])
    monkeypatch.setattr(sockstore, "BATCH_ROWS", ONE_BATCH)
    whole = tcpmemlib.growth(synth.select()).by_snapshot["traffic_bytes_per_s"]
    pd.testing.assert_series_equal(whole, tcpmemlib.growth(cap).by_snapshot["traffic_bytes_per_s"])


@pytest.mark.parametrize("cuts", [[1, 2], [1], [2], []])
def test_traffic_deltas_carry_the_last_snapshot_over_the_cut(cuts) -> None:
    """Σ Δ per snapshot of a frame cut into batches (at snapshot positions ``cuts``) equals the
    whole frame's: 200 B at the second snapshot, 40 B at the third (per 10 s)."""
    s, ts = traffic_workload()
    order = pd.Index(ts)
    total = np.zeros(len(order))
    carry = None
    ids = traffic.KeyIds()  # one for the pass: batches name the same socket by the same ids
    snap = order.get_indexer(s["ts"])
    for lo, hi in zip([0, *cuts], [*cuts, len(ts)], strict=True):
        part = s[(snap >= lo) & (snap < hi)]
        # each batch has its own categories, as batches from socket_batches do
        part = part.assign(sk=part["sk"].astype("string").astype("category"))
        deltas, carry = traffic.traffic_deltas(
            traffic.traffic_rows(part, order, ids), len(ts), carry
        )
        total += deltas
    assert total.tolist() == [0, 200, 40]
    whole = traffic.socket_traffic(s, pd.Index(ts))
    assert whole.isna().tolist() == [True, False, False]
    assert whole.iloc[1:].tolist() == [total[1] / 10, total[2] / 10]


# ------------------------------------------------------------------------------------ no full read
class _NoFullRead:
    """``Capture.sockets``/``owners`` replaced by an attribute that raises when read."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        raise AssertionError(f"the whole {self.name} frame was read")

    def __set__(self, obj: Any, value: Any) -> None:
        raise AssertionError(f"{self.name} was set")


class StreamOnly(Capture):
    """A capture whose socket rows can only be read through ``socket_batches``."""

    sockets = _NoFullRead("sockets")  # type: ignore[assignment]
    owners = _NoFullRead("owners")  # type: ignore[assignment]

    def _replace(self, **changes: Any) -> Capture:
        out = super()._replace(**changes)
        out.__class__ = StreamOnly
        return out


def _stream_only(cap: Capture) -> Capture:
    out = cap._replace()
    out.__class__ = StreamOnly
    with pytest.raises(AssertionError, match="whole sockets"):
        _ = out.sockets
    with pytest.raises(AssertionError, match="whole owners"):
        _ = out.owners
    return out


def test_analyses_never_read_the_whole_socket_frames_on_disk(sample_results, sample_disk) -> None:
    assert_same(sample_results(), results(_stream_only(sample_disk)))


def test_analyses_never_read_the_whole_socket_frames_in_memory(
    synth, sample, sample_results
) -> None:
    # (select() on an in-memory capture cuts its frames, so no phase selections here)
    assert_same(results(synth, phases=False), results(_stream_only(synth), phases=False))
    assert_same(sample_results(phases=False), results(_stream_only(sample), phases=False))


def test_analyses_share_one_pass(sample_disk, monkeypatch) -> None:
    cap = sample_disk.select()
    calls = []
    real = Capture.socket_batches

    def counting(self: Capture, *args: Any, **kw: Any) -> Any:
        calls.append(args)
        return real(self, *args, **kw)

    monkeypatch.setattr(Capture, "socket_batches", counting)
    tcpmemlib.where_is_it(cap)
    tcpmemlib.by_process(cap)
    tcpmemlib.reconcile(cap)
    tcpmemlib.idle_cost(cap)
    tcpmemlib.growth(cap)
    tcpmemlib.compare(cap, cap)
    views.socket_totals(cap)
    views.owner_limits_by_phase(cap, "tcpmem-server")
    assert len(calls) == 1


def test_no_socket_rows(tmp_path: Path) -> None:
    write_snapshot(tmp_path, T0, backlog=False, sockets=False)
    write_snapshot(tmp_path, T1, backlog=False, sockets=False)
    cap = _stream_only(load(tmp_path))
    assert tcpmemlib.by_process(cap)["sockets"].tolist() == [0, 0]
    assert tcpmemlib.growth(cap).verdict.label == "no connections"
    assert tcpmemlib.reconcile(cap).by_snapshot["ss_full_sockets"].tolist() == [0, 0]
    assert views.owner_limits_by_phase(cap, "srv").empty
    assert (
        views.capture_overview(cap).set_index("item").loc["sockets rows (all snapshots)"].iloc[0]
        == "0"
    )


# ------------------------------------------------------------------------------------ medians
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(st.none(), st.integers(0, 1 << 32)), st.integers(0, 5)), max_size=30
    )
)
def test_median_max_of_value_counts_equals_pandas_on_the_rows(pairs) -> None:
    values = pd.array([v for v, _ in pairs], dtype="Float64")
    counts = [c for _, c in pairs]
    rows = pd.Series(values).repeat(counts).dropna()
    med, top = summary.median_max(pd.Series(values), pd.Series(counts, dtype="int64"))
    if not len(rows):
        assert math.isnan(med) and math.isnan(top)
    else:
        assert med == float(rows.median()) and top == float(rows.max())
