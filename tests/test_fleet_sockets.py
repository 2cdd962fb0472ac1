"""fleet.sockets on the real sample's socket rows: the pass's sums add up, and the ``netns`` column
(the namespace inode; NA in this collector-1 sample, so the test sets one) is summed per namespace."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

import tcpmemlib as tm
from tcpmemlib.fleet.sockets import SocketPass, primary_owners

DATA = Path(__file__).resolve().parent.parent / "data"


def _capture() -> tm.Capture:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tm.load_capture(DATA / "sample-before.tar.gz", cache=False)


def test_sums_add_up_and_rows_keep_their_owner() -> None:
    cap = _capture()
    stored: list[pd.DataFrame] = []
    passed = SocketPass(lambda s: s, stored.append)
    for sockets, owners in cap.socket_batches(None, owners=True):
        passed.add(sockets, owners)
    rows = pd.concat(stored, ignore_index=True)
    assert len(rows) == cap.socket_rows == passed.rows
    snaps = passed.snapshot_sums().set_index("ts")
    procs = passed.process_sums().groupby("ts")[["tcp_sockets", "buffer_bytes"]].sum()
    pd.testing.assert_frame_equal(
        snaps[["tcp_sockets", "buffer_bytes"]].astype("int64"), procs.astype("int64")
    )
    owned = rows[rows["pid"].notna()]
    assert (owned["owner_pids"] >= 1).all()
    assert (rows.loc[rows["pid"].isna(), "comm"] == "(unattributed)").all()
    prim = primary_owners(cap.owners)
    low = cap.owners.groupby("sock_id")["pid"].min().astype("Int64")
    assert (prim.set_index("sock_id")["pid"] == low.reindex(prim["sock_id"])).all()


def test_a_netns_column_is_summed_per_namespace() -> None:
    cap = _capture()
    unnamed = SocketPass(lambda s: s, None)
    for sockets, owners in cap.socket_batches(None, owners=True):
        unnamed.add(sockets, owners)
    assert unnamed.netns_sums() is None  # every row NA: no namespace table
    passed = SocketPass(lambda s: s, None)
    for sockets, owners in cap.socket_batches(None, owners=True):
        inode = pd.array([4026531840 + i % 2 for i in sockets["sock_id"]], dtype="Int64")
        named = sockets.assign(netns=inode)
        passed.add(named, owners)
    ns = passed.netns_sums()
    assert ns is not None and set(ns["netns"]) == {4026531840, 4026531841}
    per_ts = ns.groupby("ts")[["tcp_sockets", "buffer_bytes"]].sum().astype("int64")
    snaps = passed.snapshot_sums().set_index("ts")[["tcp_sockets", "buffer_bytes"]]
    pd.testing.assert_frame_equal(per_ts, snaps.astype("int64"))
