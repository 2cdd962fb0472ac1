"""Analysis functions on small hand-written captures whose every number is known.

Each capture is a real snapshot directory (the files collect.sh writes, with made-up but well-formed
content) read by ``load_capture``, so the analyses see exactly the frames a real capture gives.
The kernel-truth tests on real sockets are in test_analysis_lab.py.

The two-snapshot capture (phases ``idle`` then ``backlog``), per snapshot:

| socket | owners | idle | backlog |
|---|---|---|---|
| LISTEN 127.0.0.1:5000 | srv pid 100 and srv pid 101 (shared) | 0 | 0 |
| ESTAB :5000 <- :40000 | srv pid 101 | 0 | Recv-Q 65536, r68032 f1600 |
| ESTAB :40000 -> :5000 | hostile name, pid 200 | 0 | 0 |
| ESTAB :5000 <- :40002 (orphan) | none | (absent) | Send-Q 8000, w8192 |
| TIME-WAIT :40004 -> :5000 | none | no skmem | no skmem |

sockstat TCP mem: 0 pages (idle) and 19 pages (backlog) = Σ(r+w+f) exactly; alloc 3 and 4.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
from analysis_helpers import HOSTILE, PAGE, T0, T1, load, traffic_workload, write_snapshot

from tcpmemlib import (
    Verdict,
    by_process,
    compare,
    growth,
    idle_cost,
    load_capture,
    pressure,
    reconcile,
    where_is_it,
)
from tcpmemlib.analysis.growth import LABELS


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synth")
    write_snapshot(root, T0, backlog=False)
    write_snapshot(root, T1, backlog=True)
    (root / "phases.tsv").write_text(
        "2026-11-25T09:59:59.000000000Z\tidle\n2026-11-25T10:00:09.000000000Z\tbacklog\n"
    )
    return load(root)


def test_synthetic_capture_loaded_as_written(synth) -> None:
    assert len(synth.meta) == 2
    assert list(synth.meta.sort_values("ts")["phase"]) == ["idle", "backlog"]
    assert len(synth.sockets) == 9


# ------------------------------------------------------------------------------------ by_process
def test_by_process_attribution_rule_and_sums(synth) -> None:
    bp = by_process(synth)
    back = bp[bp["phase"] == "backlog"].set_index(bp[bp["phase"] == "backlog"]["comm"].astype(str))
    # every socket is counted exactly once: 5 sockets, 77824 bytes = 19 pages
    assert int(back["sockets"].sum()) == 5
    assert int(back["buffer_bytes"].sum()) == 68032 + 1600 + 8192
    rows = bp[bp["phase"] == "backlog"].set_index("pid")
    # the shared listener goes to the lowest pid, which names the other owner
    assert int(rows.loc[100, "sockets"]) == 1
    assert rows.loc[100, "other_owners"] == "101"
    assert int(rows.loc[100, "shared_sockets"]) == 1
    assert int(rows.loc[101, "buffer_bytes"]) == 68032 + 1600
    assert int(rows.loc[101, "skmem_r_bytes"]) == 68032
    assert int(rows.loc[101, "queued_bytes"]) == 65536
    # rb is summed as a limit: the listener's and the connection's
    assert int(rows.loc[101, "rcvbuf_limit_bytes"]) == 131072
    assert int(rows.loc[101, "rss_bytes"]) == 12000 * 1024
    assert rows.loc[101, "cgroup"] == "/app.slice"
    assert int(rows.loc[101, "cgroup_sock_bytes"]) == 69632
    # the hostile name is kept verbatim, as data
    assert rows.loc[200, "comm"] == HOSTILE
    assert int(rows.loc[200, "buffer_bytes"]) == 0
    # orphan + TIME-WAIT: the (unattributed) row, pid NA, never dropped
    un = back.loc["(unattributed)"]
    assert pd.isna(un["pid"])
    assert int(un["sockets"]) == 2
    assert int(un["buffer_bytes"]) == 8192


def test_by_process_sum_equals_all_sockets_every_snapshot(synth) -> None:
    bp = by_process(synth)
    s = synth.sockets
    total = (
        (s["skmem_r"].fillna(0) + s["skmem_w"].fillna(0) + s["skmem_f"].fillna(0))
        .groupby(s["ts"])
        .sum()
    )
    per = bp.groupby("ts")["buffer_bytes"].sum()
    assert per.to_dict() == {k: int(v) for k, v in total.items()}
    assert set(bp["comm"].astype(str)) >= {"(unattributed)", "srv", HOSTILE}


# ------------------------------------------------------------------------------------ reconcile
def test_reconcile_exact_capture_has_no_gap(synth) -> None:
    r = reconcile(synth)
    assert list(r.by_snapshot["gap_bytes"]) == [0, 0]
    assert list(r.by_snapshot["skmem_sum_bytes"]) == [0, 19 * PAGE]
    assert list(r.by_snapshot["pcpu_reserve_bound_bytes"]) == [256 * PAGE * 2] * 2
    assert not r.by_snapshot["unexplained"].any()
    assert r.verdict.label == "consistent"
    assert list(r.by_snapshot["hidden_sockets"]) == [0, 0]  # alloc = the full sockets ss listed


def _sockstat(synth, extra_bytes: int, after_extra: int | None, alloc_extra: int = 0):
    """synth's sockstat with ``extra_bytes`` more TCP mem than the sockets hold, and (unless None)
    an after-read ``after_extra`` above them (what collect.sh reads just after ss)."""
    st = synth.sockstat.copy()
    skmem = st["tcp_mem_bytes"].astype("Int64")
    st["tcp_mem_bytes"] = skmem + extra_bytes
    if after_extra is not None:
        st["tcp_mem_after_bytes"] = (skmem + after_extra).astype("Int64")
    st["tcp_alloc"] = st["tcp_alloc"].astype("Int64") + alloc_extra
    return dataclasses.replace(synth, sockstat=st)


def test_reconcile_flags_gap_outside_the_bracket(synth) -> None:
    # read before and after ss, both 3 MiB above what the sockets hold, nothing hidden
    r = reconcile(_sockstat(synth, 3 << 20, 3 << 20))
    assert r.by_snapshot["bound_known"].all()
    assert r.by_snapshot["unexplained"].all() and r.by_snapshot["persistent"].all()
    assert r.verdict.label == "unexplained gap"
    assert r.verdict.figures["max_abs_gap_bytes"] == 3 * (1 << 20)


def test_reconcile_gap_inside_the_bracket_is_explained(synth) -> None:
    # 3 MiB above before ss, 3 MiB below after: the sockets' memory moved while ss read
    r = reconcile(_sockstat(synth, 3 << 20, -(3 << 20)))
    assert list(r.by_snapshot["skew_bytes"]) == [6 << 20, 6 << 20]
    assert not r.by_snapshot["outside_bracket"].any()
    assert r.verdict.label == "consistent"


def test_reconcile_without_after_read_under_traffic_says_the_bound_is_unknown(synth) -> None:
    # an older capture (no after-read): the backlog snapshot moved traffic, the idle one has none
    # measured (first snapshot): neither gap is called unexplained (issue 11.5)
    r = reconcile(_sockstat(synth, 3 << 20, None))
    assert r.by_snapshot["sockstat_after_bytes"].isna().all()
    assert not r.by_snapshot["unexplained"].any()
    assert r.by_snapshot["outside_bracket"].all()
    assert r.verdict.label == "bound unknown under traffic"
    assert "unknown" in r.verdict.text and "not evidence of missing memory" in r.verdict.text


def test_reconcile_names_sockets_hidden_in_other_namespaces(synth) -> None:
    r = reconcile(_sockstat(synth, 3 << 20, 3 << 20, alloc_extra=100))
    assert list(r.by_snapshot["hidden_sockets"]) == [100, 100]
    assert r.verdict.label == "hidden sockets"
    assert "100 TCP socket(s) ss could not see" in r.verdict.text


def test_reconcile_isolated_gap_is_transient(synth) -> None:
    st = synth.sockstat.copy()
    late = st["ts"] == st["ts"].max()
    st.loc[late, "tcp_mem_bytes"] = st.loc[late, "tcp_mem_bytes"] + 3 * (1 << 20)
    st["tcp_mem_after_bytes"] = st["tcp_mem_bytes"].astype("Int64")
    r = reconcile(dataclasses.replace(synth, sockstat=st))
    assert list(r.by_snapshot["unexplained"]) == [False, True]
    assert not r.by_snapshot["persistent"].any()
    assert r.verdict.label == "transient gaps"


# ------------------------------------------------------------------------------------ where
def test_where_is_it_numbers(synth) -> None:
    w = where_is_it(synth)
    bs = w.by_snapshot.set_index("phase")
    assert int(bs.loc["backlog", "sockstat_tcp_mem_bytes"]) == 19 * PAGE
    assert int(bs.loc["backlog", "skmem_buffer_bytes"]) == 19 * PAGE
    assert int(bs.loc["idle", "pcp_free_bytes"]) == 20 * PAGE
    listed_kb = 800_000 + 1000 + 50000 + 40000 + 30000 + 2000 + 1000 + 1000 + 5000
    assert int(bs.loc["idle", "unlisted_bytes"]) == (1_000_000 - listed_kb) * 1024 - 20 * PAGE
    # 68 kB less MemFree in backlog: unlisted rose by exactly that
    assert int(bs.loc["backlog", "unlisted_bytes"] - bs.loc["idle", "unlisted_bytes"]) == 68 * 1024
    assert int(bs.loc["idle", "process_rss_bytes"]) == (1000 + 10000 + 12000 + 5000) * 1024
    assert int(bs.loc["idle", "buff_cache_bytes"]) == (1000 + 50000 + 12000) * 1024
    assert int(bs.loc["idle", "socket_slab_bytes"]) == (8 + 4) * PAGE  # TCP + sock_inode_cache
    places = w.places.set_index("place")
    assert places.loc["process RSS (top RES)", "contains_socket_buffers"] == "no"
    assert places.loc["top/free buff/cache", "contains_socket_buffers"] == "no"
    assert places.loc["sockstat TCP mem", "contains_socket_buffers"] == "yes"
    assert int(places.loc["sockstat TCP mem", "delta_bytes"]) == 19 * PAGE
    assert float(places.loc["process RSS (top RES)", "delta_ratio"]) == 0
    assert int(places.loc["RSS of socket owners", "high_bytes"]) == (10000 + 12000 + 5000) * 1024
    assert int(places.loc["RSS of socket owners", "delta_bytes"]) == 0
    assert w.verdict.label == "outside RSS and buff/cache"
    assert isinstance(w.verdict, Verdict)
    assert "76.0 KiB" in w.verdict.text  # 19 pages peak
    # the owners' RSS did not move: the page says so, computed
    assert w.verdict.figures["owner_rss_follows_socket_load"] == 0.0
    assert "does not grow" in places.loc["RSS of socket owners", "why"]
    assert "rose with the socket load" not in w.verdict.text
    # slabinfo has no skb caches here: their change is 0, and the text says Slab moved by 0 B
    assert "the skb slabs, which hold skb heads: 0 B" in w.verdict.text


def test_where_says_when_the_owners_rss_rises_with_the_socket_load(synth) -> None:
    """An application that keeps the data in its own buffers too (Redis' output buffers): the
    owners' RSS rises with the socket load, and the page says so instead of "does not grow"."""
    procs = synth.processes.copy()
    late = (procs["ts"] == procs["ts"].max()) & (procs["pid"] == 101)
    procs.loc[late, "rss_bytes"] = procs.loc[late, "rss_bytes"] + (100 << 20)
    w = where_is_it(dataclasses.replace(synth, processes=procs))
    places = w.places.set_index("place")
    assert int(places.loc["RSS of socket owners", "delta_bytes"]) == 100 << 20
    assert "rose with the socket load" in places.loc["RSS of socket owners", "why"]
    assert w.verdict.figures["owner_rss_follows_socket_load"] == 1.0
    assert "user space" in w.verdict.text and "The operator pays for both" in w.verdict.text


# ------------------------------------------------------------------------------------ growth
def test_growth_labels_by_phase(synth) -> None:
    g = growth(synth)
    labels = dict(
        zip(g.by_phase["phase"].astype(str), g.by_phase["label"].astype(str), strict=True)
    )
    assert labels == {"idle": "not held while idle", "backlog": "grows with queued data"}
    assert g.verdict.label == "grows with queued data"
    bs = g.by_snapshot.set_index("phase")
    assert int(bs.loc["backlog", "connections"]) == 3
    assert int(bs.loc["backlog", "queued_bytes"]) == 65536 + 8000
    # socket traffic: +65536 received and +65536 acked over 10 s
    assert float(bs.loc["backlog", "traffic_bytes_per_s"]) == pytest.approx(2 * 65536 / 10)
    assert float(bs.loc["backlog", "ip_traffic_bytes_per_s"]) == pytest.approx(2 * 100_000 / 10)
    assert pd.isna(bs.loc["idle", "traffic_bytes_per_s"])
    for label in g.by_phase["label"].astype(str):
        assert label in LABELS


def test_growth_judges_per_connection_not_box_wide(tmp_path: Path) -> None:
    """A drained phase where 3 of 200 connections still hold a little data (8000 B each, more than
    a page in all) is not "grows with queued data": judged per connection (issue 11.5)."""
    write_snapshot(tmp_path, T0, backlog=False)
    snap = next(tmp_path.iterdir())
    lines = []
    for i in range(200):
        rq, r = (8000, 8960) if i < 3 else (0, 0)
        lines.append(
            f"ESTAB {rq} 0 127.0.0.1:5000 127.0.0.1:{41000 + i} "
            f'users:(("srv",pid=101,fd={10 + i})) ino:{100 + i} sk:{100 + i} <-> '
            f"skmem:(r{r},rb131072,t0,tb16384,f0,w0,o0,bl0,d0)"
        )
    (snap / "ss_tcp.txt").write_text("\n".join(lines) + "\n")
    g = growth(load(tmp_path))
    row = g.by_phase.iloc[0]
    assert int(row["connections"]) == 200 and int(row["connections_with_buffer"]) == 3
    assert float(row["holding_share"]) == pytest.approx(3 / 200)
    assert row["label"] == "not held while idle"
    assert g.verdict.label == "not held while idle"


# ------------------------------------------------------------------------------------ pressure
def test_pressure_thresholds_and_counters(synth) -> None:
    p = pressure(synth)
    row = p.by_snapshot.iloc[-1]
    assert (int(row["min_bytes"]), int(row["pressure_bytes"]), int(row["max_bytes"])) == (
        1000 * PAGE,
        2000 * PAGE,
        3000 * PAGE,
    )
    assert float(row["fraction_of_pressure"]) == pytest.approx(19 / 2000)
    c = p.counters.set_index("counter")
    assert int(c.loc["PruneCalled", "delta"]) == 1
    assert pd.isna(c.loc["TCPAbortOnMemory", "delta"])  # not printed by this "kernel": NA, not 0
    # PruneCalled alone: a queue was collapsed to fit, nothing was dropped (issue 11.5)
    assert c.loc["PruneCalled", "kind"] == "compaction"
    assert p.verdict.label == "queues compacted"
    assert "PruneCalled +1" in p.verdict.text
    assert "nothing was dropped" in p.verdict.text
    assert "drops" not in p.verdict.label and "Data was lost" not in p.verdict.text


def test_pressure_says_drops_only_for_counters_that_drop_data(synth) -> None:
    ns = synth.netstat.copy()
    late = (ns["ts"] == ns["ts"].max()) & (ns["counter"].astype("string") == "RcvPruned")
    ns["value"] = ns["value"].astype("Int64")
    ns.loc[late, "value"] = 5
    p = pressure(dataclasses.replace(synth, netstat=ns))
    assert p.verdict.label == "memory drops"
    assert "Data was lost: RcvPruned +5" in p.verdict.text
    assert "PruneCalled +1" in p.verdict.text


# ------------------------------------------------------------------------------------ compare
def test_compare_phases(synth) -> None:
    c = compare(synth.select(phase="idle"), synth.select(phase="backlog"))
    assert c.matched.startswith("the busy part of each capture")
    sysm = c.system.set_index("metric")
    assert float(sysm.loc["kernel_socket_bytes", "delta"]) == 68032 + 1600 + 8192
    assert bool(sysm.loc["kernel_socket_bytes", "significant"])
    # the owners' RSS did not move: the total cost rose by the kernel's change
    assert float(sysm.loc["total_cost_bytes", "delta"]) == 68032 + 1600 + 8192
    assert float(sysm.loc["socket_owner_rss_bytes", "before"]) == (10000 + 12000 + 5000) * 1024
    socks = c.sockets.set_index("metric")
    assert float(socks.loc["socket_buffer_max_bytes", "after"]) == 68032 + 1600
    assert float(socks.loc["receiving_connections", "after"]) == 1
    assert float(socks.loc["sending_connections", "after"]) == 1  # the orphan's w8192
    # sockstat moved 19 pages, well inside the per-CPU reserve noise (2 MiB): not significant
    assert not bool(sysm.loc["sockstat_tcp_mem_bytes", "significant"])
    assert c.verdict.label == "increased"
    proc = c.by_process.set_index(["comm", "metric"])
    assert float(proc.loc[("srv", "buffer_bytes"), "delta"]) == 68032 + 1600
    assert not c.limits["changed"].any()


def test_compare_reports_limit_change(tmp_path: Path) -> None:
    before, after = tmp_path / "before", tmp_path / "after"
    write_snapshot(before, T0, backlog=False)
    write_snapshot(after, T1, backlog=False, rb_srv=65536)
    c = compare(load(before), load(after))
    lim = c.limits.set_index(["comm", "limit"])
    assert float(lim.loc[("srv", "rcvbuf"), "before_median_bytes"]) == 131072
    assert float(lim.loc[("srv", "rcvbuf"), "after_median_bytes"]) == 65536
    assert bool(lim.loc[("srv", "rcvbuf"), "changed"])
    assert not bool(lim.loc[("srv", "sndbuf"), "changed"])
    sc = c.sysctls.set_index("name")
    assert bool(sc.loc["net.core.rmem_max", "changed"])
    assert "rcvbuf 128.0 KiB -> 64.0 KiB" in c.verdict.text


# ------------------------------------------------------------------------------------ idle_cost
def test_idle_cost_objects_and_merging(synth) -> None:
    ic = idle_cost(synth)
    obj = ic.by_object.set_index("cache")
    assert float(obj.loc["TCP", "bytes_per_socket"]) == 2368  # slab objsize, all IPv4
    assert obj.loc["tcp_bind_bucket", "shown_as"] == "eventpoll_epi"
    assert "tcp_bind2_bucket" in obj.loc["tcp_bind_bucket", "merged_with"]
    # one connect()-ed connection (local port 40000) in each snapshot, among 3 + 4 full sockets
    assert float(obj.loc["tcp_bind_bucket", "objects_per_socket"]) == pytest.approx(2 / 7)
    assert not bool(obj.loc["eventpoll_epi", "counted"])
    expected = 2368 + 832 + 192 + 192 + 2 * 128 * 2 / 7  # no lsm caches in this slabinfo
    assert ic.per_socket_bytes == pytest.approx(expected)
    assert ic.verdict.label == "per-socket cost"
    assert pd.isna(ic.regression_slab_bytes_per_socket)  # socket count never changed


def test_idle_cost_without_slabinfo_says_so(tmp_path: Path) -> None:
    write_snapshot(tmp_path, T0, backlog=False, slabinfo=False)
    ic = idle_cost(load(tmp_path))
    assert ic.verdict.label == "partial: no slabinfo"
    assert "not collected" in ic.verdict.text
    assert ic.per_socket_bytes == pytest.approx(2304)  # /proc/net/protocols TCP size only
    assert where_is_it(load(tmp_path)).by_snapshot["socket_slab_bytes"].isna().all()


# ------------------------------------------------------------------------------------ edge cases
def test_no_sockets_capture(tmp_path: Path) -> None:
    write_snapshot(tmp_path, T0, backlog=False, sockets=False)
    write_snapshot(tmp_path, T1, backlog=False, sockets=False)
    cap = load(tmp_path)
    assert len(cap.sockets) == 0
    bp = by_process(cap)
    assert list(bp["comm"].astype(str)) == ["(unattributed)"] * 2
    assert list(bp["sockets"]) == [0, 0]
    assert growth(cap).verdict.label == "no connections"
    assert reconcile(cap).verdict.label == "consistent"
    assert where_is_it(cap).verdict.label == "no socket buffers"
    assert idle_cost(cap).verdict.label == "per-socket cost"
    assert pressure(cap).verdict.label == "no pressure"
    assert compare(cap, cap).verdict.label == "no significant change"


def test_single_snapshot(synth) -> None:
    one = synth.select(phase="backlog")
    assert len(one.meta) == 1
    g = growth(one)
    assert g.by_snapshot["traffic_bytes_per_s"].isna().all()
    assert list(g.by_phase["label"].astype(str)) == ["grows with queued data"]
    assert reconcile(one).verdict.label == "consistent"
    w = where_is_it(one)
    assert w.places["delta_bytes"].fillna(0).eq(0).all()
    assert "did not change" in w.verdict.text
    c = compare(one, one)
    assert not c.system["significant"].fillna(False).any()
    assert (c.system["n_before"].fillna(1) <= 1).all()


def test_top_process_names_the_largest_holder_and_its_share():
    import pandas as pd

    from tcpmemlib import top_process

    rows = pd.DataFrame(
        {
            "pid": pd.array([10, 20, pd.NA], dtype="Int64"),
            "comm": pd.array(["small", "<b>big</b>", "(unattributed)"], dtype="string"),
            "sockets": pd.array([1, 3, 2], dtype="Int64"),
            "buffer_bytes": pd.array([1 << 20, 3 << 20, 0], dtype="Int64"),
        }
    )
    v = top_process(rows)
    assert v.label == "top process"
    assert v.figures["pid"] == 20 and v.figures["buffer_bytes"] == 3 << 20
    assert v.figures["total_buffer_bytes"] == 4 << 20
    assert "<b>big</b> (pid 20) held 3.0 MiB" in v.text and "75%" in v.text
    none = top_process(rows.assign(buffer_bytes=pd.array([0, 0, 0], dtype="Int64")))
    assert "No process" in none.text
    # who holds the connections, when nobody holds bytes (an idle nginx)
    idle = rows.assign(
        buffer_bytes=pd.array([0, 0, 0], dtype="Int64"),
        connections=pd.array([496, 504, 0], dtype="Int64"),
    )
    v = top_process(idle)
    assert "1000 connections are held by <b>big</b> (pid 20) 504, small (pid 10) 496" in v.text
    assert v.figures["connections"] == 1000


def test_traffic_counts_only_sockets_seen_in_consecutive_snapshots():
    """growth's traffic: Δ(bytes_received + bytes_acked) of each socket between a snapshot and the
    one just before, clipped at 0 (a counter that went back is a new socket), per second."""
    from tcpmemlib.analysis.traffic import socket_traffic

    s, ts = traffic_workload()
    got = socket_traffic(s, pd.Index(ts))
    assert got.isna().tolist() == [True, False, False]
    assert got.iloc[1:].tolist() == [200 / 10, 40 / 10]


@pytest.mark.parametrize("rows", ["all", "none"])
def test_tcp_sockets_leaves_the_captures_frame_alone(rows):
    """tcp_sockets adds columns to a shallow copy (copy-on-write): the frame given must not change."""
    from tcpmemlib.analysis.socket_rows import tcp_sockets

    sample = Path(__file__).resolve().parents[1] / "data" / "sample.tar.gz"
    cap = load_capture(sample)
    if rows == "none":  # no socket rows: the frame is not filtered, so no new object from that
        cap = cap.select(start="2100-01-01")
    before = cap.sockets.copy()
    out = tcp_sockets(cap.sockets)
    assert "buffer_bytes" in out.columns
    pd.testing.assert_frame_equal(cap.sockets, before)
