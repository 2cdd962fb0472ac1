"""The fleet dataset end to end: real captures of several hosts, ingested, asked on DuckDB and on a
Dask LocalCluster of two worker processes.

Hosts: ``box-a``, a capture made here by collect.sh (3 snapshots, 1 s apart) while two processes
hold 60 loopback connection pairs, and ``box-b``, a copy of it (meta.txt's ``hostname=`` and
``meta_bytes=`` rewritten in both); ``vm``: the three data/ samples (before, tuned and the lab run).
Checked: both engines (DuckDB, Dask on a LocalCluster of two worker processes) give equal frames;
each host's figures equal the single-capture analyses (pressure, by_process, growth, reconcile,
compare); ingesting again adds no row and rewrites no file; a grown capture replaces its rows; a
capture that lost its oldest snapshot keeps it once; a damaged capture is listed and the batch goes
on; a hostile host name stays one directory; the Dask ingest writes the same dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from collect_helpers import COLLECT, LoopbackPairs

import tcpmemlib as tm
from tcpmemlib import fleet
from tcpmemlib.fleet import catalog

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
SNAPSHOTS = 3


def rename_host(capture: Path, host: str) -> None:
    """Give every snapshot of ``capture`` the host name ``host`` (meta.txt's ``hostname=``, and its
    ``meta_bytes=`` trailer kept equal to the bytes before it)."""
    for meta in capture.glob("*/meta.txt"):
        lines = meta.read_text().splitlines(keepends=True)
        body = [f"hostname={host}\n" if ln.startswith("hostname=") else ln for ln in lines]
        if body and body[-1].startswith("meta_bytes="):
            text = "".join(body[:-1])
            body = [text, f"meta_bytes={len(text.encode())}\n"]
        meta.write_text("".join(body))


def collect(out: Path, n: int = SNAPSHOTS) -> None:
    res = subprocess.run(
        ["sh", str(COLLECT), "-o", str(out), "-n", str(n), "-i", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """host -> capture: two real collect.sh captures (hosts box-a, box-b), the samples."""
    base = tmp_path_factory.mktemp("fleet-captures")
    with LoopbackPairs(60, n_procs=2):
        collect(base / "box-a")
    rename_host(base / "box-a", "box-a")
    shutil.copytree(base / "box-a", base / "box-b")
    rename_host(base / "box-b", "box-b")
    out = {"box-a": base / "box-a", "box-b": base / "box-b"}
    for name in ("sample.tar.gz", "sample-before.tar.gz", "sample-tuned.tar.gz"):
        shutil.copy(DATA / name, base / name)
    return out | {"samples": base}


def load(path: Path) -> tm.Capture:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tm.load_capture(path, cache=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, captures: dict[str, Path]) -> Path:
    into = tmp_path_factory.mktemp("fleet-ds") / "ds"
    bundles = sorted(captures["samples"].glob("*.tar.gz"))
    result = fleet.ingest([captures["box-a"], captures["box-b"], *bundles], into, progress=False)
    assert list(result.rows["outcome"]) == ["added"] * 5, result.rows
    return into


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from distributed import Client, LocalCluster

    scratch = str(tmp_path_factory.mktemp("dask"))
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            local_directory=scratch,
        ) as lc,
        Client(lc) as client,
    ):
        yield client


def answers(ds: Path, engine: str) -> dict[str, pd.DataFrame]:
    f = fleet.open_fleet(ds, engine)
    roll = fleet.rollout(
        f,
        ["vm"],
        ["box-a", "box-b"],
        before=("2026-11-25T23:48:00", "2026-11-25T23:48:07.5"),
        after=("2026-11-25T23:48:07.5", "2026-11-25T23:49:00"),
    )
    return {
        "ranking": fleet.host_ranking(f),
        "comm": fleet.top_holders(f, n=None),
        "cgroup": fleet.top_holders(f, by="cgroup", n=None),
        "verdicts": fleet.host_verdicts(f),
        "rollout_hosts": roll.hosts,
        "rollout_groups": roll.groups,
    }


@pytest.fixture(scope="module")
def duck_answers(dataset: Path) -> dict[str, pd.DataFrame]:
    """The dataset's answers by DuckDB, the reference two tests compare with (read-only)."""
    return answers(dataset, "duckdb")


def test_duckdb_and_dask_cluster_agree(
    dataset: Path, cluster: object, duck_answers: dict[str, pd.DataFrame]
) -> None:
    duck = duck_answers
    dask = answers(dataset, "dask")
    for name, frame in duck.items():
        pd.testing.assert_frame_equal(frame, dask[name], obj=name)
    assert set(duck["ranking"]["host"]) == {"box-a", "box-b", "vm"}
    assert len(cluster.scheduler_info()["workers"]) == 2  # type: ignore[attr-defined]


def test_ranking_equals_pressure_host_by_host(dataset: Path, captures: dict[str, Path]) -> None:
    ranking = fleet.host_ranking(fleet.open_fleet(dataset)).set_index("host")
    for host in ("box-a", "box-b"):
        p = tm.pressure(load(captures[host])).by_snapshot
        row = ranking.loc[host]
        assert row["peak_tcp_mem_bytes"] == p["tcp_mem_bytes"].max()
        assert row["pressure_bytes"] == p["pressure_bytes"].min()
        assert row["snapshots"] == SNAPSHOTS
        headroom = (p["pressure_bytes"] - p["tcp_mem_bytes"]).min()
        assert row["min_headroom_bytes"] == headroom
    vm = [load(p) for p in sorted(captures["samples"].glob("*.tar.gz"))]
    assert ranking.loc["vm", "peak_tcp_mem_bytes"] == max(
        tm.pressure(c).by_snapshot["tcp_mem_bytes"].max() for c in vm
    )


def test_processes_and_snapshots_equal_the_analyses(
    dataset: Path, captures: dict[str, Path]
) -> None:
    f = fleet.open_fleet(dataset)
    for host, path in (("box-a", captures["box-a"]), ("vm", DATA / "sample.tar.gz")):
        cap = load(path)
        key = f"{host}@{cap.meta['ts'].min().strftime('%Y%m%dT%H%M%S')}"
        mine = f.sql(
            "SELECT ts, pid, comm, tcp_sockets AS sockets, buffer_bytes, skmem_r_bytes, "
            "skmem_w_bytes, queued_bytes, rss_bytes FROM processes "
            "WHERE host = ? AND starts_with(capture_key, ?) ORDER BY ts, pid",
            [host, key],
        )
        theirs = tm.by_process(cap)
        theirs = theirs[theirs["sockets"] > 0]
        cols = ["sockets", "buffer_bytes", "skmem_r_bytes", "skmem_w_bytes", "queued_bytes"]
        a = theirs.groupby("comm")[cols].sum().sort_index()
        b = mine.groupby("comm")[cols].sum().sort_index()
        b.index = b.index.astype("string")
        a.index = a.index.astype("string")
        pd.testing.assert_frame_equal(a.astype("int64"), b.astype("int64"), obj=host)
        assert len(mine) == len(theirs)
        snaps = f.sql(
            "SELECT connections, buffer_bytes, queued_bytes, unexplained FROM snapshots "
            "WHERE host = ? AND starts_with(capture_key, ?) ORDER BY ts",
            [host, key],
        )
        g = tm.growth(cap).by_snapshot
        for col in ("connections", "buffer_bytes", "queued_bytes"):
            assert list(snaps[col]) == list(g[col].astype("int64")), col
        r = tm.reconcile(cap).by_snapshot
        assert list(snaps["unexplained"]) == list(r["unexplained"].astype(bool))


def test_verdicts_are_the_single_capture_labels(dataset: Path, captures: dict[str, Path]) -> None:
    v = fleet.host_verdicts(fleet.open_fleet(dataset)).set_index("host")
    cap = load(captures["box-b"])
    assert v.loc["box-b", "growth"] == tm.growth(cap).verdict.label
    assert v.loc["box-b", "reconcile"] == tm.reconcile(cap).verdict.label
    assert v.loc["box-b", "pressure"] == tm.pressure(cap).verdict.label
    latest = load(captures["samples"] / "sample-tuned.tar.gz")  # vm's latest capture
    assert v.loc["vm", "growth"] == tm.growth(latest).verdict.label
    assert v.loc["vm", "captures"] == 3
    assert not v.loc["vm", "unexplained_gap"] or tm.reconcile(latest).verdict.label == (
        "unexplained gap"
    )


def test_rollout_equals_compare(dataset: Path, captures: dict[str, Path]) -> None:
    f = fleet.open_fleet(dataset)
    before = load(captures["samples"] / "sample-before.tar.gz")
    after = load(captures["samples"] / "sample-tuned.tar.gz")
    result = tm.compare(before, after)
    assert result.matched  # both are one phase, send_backlog: every snapshot on each side
    system = result.system.set_index("metric")
    for metric, theirs in (
        ("buffer_bytes", "kernel_socket_bytes"),
        ("sockstat_tcp_mem_bytes", "sockstat_tcp_mem_bytes"),
    ):
        roll = fleet.rollout(
            f,
            ["vm"],
            [],
            before=("2026-11-25T23:48:00", "2026-11-25T23:48:07.5"),
            after=("2026-11-25T23:48:07.5", "2026-11-25T23:49:00"),
            metric=metric,
        )
        row = roll.hosts.set_index("host").loc["vm"]
        for col in ("before", "after", "delta", "delta_low", "delta_high", "noise"):
            assert row[col] == pytest.approx(float(system.loc[theirs, col])), (metric, col)
        assert bool(row["significant"]) == bool(system.loc[theirs, "significant"])
    assert roll.groups.set_index("group").loc["A", "reduced"] == 1


def test_reingest_changes_nothing_and_a_grown_capture_replaces(
    tmp_path: Path, captures: dict[str, Path]
) -> None:
    src = tmp_path / "box-c"
    shutil.copytree(captures["box-a"], src)
    rename_host(src, "box-c")
    snaps = sorted(p for p in src.iterdir() if p.is_dir())
    held = tmp_path / "held"
    held.mkdir()
    shutil.move(str(snaps[-1]), held / snaps[-1].name)  # the capture before its last snapshot
    ds = tmp_path / "ds"
    fleet.ingest([src], ds, progress=False)
    files = {p: p.stat().st_mtime_ns for p in ds.rglob("*.parquet")}
    again = fleet.ingest([src], ds, progress=False)
    assert list(again.rows["outcome"]) == ["unchanged"]
    assert {p: p.stat().st_mtime_ns for p in ds.rglob("*.parquet")} == files
    f = fleet.open_fleet(ds)
    rows = int(f.sql("SELECT count(*) AS n FROM sockets")["n"].iloc[0])
    shutil.move(str(held / snaps[-1].name), src / snaps[-1].name)  # it grew
    grown = fleet.ingest([src], ds, progress=False)
    assert list(grown.rows["outcome"]) == ["updated"]
    f = fleet.open_fleet(ds)
    assert int(f.sql("SELECT count(*) AS n FROM snapshots")["n"].iloc[0]) == SNAPSHOTS
    assert int(f.sql("SELECT count(*) AS n FROM sockets")["n"].iloc[0]) > rows
    assert len(catalog.read(ds)) == 1
    assert catalog.orphans(ds) == []  # the old generation's files are gone


def test_a_touched_bundle_is_read_once_more_then_not(tmp_path: Path) -> None:
    bundle = tmp_path / "b.tar.gz"
    shutil.copy(DATA / "sample-before.tar.gz", bundle)
    ds = tmp_path / "ds"
    fleet.ingest([bundle], ds, progress=False)
    files = {p: p.stat().st_mtime_ns for p in ds.glob("*/host=*/*/*.parquet")}
    assert len(files) == 7  # every table but problems (none) and netns (no namespaces)
    os.utime(bundle, ns=(1, 1))  # its files look different, its content is the same
    read = fleet.ingest([bundle], ds, progress=False).rows
    assert list(read["outcome"]) == ["unchanged"] and float(read["seconds"].iloc[0]) > 0
    skipped = fleet.ingest([bundle], ds, progress=False).rows
    assert list(skipped["outcome"]) == ["unchanged"] and float(skipped["seconds"].iloc[0]) == 0
    assert {p: p.stat().st_mtime_ns for p in ds.glob("*/host=*/*/*.parquet")} == files


def test_a_capture_that_lost_its_oldest_snapshot_keeps_it_once(
    tmp_path: Path, captures: dict[str, Path]
) -> None:
    """collect.sh's disk budget removes the oldest snapshots while new ones arrive: the dataset
    keeps the removed one from the first ingest and every snapshot once."""
    src = tmp_path / "box-d"
    shutil.copytree(captures["box-a"], src)
    rename_host(src, "box-d")
    snaps = sorted(p for p in src.iterdir() if p.is_dir())
    aside = tmp_path / "aside"
    aside.mkdir()
    shutil.move(str(snaps[-1]), aside / snaps[-1].name)
    ds = tmp_path / "ds"
    fleet.ingest([src], ds, progress=False)
    shutil.rmtree(snaps[0])  # pruned by the budget
    shutil.move(str(aside / snaps[-1].name), src / snaps[-1].name)  # a newer snapshot
    fleet.ingest([src], ds, progress=False)
    f = fleet.open_fleet(ds)
    n = f.sql("SELECT count(*) AS n, count(DISTINCT ts) AS d FROM snapshots")
    assert int(n["n"].iloc[0]) == int(n["d"].iloc[0]) == SNAPSHOTS
    whole = load(captures["box-a"]).socket_rows
    assert int(f.sql("SELECT count(*) AS n FROM sockets")["n"].iloc[0]) == whole
    cat = catalog.read(ds)
    assert sorted(cat["snapshots"]) == [1, SNAPSHOTS - 1]
    assert int(cat["socket_rows"].sum()) == whole
    assert catalog.orphans(ds) == []
    again = fleet.ingest([src], ds, progress=False)
    assert list(again.rows["outcome"]) == ["unchanged"]


def test_a_damaged_capture_is_listed_and_the_batch_goes_on(
    tmp_path: Path, captures: dict[str, Path]
) -> None:
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes((DATA / "sample-before.tar.gz").read_bytes()[:3000])  # cut bundle
    empty = tmp_path / "empty"
    (empty / "20260101T000000.000000000Z").mkdir(parents=True)  # a snapshot without meta.txt
    ds = tmp_path / "ds"
    result = fleet.ingest([broken, empty, captures["box-a"]], ds, progress=False)
    outcome = dict(zip(result.rows["source"], result.rows["outcome"], strict=True))
    assert outcome[str(captures["box-a"])] == "added"
    assert outcome[str(empty)] == "failed"
    assert outcome[str(broken)] in ("failed", "added")
    cat = catalog.read(ds)
    failed = cat[cat["status"] == "failed"]
    assert str(empty) in set(failed["source"])
    assert failed["error"].notna().all()
    if outcome[str(broken)] == "added":  # read in part: its problems are in the dataset
        f = fleet.open_fleet(ds)
        assert int(f.sql("SELECT count(*) AS n FROM problems")["n"].iloc[0]) > 0


def test_dask_ingest_writes_the_same_layout(
    tmp_path: Path,
    captures: dict[str, Path],
    duck_answers: dict[str, pd.DataFrame],
    cluster: object,
) -> None:
    ds = tmp_path / "ds"
    bundles = sorted(captures["samples"].glob("*.tar.gz"))
    result = fleet.ingest(
        [captures["box-a"], captures["box-b"], *bundles],
        ds,
        dask=cluster.scheduler.address,  # type: ignore[attr-defined]  # as `--dask tcp://...` does
        progress=False,
    )
    assert sorted(result.rows["outcome"]) == ["added"] * 5
    local, remote = duck_answers, answers(ds, "duckdb")
    for name, frame in local.items():
        pd.testing.assert_frame_equal(frame, remote[name], obj=name)
    keys = {json.dumps(sorted(p.relative_to(ds).parts[:2])) for p in ds.rglob("*.parquet")}
    assert any("host=box-a" in k for k in keys)
    for path in ds.glob("sockets/host=*/date=*/*.parquet"):
        assert pq.read_schema(path).field("host").type == "string"


def test_socket_rows_drill_down(dataset: Path) -> None:
    duck = fleet.open_fleet(dataset)
    top = fleet.top_holders(duck).iloc[0]
    rows = fleet.socket_rows(duck, top["top_host"], comm=top["comm"], limit=5)
    assert len(rows) == 5
    assert (rows["comm"] == top["comm"]).all()
    assert rows["buffer_bytes"].is_monotonic_decreasing
    when = rows["ts"].iloc[0]
    one = fleet.socket_rows(duck, top["top_host"], ts=when, limit=None)
    assert (one["ts"] == when).all() and len(one) > 5
    other = fleet.socket_rows(
        fleet.open_fleet(dataset, "dask"), top["top_host"], ts=when, limit=None
    )
    keys = ["sock_id", "buffer_bytes", "comm", "pid"]
    pd.testing.assert_frame_equal(
        one[keys].astype({"comm": "string", "pid": "Int64", "buffer_bytes": "Int64"}),
        other[keys].astype({"comm": "string", "pid": "Int64", "buffer_bytes": "Int64"}),
    )


def test_a_hostile_host_name_stays_one_directory(tmp_path: Path, captures: dict[str, Path]) -> None:
    src = tmp_path / "cap"
    shutil.copytree(captures["box-a"], src)
    name = "../../evil/<b>x</b> %2F"
    rename_host(src, name)
    ds = tmp_path / "ds"
    result = fleet.ingest([src], ds, progress=False)
    assert list(result.rows["outcome"]) == ["added"], result.rows
    assert not (tmp_path / "evil").exists()
    assert all(p.resolve().is_relative_to(ds.resolve()) for p in tmp_path.rglob("*.parquet"))
    hosts = {p.relative_to(ds).parts[1] for p in ds.glob("*/host=*")}
    assert len(hosts) == 1 and "/" not in hosts.pop()
    assert list(fleet.host_ranking(fleet.open_fleet(ds))["host"]) == [name]
