"""Fleet: ingest throughput and the ranking query on DuckDB and on a Dask LocalCluster.

Run: `.venv/bin/python bench/bench_fleet.py [--hosts H] [--snapshots N] [--pairs P]`
(the issue's size: `--hosts 100 --snapshots 360 --pairs 1000`: 100 hosts x 1 hour at 10 s x ~2k
sockets; the default is small because the machine is shared). `--clone H` also times the ranking
on H hosts cloned from the ingested ones (every table but the socket rows), `--dataset DIR` only
queries an existing dataset.

1. One real snapshot of P loopback connection pairs (bench_load.make_base: collect.sh as root in a
   private network namespace), replicated N times 10 s apart (bench_load.replicate: hard links,
   meta.txt rewritten) for each of H hosts, meta.txt's hostname= and meta_bytes= rewritten.
2. `tcpmemlib.fleet.ingest` of the H captures into a dataset, in this process, one after another:
   wall time, CPU seconds (this process and its children), socket rows per CPU-second; then the
   same ingest as tasks on a LocalCluster of W worker processes (`--dask-workers`, wall time).
3. Each measurement in a fresh child process (its own peak RSS, ru_maxrss):
   - baseline: `pyarrow.parquet.read_table` of every `snapshots` file (the I/O floor of the ranking);
   - `host_ranking` on DuckDB;
   - `host_ranking` on Dask, on a LocalCluster of 2 worker processes (started outside the timing;
     workers' RSS not in the child's figure);
   - baseline for a socket-level question: pyarrow read of every `sockets` file (buffer columns).
   Medians of R rounds, with the ratios to the baseline. Peak RSS is the child's VmHWM (imports
   included: ~280 MiB of pandas/pyarrow/tcpmemlib) and its growth over the RSS after imports.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_load import make_base, replicate  # noqa: E402


def rename_host(capture: Path, host: str) -> None:
    """hostname= in every meta.txt, and meta_bytes= (the bytes before it) kept consistent."""
    for meta in capture.glob("*/meta.txt"):
        lines = meta.read_text().splitlines(keepends=True)
        body = [f"hostname={host}\n" if ln.startswith("hostname=") else ln for ln in lines]
        if body and body[-1].startswith("meta_bytes="):
            text = "".join(body[:-1])
            body = [text, f"meta_bytes={len(text.encode())}\n"]
        meta.write_text("".join(body))


def _cpu_s() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _child(kind: str, ds: str) -> dict[str, float]:
    import pyarrow.parquet as pq

    from tcpmemlib import fleet
    from tcpmemlib.fleet import catalog

    client = None
    if kind == "dask":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
        client = Client(cluster)
    rss0 = _rss_now()
    t0 = time.perf_counter()
    rows = 0
    if kind == "read_snapshots":
        for path in catalog.files(ds, "snapshots"):
            rows += pq.read_table(path).num_rows
    elif kind == "read_sockets":
        for path in catalog.files(ds, "sockets"):
            cols = ["ts", "skmem_r", "skmem_w", "skmem_f"]
            rows += pq.read_table(path, columns=cols).num_rows
    else:
        f = fleet.open_fleet(ds, "duckdb" if kind == "duckdb" else "dask")
        rows = len(fleet.host_ranking(f))
    wall = time.perf_counter() - t0
    rss = _rss_peak()
    if client is not None:
        client.close()
        cluster.close()
    return {"wall_s": wall, "peak_rss_bytes": rss, "rss_before_bytes": rss0, "rows": rows}


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _rss_peak() -> int:
    """VmHWM: this process's peak RSS since its exec (ru_maxrss keeps the forking parent's)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_child(kind: str, ds: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(ds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def clone_hosts(ds: Path, out: Path, hosts: int) -> Path:
    """A dataset of ``hosts`` hosts made from ``ds``'s: every table but ``sockets`` copied with the
    host (column, path, catalog) renamed, host i taken from ingested host i mod n. For the ranking
    query at the issue's size (it reads only ``snapshots``) without ingesting every host."""
    import json

    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tcpmemlib.fleet import catalog
    from tcpmemlib.fleet.layout import CATALOG, host_dir, write_atomic

    cat = catalog.read(ds)
    cat = cat[cat["status"] == "ok"].reset_index(drop=True)
    rows = []
    for i in range(hosts):
        src = cat.iloc[i % len(cat)]
        host = f"clone-{i:03d}"
        files = []
        for rel in json.loads(src["files"]):
            if rel.startswith("sockets/"):
                continue
            table = pq.read_table(ds / rel)
            key = f"{host}@{i}"
            for col, value in (("host", host), ("capture_key", key)):
                at = table.column_names.index(col)
                table = table.set_column(at, col, pa.array([value] * table.num_rows, pa.string()))
            parts = rel.split("/")
            parts[1] = host_dir(host)
            target = "/".join(parts)
            write_atomic(table, out / target)
            files.append(target)
        rows.append(
            {**src.to_dict(), "host": host, "key": f"{host}@{i}", "files": json.dumps(files)}
        )
    frame = pd.DataFrame(rows).astype(catalog.COLUMNS)
    write_atomic(pa.Table.from_pandas(frame, preserve_index=False), out / CATALOG)
    return out


KINDS = ("read_snapshots", "duckdb", "dask", "read_sockets")


def queries(ds: Path, rounds: int, kinds: tuple[str, ...] = KINDS) -> None:
    """Each query in a fresh child, ``rounds`` times; medians and ratios to the pyarrow read."""
    got: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for kind in kinds:
            got[kind].append(run_child(kind, ds))
    base_wall = statistics.median(r["wall_s"] for r in got["read_snapshots"])
    for kind in kinds:
        wall = statistics.median(r["wall_s"] for r in got[kind])
        rss = statistics.median(r["peak_rss_bytes"] for r in got[kind])
        grew = statistics.median(r["peak_rss_bytes"] - r["rss_before_bytes"] for r in got[kind])
        print(
            f"{kind:15} median {wall * 1000:8.1f} ms ({wall / base_wall:6.1f}x read_snapshots), "
            f"peak RSS {rss / 2**20:6.0f} MiB (+{grew / 2**20:.0f} MiB over the process "
            "after imports)"
        )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--snapshots", type=int, default=60)
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--dask-workers",
        type=int,
        default=2,
        metavar="W",
        help="also ingest on a LocalCluster of W worker processes (0: not)",
    )
    ap.add_argument("--child", nargs=2, metavar=("KIND", "DATASET"))
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    ap.add_argument("--dataset", metavar="DIR", help="skip the ingest: query this dataset")
    ap.add_argument(
        "--clone",
        type=int,
        metavar="H",
        help="also time the ranking on H hosts cloned from the ingested ones (all tables but "
        "sockets copied, host renamed)",
    )
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child)))
        return 0
    from tcpmemlib import fleet

    if args.dataset:
        ds = Path(args.dataset)
        queries(ds, args.rounds)
        if args.clone:
            with tempfile.TemporaryDirectory(prefix="tcpmem-bench-clone-") as tmp:
                print(f"ranking over {args.clone} hosts cloned from {ds} (sockets not cloned):")
                queries(
                    clone_hosts(ds, Path(tmp), args.clone),
                    args.rounds,
                    ("read_snapshots", "duckdb", "dask"),
                )
        return 0
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tcpmem-bench-fleet-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        base = make_base(work, args.pairs)
        caps = []
        for h in range(args.hosts):
            cap = replicate(base, work / f"host-{h:03d}", args.snapshots)
            rename_host(cap, f"host-{h:03d}")
            caps.append(cap)
        ds = work / "ds"
        cpu0, t0 = _cpu_s(), time.perf_counter()
        result = fleet.ingest(caps, ds, progress=False, cache=False)
        wall, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
        rows = int(result.rows["socket_rows"].sum())
        assert (result.rows["outcome"] == "added").all(), result.rows
        disk = sum(p.stat().st_size for p in ds.rglob("*.parquet"))
        print(
            f"ingest: {args.hosts} hosts x {args.snapshots} snapshots, {rows:,} socket rows, "
            f"{wall:.1f} s wall, {cpu:.1f} CPU-s: {rows / wall:,.0f} rows/s wall, "
            f"{rows / cpu:,.0f} rows per CPU-second; dataset {disk / 2**20:.1f} MiB"
        )
        if args.dask_workers:
            t1 = time.perf_counter()
            spread = fleet.ingest(
                caps, work / "ds-dask", dask=f"local:{args.dask_workers}", progress=False
            )
            dwall = time.perf_counter() - t1
            assert (spread.rows["outcome"] == "added").all(), spread.rows
            print(
                f"ingest on a LocalCluster of {args.dask_workers} worker processes: {dwall:.1f} s "
                f"wall ({rows / dwall:,.0f} rows/s, {wall / dwall:.2f}x the one-process ingest; "
                "cluster start included)"
            )
        queries(ds, args.rounds)
        if args.clone:
            print(f"ranking over {args.clone} hosts cloned from these (sockets not cloned):")
            clone = clone_hosts(ds, work / "clone", args.clone)
            queries(clone, args.rounds, ("read_snapshots", "duckdb", "dask"))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
