"""Real nginx (Debian nginx, 2 workers) with idle HTTP/1.1 keep-alive clients: who holds the
connections, as tcpmemlib reads it from a collect.sh capture, against the ground truth read at the
same moments (ss -tanmp per worker pid, stub_status, /proc VmRSS). Every buffer is ~0 here: the
connections, not the bytes, are what the pages must show.

The verdict tests at the end assert what issue 11 demands of the analyses: who holds the connections.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from realserver.loaded import Loaded
from realserver.workloads import missing, run_nginx

import tcpmemlib

pytestmark = pytest.mark.slow

CLIENTS = 300
MiB = 1 << 20
DATA = Path(__file__).resolve().parent.parent / "data" / "real"


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    """One run (about 10 s): nginx alone, then 300 idle keep-alive clients, then none."""
    if gone := missing("nginx"):
        pytest.fail(f"missing: {', '.join(gone)} (`make system-deps` as root installs the servers)")
    out = tmp_path_factory.mktemp("nginx") / "run"
    # in a namespace of our own: the other sockets of a shared box would move growth's labels
    truth = run_nginx(
        out, clients=CLIENTS, snapshots=(2, 3, 2), name="idle", netns=True, timeout_s=120
    )
    return Loaded.load(out / "idle", truth)


def test_workload_ran_as_designed(idle: Loaded):
    t = idle.truth
    assert [p["phase"] for p in t["phases"]] == ["baseline", "idle", "closed"]
    assert len(t["worker_pids"]) == 2
    for i in idle.indices("idle"):
        for reading in idle.readings(i):
            workers = [reading["processes"][str(p)] for p in t["worker_pids"]]
            assert sum(w["established"] for w in workers) == CLIENTS
            assert reading["stub_status"]["waiting"] == CLIENTS  # + its own request in active


def test_worker_connection_counts_are_exact(idle: Loaded):
    """by_process counts each worker's connections exactly as ss showed them per pid; the listener
    the master and workers share is counted once, for the master (the lowest pid)."""
    t = idle.truth
    master, workers = t["master_pid"], t["worker_pids"]
    for i in range(len(idle.ts)):
        reading = idle.readings(i)[1]
        rows = idle.process_rows(i)
        for pid in workers:
            expected = reading["processes"][str(pid)]["established"]
            row = rows[rows["pid"] == pid]
            if expected == 0:  # it holds only the shared listener, counted for the master
                assert len(row) == 0
                continue
            assert list(row["comm"]) == ["nginx"]
            assert int(row["sockets"].iloc[0]) == expected
            assert int(row["buffer_bytes"].iloc[0]) == 0
        m = idle.process_row(i, master)
        assert int(m["sockets"]) == 1 and int(m["shared_sockets"]) == 1
        assert sorted(int(p) for p in str(m["other_owners"]).split()) == sorted(workers)


def test_by_process_ranks_the_workers_first_at_the_most_connections(idle: Loaded):
    bp = idle.by_process
    nginx = bp[bp["pid"].isin([idle.truth["master_pid"], *idle.truth["worker_pids"]])]
    busiest = nginx.groupby("ts", observed=True)["sockets"].sum().idxmax()
    rows = bp[bp["ts"] == busiest].sort_values("sockets", ascending=False)
    rows = rows[rows["comm"] == "nginx"]
    assert set(rows["pid"].head(2).astype(int)) == set(idle.truth["worker_pids"])
    assert int(rows["sockets"].head(2).sum()) == CLIENTS


def test_worker_rss_matches_proc(idle: Loaded):
    for i in range(len(idle.ts)):
        for pid in [idle.truth["master_pid"], *idle.truth["worker_pids"]]:
            lo, hi = sorted(r["processes"][str(pid)]["vmrss_bytes"] for r in idle.readings(i))
            got = idle.rss_bytes(i, pid)
            assert 0.97 * lo - MiB <= got <= 1.03 * hi + MiB, (i, pid, got, lo, hi)


# ---------------------------------------------------------------------------------------- verdicts
def test_top_process_names_the_workers_when_buffers_are_zero(idle: Loaded):
    """Issue 11 §4: with every buffer at 0, the interesting moment is the one with the most
    connections, and the answer names who holds them (the nginx workers), not "no process"."""
    i = idle.indices("idle")[0]
    verdict = tcpmemlib.top_process(idle.process_rows(i))
    assert "No process held" not in verdict.text or "connections" in verdict.text, verdict.text
    for pid in idle.truth["worker_pids"]:
        assert f"nginx (pid {pid})" in verdict.text, verdict.text


def test_growth_sees_idle_connections_holding_nothing(idle: Loaded):
    by_phase = tcpmemlib.growth(idle.capture).by_phase
    labels = dict(zip(by_phase["phase"].astype(str), by_phase["label"].astype(str), strict=True))
    assert labels["idle"] == "not held while idle"


def test_bundled_sample_matches_its_ground_truth():
    """data/real/nginx-idle.tar.gz (1000 clients; scripts/make-real-sample.py): each worker's
    connections through by_process equal the ground truth stored beside it, in every snapshot."""
    truth = json.loads((DATA / "nginx-idle.truth.json").read_text())
    run = Loaded.load(DATA / "nginx-idle.tar.gz", truth, cache=False)
    workers = truth["run"]["worker_pids"]
    idle_counts = set()
    for i, row in enumerate(truth["snapshots"]):
        rows = run.process_rows(i)
        for n, pid in enumerate(workers, start=1):
            assert row[f"worker{n}_pid"] == pid
            got = rows[rows["pid"] == pid]["sockets"]
            assert (int(got.iloc[0]) if len(got) else 0) == row[f"worker{n}_established"]
        if row["phase"] == "idle":
            idle_counts.add(tuple(row[f"worker{n}_established"] for n in (1, 2)))
    assert len(idle_counts) == 1 and sum(idle_counts.pop()) == 1000
