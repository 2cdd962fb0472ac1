"""Building blocks over socket rows: each takes a batch of whole snapshots from
``Capture.socket_batches`` (or any frame of socket rows) and never reads the capture's rows itself.
``summary`` runs them over every batch once per capture.

Conventions shared by every analysis:

- ``buffer_bytes`` = ``skmem_r + skmem_w + skmem_f`` of a socket (bytes the socket has charged to the
  protocol's ``memory_allocated``). A socket that prints no skmem (TIME-WAIT, SYN-RECV) has ``<NA>``
  and adds nothing to a sum.
- A *connection* is a TCP socket in any state except LISTEN, TIME-WAIT, SYN-RECV (minisockets without
  buffers) and UNCONN/CLOSE.
- ``queued_bytes`` = ``recv_q + send_q`` over connections (payload bytes; a listener's Recv-Q/Send-Q is
  its accept queue and backlog, so listeners are left out).
- A socket held by several processes (a listener shared by forked workers) is attributed to the lowest
  pid among its owners; the other pids are listed in ``other_owners``. A socket with no owner (orphans,
  TIME-WAIT, other users' sockets when collected as non-root) is *unattributed*.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from pandas.core.groupby import DataFrameGroupBy

__all__ = [
    "NON_CONNECTION_STATES",
    "SKMEM_SUMS",
    "SNAPSHOT_SUMS",
    "UNATTRIBUTED",
    "attributed_sockets",
    "skmem_sums",
    "snapshot_sums",
    "string_test",
    "tcp_sockets",
]

NON_CONNECTION_STATES = frozenset({"LISTEN", "TIME-WAIT", "SYN-RECV", "UNCONN", "CLOSE", "CLOSED"})
UNATTRIBUTED = "(unattributed)"


def string_test(column: pd.Series, test: Callable[[pd.Series], pd.Series]) -> np.ndarray:
    """``test`` (a function of a string Series giving booleans) of each row's value as a string,
    False for NA; on a categorical column it runs once per category, not once per row."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        cats = pd.Series(column.cat.categories.astype("string"))
        per_cat = test(cats).fillna(False).to_numpy(dtype=bool)
        return np.append(per_cat, False)[column.cat.codes.to_numpy()]
    return test(column.astype("string")).fillna(False).to_numpy(dtype=bool)


# Per-batch building blocks: each takes socket rows (a batch of whole snapshots from
# ``Capture.socket_batches``, or any frame of socket rows) and never reads the capture's rows itself.
def tcp_sockets(sockets: pd.DataFrame) -> pd.DataFrame:
    """The TCP sockets (all states) of ``sockets`` (socket rows: a batch, or a whole frame), with
    ``buffer_bytes`` = r + w + f (NA if no skmem), ``state`` as string, ``is_connection``,
    ``recv_q_bytes``, ``send_q_bytes`` and ``queued_bytes`` (connections only, else 0)."""
    s = sockets
    if "netid" in s.columns and len(s):
        other = string_test(s["netid"], lambda n: ~n.str.startswith("tcp"))  # (NA: TCP)
        if other.any():
            s = s[~other]
    # A shallow copy: with pandas' copy-on-write (always on since 3.0) the columns added below never
    # reach the caller's frame.
    s = s.copy(deep=False)
    r, w, f = (s[c].astype("Int64") for c in ("skmem_r", "skmem_w", "skmem_f"))
    none = r.isna() & w.isna() & f.isna()
    buf = r.fillna(0) + w.fillna(0) + f.fillna(0)
    s["buffer_bytes"] = buf.mask(none)
    s["state"] = s["state"].astype("string")
    s["is_connection"] = ~s["state"].isin(list(NON_CONNECTION_STATES)).fillna(False).astype(bool)
    # Recv-Q/Send-Q are payload bytes only on connections: on a listener they count connections.
    s["recv_q_bytes"] = s["recv_q"].astype("Int64").fillna(0).where(s["is_connection"], 0)
    s["send_q_bytes"] = s["send_q"].astype("Int64").fillna(0).where(s["is_connection"], 0)
    s["queued_bytes"] = (s["recv_q_bytes"] + s["send_q_bytes"]).astype("Int64")
    return s


def attributed_sockets(sockets: pd.DataFrame, owners: pd.DataFrame | None) -> pd.DataFrame:
    """``sockets`` (from :func:`tcp_sockets`) with their primary owner from ``owners`` (the owners
    rows of those sockets, or more): ``pid`` (Int64, NA = unattributed), ``comm`` (string,
    ``(unattributed)`` when no owner), ``other_owners`` (string: the other pids, space-separated, NA
    if none). Rule: the lowest pid among the socket's owners counts the socket."""
    s, own = sockets, owners
    if own is None or not len(own):
        prim = pd.DataFrame(
            {
                "sock_id": pd.Series([], dtype="int64"),
                "pid": pd.Series([], dtype="Int64"),
                "comm": pd.Series([], dtype="string"),
                "other_owners": pd.Series([], dtype="string"),
            }
        )
    else:
        o = own[["sock_id", "pid", "comm"]].dropna(subset=["pid"]).copy()
        o["pid"] = o["pid"].astype("int64")
        o = o.drop_duplicates(["sock_id", "pid"]).sort_values(["sock_id", "pid"])
        first = o.drop_duplicates("sock_id", keep="first")
        rest = o[o.duplicated("sock_id", keep="first")]
        others = rest.groupby("sock_id")["pid"].agg(lambda p: " ".join(str(int(v)) for v in p))
        prim = first[["sock_id", "pid", "comm"]].copy()
        prim["other_owners"] = prim["sock_id"].map(others).astype("string")
        prim["pid"] = prim["pid"].astype("Int64")
        prim["comm"] = prim["comm"].astype("string")
    out = s.drop(columns=[c for c in ("pid", "comm", "other_owners") if c in s.columns]).merge(
        prim, on="sock_id", how="left"
    )
    out["comm"] = out["comm"].astype("string").fillna(UNATTRIBUTED)
    out.loc[out["pid"].isna(), "comm"] = UNATTRIBUTED
    return out


# Output column -> socket column, summed per group by both the per-snapshot and per-process views.
SKMEM_SUMS: dict[str, str] = {
    "buffer_bytes": "buffer_bytes",
    "skmem_r_bytes": "skmem_r",
    "skmem_w_bytes": "skmem_w",
    "skmem_f_bytes": "skmem_f",
    "skmem_t_bytes": "skmem_t",
    "rcvbuf_limit_bytes": "skmem_rb",
    "sndbuf_limit_bytes": "skmem_tb",
    "queued_bytes": "queued_bytes",
}
#: The columns of :func:`per_snapshot_socket_sums` besides ts, host, phase.
SNAPSHOT_SUMS = (
    "tcp_sockets",
    "connections",
    "listeners",
    *SKMEM_SUMS,
    "recv_q_bytes",
    "send_q_bytes",
    "max_f_bytes",
    "sockets_without_skmem",
)


def skmem_sums(grouped: DataFrameGroupBy) -> dict[str, pd.Series]:
    """The memory sums of :data:`SKMEM_SUMS` for a ``DataFrameGroupBy`` of socket rows (Int64; the
    ``UInt32`` socket columns sum into ``UInt64``, which does not mix with signed columns)."""
    return {out: grouped[col].sum().astype("Int64") for out, col in SKMEM_SUMS.items()}


def snapshot_sums(s: pd.DataFrame) -> pd.DataFrame:
    """Per ``ts`` of ``s`` (from :func:`tcp_sockets`; only the snapshots it has rows of): the
    :data:`SNAPSHOT_SUMS` columns, index ``ts``."""
    g = s.assign(
        one=1,
        conn=s["is_connection"].astype("int64"),
        lis=(s["state"] == "LISTEN").fillna(False).astype("int64"),
        noskmem=s["buffer_bytes"].isna().astype("int64"),
    ).groupby("ts")
    return pd.DataFrame(
        {
            "tcp_sockets": g["one"].sum(),
            "connections": g["conn"].sum(),
            "listeners": g["lis"].sum(),
            **skmem_sums(g),
            "recv_q_bytes": g["recv_q_bytes"].sum(),
            "send_q_bytes": g["send_q_bytes"].sum(),
            "max_f_bytes": g["skmem_f"].max(),
            "sockets_without_skmem": g["noskmem"].sum(),
        }
    )
