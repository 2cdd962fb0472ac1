"""Socket-row parts: Arrow IPC stream (lz4) against Parquet (lz4), and how the Arrow table is built.

    .venv/bin/python bench/bench_parts.py [--rounds 20] [--snapshots 7]

Input: the ss files of ``data/sample.tar.gz`` (a real capture: loopback connections of the lab's
processes; ``--snapshots`` of them, about 2k sockets each), parsed by ``read_ss`` and shaped as a
chunk writes them (``sockstore.PartWriter``: ``snapshot``, the socket columns, ``owner_code``).
Each round, in this one process and in turn:

- the Arrow table built by ``pa.Table.from_pandas`` and by ``sockstore``'s column-by-column build;
- that table written to memory as an lz4 Arrow IPC stream (what a part is) and as lz4 Parquet (what
  parts were: the writer the cache used before), then read back whole from each.

Prints the median CPU time of each step (ms), the bytes written, and the ratios. Checks first that
both builds give the same table and both formats read back the same table.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tcpmemlib import schema, sockstore
from tcpmemlib.chunks import OwnerCodes
from tcpmemlib.parsers import ss
from tcpmemlib.parsers.text import read_text
from tcpmemlib.tables import str_category

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample.tar.gz"


def batch(snapshots: int) -> Any:
    """The socket rows of the sample's first ``snapshots`` snapshots, as a part holds them."""
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(SAMPLE) as tar:
        tar.extractall(tmp, filter="data")
        files = sorted(Path(tmp).rglob("ss_tcp.txt*"))[:snapshots]
        text = "".join(read_text(f)[1] for f in files)
    frame = ss.read_numbered(None, text, categories=schema.SOCKET_CATEGORIES).frame
    frame["netid"] = str_category(frame["netid"].astype("string").fillna("tcp"))
    frame["netns"] = pd.array(np.zeros(len(frame), dtype=np.int64), dtype="Int64")
    codes = OwnerCodes().codes(frame.pop("owners").to_numpy())
    frame.insert(0, "snapshot", np.zeros(len(frame), dtype=np.int32))
    frame["owner_code"] = codes.astype(np.int32)
    return frame


def cpu_ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.process_time()
    out = fn()
    return (time.process_time() - start) * 1e3, out


def write_ipc(table: Any) -> bytes:
    sink = io.BytesIO()
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue()


def write_parquet(table: Any) -> bytes:
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, table.schema, compression="lz4", write_statistics=False) as w:
        w.write_table(table)
    return sink.getvalue()


def read_ipc(data: bytes) -> Any:
    options = pa.ipc.IpcReadOptions(use_threads=False)
    return pa.ipc.open_stream(pa.BufferReader(data), options=options).read_all()


def read_parquet(data: bytes) -> Any:
    return pq.read_table(io.BytesIO(data), use_threads=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--snapshots", type=int, default=7)
    args = ap.parse_args()
    frame = batch(args.snapshots)
    part_schema = sockstore._part_schema(schema.socket_rows_template())
    a = pa.Table.from_pandas(frame, schema=part_schema, preserve_index=False)
    b = sockstore._arrow_table(frame, part_schema)
    assert a.equals(b), "the two builds differ"
    assert read_ipc(write_ipc(a)).equals(read_parquet(write_parquet(a))), "formats differ"
    steps: dict[str, Callable[[], Any]] = {
        "build: pa.Table.from_pandas": lambda: pa.Table.from_pandas(
            frame, schema=part_schema, preserve_index=False
        ),
        "build: column by column (sockstore)": lambda: sockstore._arrow_table(frame, part_schema),
        "write: Parquet lz4": lambda: write_parquet(a),
        "write: Arrow IPC stream lz4": lambda: write_ipc(a),
    }
    ipc, parquet = write_ipc(a), write_parquet(a)
    steps["read: Parquet lz4"] = lambda: read_parquet(parquet)
    steps["read: Arrow IPC stream lz4"] = lambda: read_ipc(ipc)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            times[name].append(cpu_ms(fn)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(frame):,} socket rows, {len(a.schema)} columns; {args.rounds} rounds, medians")
    print("| step | CPU ms (median) |")
    print("|---|---:|")
    for name, value in med.items():
        print(f"| {name} | {value:.2f} |")
    print(f"\nbytes: Parquet lz4 {len(parquet):,}, Arrow IPC lz4 {len(ipc):,}")
    pairs = [("build", "build: pa.Table.from_pandas", "build: column by column (sockstore)")]
    pairs += [(k, f"{k}: Parquet lz4", f"{k}: Arrow IPC stream lz4") for k in ("write", "read")]
    for what, old, new in pairs:
        print(f"{what}: new / old = {med[new] / med[old]:.2f}")


if __name__ == "__main__":
    main()
