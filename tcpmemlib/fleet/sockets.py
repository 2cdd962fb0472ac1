"""One pass over a capture's socket rows: the rows themselves to the dataset, and their sums.

``SocketPass(writer)`` takes the ``(sockets, owners)`` batches of ``Capture.socket_batches(None,
owners=True)`` (whole snapshots each) and, per batch:

- writes every socket row (every protocol) with its primary owner: ``pid`` (Int64, NA when no
  process holds it), ``comm`` and ``owner_pids`` (how many processes hold it), the ``owners`` tuples
  left out (the primary owner and the count say what a drill-down needs);
- sums the TCP sockets per snapshot, per (snapshot, primary owner) and, where the socket rows name
  their network namespace (``netns``: its inode; NA before collector 2), per (snapshot, namespace).

The definitions are the analyses' (docs/design.md §3, ``by_process``): TCP = ``netid`` starting with
``tcp`` or not printed; ``buffer_bytes`` = skmem r + w + f (NA when the socket printed no skmem, so it
adds nothing); a *connection* is any state but LISTEN, TIME-WAIT, SYN-RECV, UNCONN, CLOSE;
``queued_bytes`` = Recv-Q + Send-Q of connections; a socket several processes hold counts once, for
the lowest pid (tests/test_fleet_ingest.py checks the sums against ``by_process`` and ``growth``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

__all__ = ["NON_CONNECTION_STATES", "UNATTRIBUTED", "SocketPass", "primary_owners", "tcp_rows"]

NON_CONNECTION_STATES = ["LISTEN", "TIME-WAIT", "SYN-RECV", "UNCONN", "CLOSE", "CLOSED"]
MINI_STATES = ["TIME-WAIT", "SYN-RECV"]
UNATTRIBUTED = "(unattributed)"
SKMEM = {
    "skmem_r_bytes": "skmem_r",
    "skmem_w_bytes": "skmem_w",
    "skmem_f_bytes": "skmem_f",
    "skmem_t_bytes": "skmem_t",
}
SUMS = ("buffer_bytes", *SKMEM, "recv_q_bytes", "send_q_bytes", "queued_bytes")


def primary_owners(owners: pd.DataFrame | None) -> pd.DataFrame:
    """Per ``sock_id``: ``pid`` (the lowest owner pid, Int64), its ``comm`` (string) and
    ``owner_pids`` (Int64: distinct pids holding the socket)."""
    if owners is None or not len(owners):
        return pd.DataFrame(
            {
                "sock_id": pd.Series([], dtype="int64"),
                "pid": pd.Series([], dtype="Int64"),
                "comm": pd.Series([], dtype="string"),
                "owner_pids": pd.Series([], dtype="Int64"),
            }
        )
    o = owners[["sock_id", "pid", "comm"]].dropna(subset=["pid"])
    o = o.assign(pid=o["pid"].astype("int64"), comm=o["comm"].astype("string"))
    o = o.drop_duplicates(["sock_id", "pid"]).sort_values(["sock_id", "pid"], kind="stable")
    counts = o.groupby("sock_id", sort=False).size()
    first = o.drop_duplicates("sock_id", keep="first").set_index("sock_id")
    return pd.DataFrame(
        {
            "sock_id": first.index.to_numpy(dtype="int64"),
            "pid": first["pid"].astype("Int64").to_numpy(),
            "comm": first["comm"].to_numpy(),
            "owner_pids": counts.reindex(first.index).astype("Int64").to_numpy(),
        }
    ).astype({"comm": "string"})


def tcp_rows(s: pd.DataFrame) -> pd.DataFrame:
    """The TCP rows of ``s`` (socket rows with ``pid``) with ``buffer_bytes``, ``is_connection``,
    ``is_full`` (not a TIME-WAIT/SYN-RECV minisocket), the queue columns in bytes (connections only)."""
    netid = s["netid"].astype("string")
    t = s[netid.str.startswith("tcp").fillna(True).to_numpy(dtype=bool)].copy(deep=False)
    r, w, f = (t[c].astype("Int64") for c in ("skmem_r", "skmem_w", "skmem_f"))
    none = r.isna() & w.isna() & f.isna()
    t["buffer_bytes"] = (r.fillna(0) + w.fillna(0) + f.fillna(0)).mask(none)
    state = t["state"].astype("string")
    t["is_connection"] = ~state.isin(NON_CONNECTION_STATES).fillna(False).to_numpy(dtype=bool)
    t["is_listener"] = (state == "LISTEN").fillna(False).to_numpy(dtype=bool)
    t["is_full"] = ~state.isin(MINI_STATES).fillna(False).to_numpy(dtype=bool)
    conn = t["is_connection"]
    t["recv_q_bytes"] = t["recv_q"].astype("Int64").fillna(0).where(conn, 0)
    t["send_q_bytes"] = t["send_q"].astype("Int64").fillna(0).where(conn, 0)
    t["queued_bytes"] = t["recv_q_bytes"] + t["send_q_bytes"]
    for out, col in SKMEM.items():
        t[out] = t[col].astype("Int64")
    return t


def _sums(t: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    g = t.assign(
        one=1,
        conn=t["is_connection"].astype("int64"),
        lis=t["is_listener"].astype("int64"),
        full=t["is_full"].astype("int64"),
    ).groupby(keys, sort=True, dropna=False)
    out = pd.DataFrame(
        {
            "tcp_sockets": g["one"].sum(),
            "connections": g["conn"].sum(),
            "listeners": g["lis"].sum(),
            "full_sockets": g["full"].sum(),
            **{c: g[c].sum() for c in SUMS},
        }
    )
    return out.astype("Int64").reset_index()


class SocketPass:
    """Accumulates one capture's socket sums while ``write`` stores the socket rows (module doc).

    ``write``: called with each batch of socket rows ready to store (``date`` and ``capture_key``
    added by ``prepare``); ``None`` to only sum."""

    def __init__(self, prepare: Callable[[pd.DataFrame], pd.DataFrame], write: Callable) -> None:
        self.prepare, self.write = prepare, write
        self.per_snapshot: list[pd.DataFrame] = []
        self.per_process: list[pd.DataFrame] = []
        self.per_netns: list[pd.DataFrame] = []
        self.rows = 0

    def add(self, sockets: pd.DataFrame, owners: pd.DataFrame | None) -> None:
        s = sockets.drop(columns=[c for c in ("owners", "host") if c in sockets.columns])
        prim = primary_owners(owners)
        s = s.merge(prim, on="sock_id", how="left")
        s["comm"] = s["comm"].astype("string").mask(s["pid"].isna(), UNATTRIBUTED)
        self.rows += len(s)
        if self.write is not None:
            self.write(self.prepare(s))
        t = tcp_rows(s)
        if not len(t):
            return
        self.per_snapshot.append(_sums(t, ["ts"]))
        keyed = t.assign(key_pid=t["pid"].fillna(-1).astype("int64"))
        procs = _sums(keyed, ["ts", "key_pid"])
        comm = keyed.groupby(["ts", "key_pid"], sort=True)["comm"].first()
        procs["comm"] = comm.to_numpy()
        self.per_process.append(procs)
        if "netns" in t.columns:  # the namespace's inode (NA: not recorded, collector 1)
            ns = t[t["netns"].notna().to_numpy(dtype=bool)]
            if len(ns):
                ns = ns.assign(netns=ns["netns"].astype("Int64"))
                self.per_netns.append(_sums(ns, ["ts", "netns"]))

    def snapshot_sums(self) -> pd.DataFrame:
        """Per snapshot with TCP rows: ``tcp_sockets``, ``connections``, ``listeners``,
        ``full_sockets`` and the byte sums (Int64)."""
        return _cat(self.per_snapshot, ["ts"])

    def process_sums(self) -> pd.DataFrame:
        """Per (snapshot, primary owner): ``pid`` (NA: unattributed), ``comm`` and the sums."""
        out = _cat(self.per_process, ["ts", "key_pid"])
        if not len(out):
            out["comm"] = pd.Series([], dtype="string")
        out["pid"] = out["key_pid"].astype("Int64").mask(out["key_pid"] == -1)
        out["comm"] = out["comm"].astype("string")
        return out.drop(columns="key_pid")

    def netns_sums(self) -> pd.DataFrame | None:
        """Per (snapshot, namespace inode), or None when no socket row names its namespace."""
        return _cat(self.per_netns, ["ts", "netns"]) if self.per_netns else None


def _cat(parts: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    if not parts:
        cols = {
            k: pd.Series([], dtype="datetime64[ns, UTC]" if k == "ts" else "int64") for k in keys
        }
        empty = {
            c: pd.Series([], dtype="Int64")
            for c in ("tcp_sockets", "connections", "listeners", "full_sockets", *SUMS)
        }
        return pd.DataFrame({**cols, **empty})
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def dates(ts: pd.Series) -> np.ndarray:
    """The UTC date (``YYYY-MM-DD``) of each timestamp: the ``date=`` partition."""
    return ts.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
