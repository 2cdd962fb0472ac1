"""Socket traffic between snapshots, from the sockets' byte counters (``bytes_received`` +
``bytes_acked``): a socket is matched from one snapshot to the next by :data:`TRAFFIC_KEY`, read a
batch at a time (the previous batch's last snapshot is carried over the batch boundary).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "TRAFFIC_KEY",
    "KeyIds",
    "socket_traffic",
    "traffic_deltas",
    "traffic_rate",
    "traffic_rows",
]

#: What names a socket from one snapshot to the next.
TRAFFIC_KEY = ["sk", "local_address", "local_port", "peer_address", "peer_port"]


class KeyIds:
    """Integer ids for the strings of the ``TRAFFIC_KEY`` columns, the same in every batch (a
    batch's categories are its own): a socket is matched across batches by ids, not by rows of
    strings. NA counts as the empty string."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {"": 0}

    def __call__(self, column: pd.Series) -> np.ndarray:
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        table = np.fromiter(
            (self.ids.setdefault(str(u), len(self.ids)) for u in uniques),
            dtype=np.int64,
            count=len(uniques),
        )
        return np.append(table, 0)[codes]  # code -1 (NA): the last entry, 0 = ""


def traffic_rows(s: pd.DataFrame, order: pd.Index, ids: KeyIds | None = None) -> pd.DataFrame:
    """One row per (snapshot of ``order``, socket) of ``s`` (socket rows with the ``TRAFFIC_KEY``
    columns, bytes_received and bytes_acked): the key as ids (``ids``, shared by every batch of a
    pass), ``snap`` (position in ``order``) and ``total`` (bytes_received + bytes_acked, NA as 0).
    Rows of other snapshots are dropped."""
    ids = ids if ids is not None else KeyIds()
    d = pd.DataFrame({c: ids(s[c]) for c in TRAFFIC_KEY})
    d["snap"] = order.get_indexer(s["ts"])
    total = s["bytes_received"].astype("Int64").fillna(0) + s["bytes_acked"].astype("Int64").fillna(
        0
    )
    d["total"] = total.to_numpy(dtype="int64")
    d = d[d["snap"] >= 0].drop_duplicates(["snap", *TRAFFIC_KEY])
    return d.reset_index(drop=True)


def traffic_deltas(
    rows: pd.DataFrame, snapshots: int, carry: pd.DataFrame | None = None
) -> tuple[np.ndarray, pd.DataFrame | None]:
    """Per snapshot (``snapshots`` of them): Σ over the sockets of ``rows`` (:func:`traffic_rows`)
    that were also in the snapshot just before of total − total there, clipped at 0 (a counter that
    went back is a new socket).

    ``carry``: the rows of the previous batch's last snapshot, so a pair across the batch boundary
    counts; returns the sums and the carry for the next batch."""
    if carry is not None and len(carry):
        rows = pd.concat([carry, rows], ignore_index=True)
    per_snap = np.zeros(snapshots, dtype=np.float64)
    if not len(rows):
        return per_snap, carry
    # A socket's rows sorted by snapshot; a row whose socket was also in the snapshot just before
    # counts total - total there (clipped at 0), summed per snapshot.
    sock = rows.groupby(TRAFFIC_KEY, sort=False, dropna=False).ngroup().to_numpy()
    snap = rows["snap"].to_numpy()
    total = rows["total"].to_numpy(dtype="int64")
    by = np.lexsort((snap, sock))
    sock, snap_s, total = sock[by], snap[by], total[by]
    pair = np.zeros(len(by), dtype=bool)
    pair[1:] = (sock[1:] == sock[:-1]) & (snap_s[1:] == snap_s[:-1] + 1)
    delta = np.zeros(len(by), dtype=np.int64)
    delta[1:] = np.clip(total[1:] - total[:-1], 0, None)
    per_snap += np.bincount(snap_s[pair], weights=delta[pair], minlength=snapshots)
    last = rows[snap == snap.max()].reset_index(drop=True)
    return per_snap, last


def traffic_rate(deltas: np.ndarray, order: pd.Index, rows: int) -> pd.Series:
    """Per ts of ``order``: socket traffic (bytes/s) since the previous snapshot (NA for the first),
    from the summed deltas per snapshot (:func:`traffic_deltas`) and the number of TCP socket rows
    (no rows: NA everywhere)."""
    out = pd.Series(pd.NA, index=order, dtype="Float64")
    if len(order) < 2 or not rows:
        return out
    per_snap = np.asarray(deltas, dtype=np.float64)
    dt = order.to_series().diff().dt.total_seconds().to_numpy()
    ok = dt > 0  # (NaN for the first snapshot)
    rate = np.full(len(order), np.nan)
    rate[ok] = per_snap[ok] / dt[ok]
    return pd.Series(pd.array(rate, dtype="Float64"), index=out.index)


def socket_traffic(sockets: pd.DataFrame, order: pd.Index) -> pd.Series:
    """Per ts of ``order``: socket traffic (bytes/s) of the socket rows ``sockets`` taken as one
    batch (the analyses sum the capture's batches in the summary pass instead)."""
    rows = traffic_rows(sockets, order) if len(sockets) else None
    deltas = traffic_deltas(rows, len(order))[0] if rows is not None else np.zeros(len(order))
    return traffic_rate(deltas, order, len(sockets))
