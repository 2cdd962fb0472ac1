"""views.py: the tables the pages show, sorted by what the page is about, in human units, read
from the one pass over the socket rows."""

from __future__ import annotations

import pandas as pd
import pytest
from analysis_helpers import T0, T1, load, write_snapshot

import tcpmemlib as tm
from tcpmemlib import views
from tcpmemlib.analysis.process import busiest_snapshot


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synth")
    write_snapshot(root, T0, backlog=False)
    write_snapshot(root, T1, backlog=True)
    (root / "phases.tsv").write_text(
        "2026-11-25T09:59:59.000000000Z\tidle\n2026-11-25T10:00:09.000000000Z\tbacklog\n"
    )
    return load(root)


def test_human_units_for_bytes_rates_and_per_connection() -> None:
    frame = pd.DataFrame(
        {
            "phase": ["a"],
            "buffer_bytes": [3 << 20],
            "traffic_bytes_per_s": [5 << 20],
            "buffer_bytes_per_connection": [2048],
            "connections": [7],
        }
    )
    out = views.mib_columns(frame)
    assert list(out.columns) == [
        "phase",
        "buffer (MiB)",
        "traffic (MiB/s)",
        "buffer per connection (KiB)",
        "connections",
    ]
    assert out.iloc[0].tolist()[1:] == [3.0, 5.0, 2.0, 7]
    kib = views.scaled_columns(frame)
    assert "traffic (KiB/s)" in kib.columns and float(kib["traffic (KiB/s)"].iloc[0]) == 5120


def test_metric_table_leaves_ratios_alone() -> None:
    frame = pd.DataFrame(
        {"metric": ["kernel_socket_bytes"], "before": [2.0 * (1 << 20)], "ratio": [0.25]}
    )
    out = views.metric_table(frame)
    assert out["metric"].iloc[0] == "kernel_socket (MiB)"
    assert float(out["before"].iloc[0]) == 2.0 and float(out["ratio"].iloc[0]) == 0.25


def test_held_sockets_follow_each_connection_and_name_its_peer(synth) -> None:
    held = views.held_sockets(synth)
    # two connections held a page or more (the backlog snapshot only): the reader with 69632 B,
    # the orphan with 8192 B; largest single socket first
    assert held["max_buffer_bytes"].tolist() == [68032 + 1600, 8192]
    first, orphan = held.iloc[0], held.iloc[1]
    assert first["owner"] == "srv (pid 101)" and first["peer"] == "127.0.0.1:40000"
    assert int(first["inode"]) == 11 and int(first["snapshots_held"]) == 1
    assert orphan["owner"] == "(unattributed)" and orphan["peer"] == "127.0.0.1:40002"
    peers = views.by_peer(synth)
    assert peers.iloc[0]["peer_address"] == "127.0.0.1"
    assert int(peers.iloc[0]["connections"]) == 2
    assert int(peers.iloc[0]["largest_socket_bytes"]) == 68032 + 1600


def test_rows_at_sorts_by_bytes_then_connections(synth) -> None:
    procs = tm.by_process(synth)
    moment, why = busiest_snapshot(procs)
    # 76 KiB at most: under a MiB, so the moment is the one with the most connections
    assert "most connections" in why
    rows = views.rows_at(procs, moment)
    assert list(rows["buffer_bytes"]) == sorted(rows["buffer_bytes"], reverse=True)


def test_limit_counts_per_phase(synth) -> None:
    counts = views.limit_counts(synth).set_index("phase")
    assert list(counts.index) == ["idle", "backlog"]
    assert int(counts.at["backlog", "receiving_connections"]) == 1
    assert int(counts.at["backlog", "largest_socket_bytes"]) == 68032 + 1600


def test_problem_summary_puts_one_problem_of_many_snapshots_on_one_row() -> None:
    problems = pd.DataFrame(
        {
            "snapshot": ["s2", "s1", "s1", "s3"],
            "file": ["sysctl.txt", "sysctl.txt", "ss_tcp.txt", "sysctl.txt"],
            "line": pd.array([pd.NA, pd.NA, 7, pd.NA], dtype="Int64"),
            "reason": ["missing: x", "missing: x", "bad line", "missing: x"],
            "severity": ["collector", "collector", "error", "collector"],
        }
    )
    out = views.problem_summary(problems)
    assert out["severity"].tolist() == ["error", "collector"]  # errors first
    row = out.iloc[1]
    assert int(row["snapshots"]) == 3 and row["first_snapshot"] == "s1"


def test_reconcile_table_fits_a_page(synth) -> None:
    table = views.reconcile_table(tm.reconcile(synth).by_snapshot)
    assert table.columns[0] == "t_s" and table["t_s"].tolist() == [0.0, 10.0]
    assert "ts" not in table.columns and "host" not in table.columns
    assert table["gap_bytes"].tolist() == [0, 0]
