"""Containers: the TCP sockets of every network namespace, per namespace and per container (#12).

A box that runs its servers in containers keeps each container's sockets in a network namespace of
its own. collect.sh (collector_version >= 2, as root) reads every namespace it finds
(docs/design.md §1 "Network namespaces"); the loader gives each socket row its ``netns`` (inode) and
lists the namespaces per snapshot in ``Capture.netns``. Older captures hold one namespace: their
sockets have ``netns`` NA and count as the collector's own.

A *container* here is a memory cgroup: the cgroup of the socket's owning process (the primary
owner, the lowest pid, as ``by_process`` counts it; ``Capture.proc_cgroups``), or, for a socket no
process holds, the cgroup of its namespace's pid (``Capture.netns``). Its ``cgroup_sock_bytes`` is
what the kernel charged that cgroup for socket buffers: cgroup v2 ``memory.stat sock``, else v1
``memory.kmem.tcp.usage_in_bytes`` (v1 counts only once a tcp limit was set); NA when the capture
has neither. Both are hierarchical: a parent cgroup's figure includes its children's.

Functions (each returns a frame; the socket rows are read once, a batch at a time, memoized):

``namespaces(cap)``: ``Capture.netns`` (``ts``, ``netns``, ``pid``, ``name``, ``cgroup``, ``own``,
``read``, ``sockets_used``, ``tcp_inuse``, ``tcp_tw``); for a capture from collector 1, one row per
snapshot: the collector's own namespace, ``netns`` NA, its counts from ``Capture.sockstat``.

``by_namespace(cap, per_socket_bytes=None)``: one row per (snapshot, namespace):

| column | dtype | unit | meaning |
|---|---|---|---|
| ts, host, phase | | | snapshot |
| netns | Int64 | inode | the namespace (``net:[INODE]``); NA: a capture from collector 1 |
| name | string | | its ``ip netns`` name (NA if none) |
| pid | Int64 | | a pid inside it (NA: kept only by a bind mount) |
| cgroup | string | | that pid's cgroup path |
| own | boolean | | the collector's own namespace |
| read | boolean | | ss ran there (False: listed only; see :func:`unseen`) |
| tcp_sockets | Int64 | sockets | TCP sockets ss listed there, every state |
| full_sockets | Int64 | sockets | of those, not TIME-WAIT/SYN-RECV (what sockstat ``alloc`` counts) |
| connections | Int64 | sockets | connections (not LISTEN/TIME-WAIT/SYN-RECV/CLOSE) |
| idle_connections | Int64 | sockets | connections with both queues empty |
| listeners | Int64 | sockets | LISTEN sockets |
| buffer_bytes | Int64 | bytes | Σ skmem r + w + f |
| skmem_r_bytes, skmem_w_bytes, skmem_f_bytes | Int64 | bytes | Σ of each |
| queued_bytes | Int64 | bytes | Σ Recv-Q + Send-Q over connections |
| processes | Int64 | | distinct processes counted for its sockets (primary owners) |
| unattributed_sockets | Int64 | sockets | TCP sockets with no owner there |
| idle_cost_bytes | Float64 | bytes | full_sockets × the kernel objects of one socket (``idle_cost``: slab, not in skmem) |
| sockstat_tcp_inuse | Int64 | sockets | that namespace's sockstat ``TCP: inuse`` (IPv4, hashed) |
| sockstat_tcp_tw | Int64 | sockets | its ``TCP: tw`` |
| listed_ipv4_sockets | Int64 | sockets | IPv4 full sockets ss listed there (what ``inuse`` counts) |
| unlisted_sockets | Int64 | sockets | sockstat_tcp_inuse − listed_ipv4_sockets: sockets opened or closed between the two reads (NA if not read) |

``by_container(cap, per_socket_bytes=None)``: one row per (snapshot, container): ``ts``, ``host``,
``phase``, ``container`` (string: the cgroup path, ``(unknown)`` when neither the owner nor the
namespace has one), ``namespaces`` (Int64), ``netns_names`` (string: the names, else inodes, of its
namespaces), ``processes``, ``tcp_sockets``, ``full_sockets``, ``connections``,
``idle_connections``, ``buffer_bytes``, ``queued_bytes``, ``idle_cost_bytes`` (as above),
``cgroup_sock_bytes`` (Int64), ``cgroup_sock_key`` (string: ``sock`` / ``kmem.tcp.usage_in_bytes``;
NA when not collected).

``read_status(cap)`` (reads no socket row): one row per snapshot: ``ts``, ``host``, ``phase``,
``namespaces`` (seen), ``namespaces_read``, ``namespaces_not_read``, ``not_read`` (string:
``INODE (name): reason; ...``, NA if none).

``unseen(cap)``: one row per snapshot: the ``read_status`` columns, ``tcp_alloc`` (sockstat, host-wide), ``listed_full_sockets`` (Σ over every namespace
read), ``other_netns_full_sockets`` (of those, outside the collector's own),
``other_netns_buffer_bytes``, ``unseen_sockets`` (tcp_alloc − listed_full_sockets: sockets of
namespaces not read, of namespaces with no process and no bind mount (kept alive by a socket held
elsewhere), or opened/closed between the reads).

``verdict(cap)``: a ``Verdict`` with label ``one namespace`` (a collector-1 capture, or a box with
one), ``all namespaces read`` or ``namespaces not read``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from tcpmemlib.analysis.common import as_output, fmt_bytes, snapshots
from tcpmemlib.analysis.idle import idle_cost
from tcpmemlib.analysis.socket_rows import attributed_sockets, string_test, tcp_sockets
from tcpmemlib.analysis.verdict import Verdict

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture

__all__ = [
    "CONTAINER_COLUMNS",
    "NAMESPACE_COLUMNS",
    "STATUS_COLUMNS",
    "UNKNOWN_CONTAINER",
    "UNSEEN_COLUMNS",
    "by_container",
    "by_namespace",
    "namespaces",
    "read_status",
    "unseen",
    "verdict",
]

UNKNOWN_CONTAINER = "(unknown)"
# the socket columns the pass reads (ts, host, sock_id come always)
_SOCKET_COLUMNS = (
    "netns",
    "netid",
    "state",
    "recv_q",
    "send_q",
    "local_address",
    "skmem_r",
    "skmem_w",
    "skmem_f",
)
_COUNTS = (
    "tcp_sockets",
    "full_sockets",
    "connections",
    "idle_connections",
    "listeners",
    "listed_ipv4_sockets",
    "unattributed_sockets",
)
_BYTES = ("buffer_bytes", "skmem_r_bytes", "skmem_w_bytes", "skmem_f_bytes", "queued_bytes")
_NOT_FULL = ("TIME-WAIT", "SYN-RECV")

NAMESPACE_COLUMNS: dict[str, str] = {
    "ts": "datetime64[ns, UTC]",
    "host": "string",
    "phase": "string",
    "netns": "Int64",
    "name": "string",
    "pid": "Int64",
    "cgroup": "string",
    "own": "boolean",
    "read": "boolean",
    "tcp_sockets": "Int64",
    "full_sockets": "Int64",
    "connections": "Int64",
    "idle_connections": "Int64",
    "listeners": "Int64",
    "buffer_bytes": "Int64",
    "skmem_r_bytes": "Int64",
    "skmem_w_bytes": "Int64",
    "skmem_f_bytes": "Int64",
    "queued_bytes": "Int64",
    "processes": "Int64",
    "unattributed_sockets": "Int64",
    "idle_cost_bytes": "Float64",
    "sockstat_tcp_inuse": "Int64",
    "sockstat_tcp_tw": "Int64",
    "listed_ipv4_sockets": "Int64",
    "unlisted_sockets": "Int64",
}
CONTAINER_COLUMNS: dict[str, str] = {
    "ts": "datetime64[ns, UTC]",
    "host": "string",
    "phase": "string",
    "container": "string",
    "namespaces": "Int64",
    "netns_names": "string",
    "processes": "Int64",
    "tcp_sockets": "Int64",
    "full_sockets": "Int64",
    "connections": "Int64",
    "idle_connections": "Int64",
    "buffer_bytes": "Int64",
    "queued_bytes": "Int64",
    "idle_cost_bytes": "Float64",
    "cgroup_sock_bytes": "Int64",
    "cgroup_sock_key": "string",
}
STATUS_COLUMNS: dict[str, str] = {
    "ts": "datetime64[ns, UTC]",
    "host": "string",
    "phase": "string",
    "namespaces": "Int64",
    "namespaces_read": "Int64",
    "namespaces_not_read": "Int64",
    "not_read": "string",
}
UNSEEN_COLUMNS: dict[str, str] = {
    "ts": "datetime64[ns, UTC]",
    "host": "string",
    "phase": "string",
    "namespaces": "Int64",
    "namespaces_read": "Int64",
    "namespaces_not_read": "Int64",
    "not_read": "string",
    "tcp_alloc": "Int64",
    "listed_full_sockets": "Int64",
    "other_netns_full_sockets": "Int64",
    "other_netns_buffer_bytes": "Int64",
    "unseen_sockets": "Int64",
}
_NETNS_FRAME = {
    "ts": "datetime64[ns, UTC]",
    "netns": "Int64",
    "pid": "Int64",
    "name": "string",
    "cgroup": "string",
    "own": "boolean",
    "read": "boolean",
    "sockets_used": "Int64",
    "tcp_inuse": "Int64",
    "tcp_tw": "Int64",
}


# --------------------------------------------------------------------------------------- inputs
def namespaces(cap: Capture) -> pd.DataFrame:
    """``Capture.netns`` with the columns this module reads (``_NETNS_FRAME``), one row per
    (snapshot, namespace); for a snapshot without it (collector 1), one row: the collector's own
    namespace (``netns`` NA, read, sockstat from ``Capture.sockstat``)."""
    types = {c: t for c, t in _NETNS_FRAME.items() if c != "ts"}
    frame = getattr(cap, "netns", None)
    listed = frame[list(_NETNS_FRAME)].astype(types) if frame is not None and len(frame) else None
    snaps = snapshots(cap)[["ts"]]
    if listed is not None:
        snaps = snaps[~snaps["ts"].isin(listed["ts"])]
        if not len(snaps):
            return listed.reset_index(drop=True)
    st = cap.sockstat.drop_duplicates("ts")[["ts", "sockets_used", "tcp_inuse", "tcp_tw"]]
    out = snaps.merge(st, on="ts", how="left")
    for col in ("netns", "pid", "name", "cgroup"):
        out[col] = pd.NA
    out["own"] = True
    out["read"] = True
    out = out[list(_NETNS_FRAME)].astype(types)
    if listed is None:
        return out
    return pd.concat([listed, out], ignore_index=True).sort_values("ts", kind="stable")


def _pid_cgroups(cap: Capture) -> pd.DataFrame:
    """``ts``, ``pid`` (Int64), ``cgroup`` (string) of every socket owner the capture placed."""
    pc = getattr(cap, "proc_cgroups", None)
    if pc is None or not len(pc):
        return pd.DataFrame(
            {
                "ts": pd.Series([], dtype="datetime64[ns, UTC]"),
                "pid": pd.Series([], dtype="Int64"),
                "cgroup": pd.Series([], dtype="string"),
            }
        )
    out = pc[["ts", "pid", "cgroup"]].drop_duplicates(["ts", "pid"]).copy()
    return out.astype({"pid": "Int64", "cgroup": "string"})


def _cgroup_charges(cap: Capture) -> pd.DataFrame:
    """``ts``, ``container``, ``cgroup_sock_bytes``, ``cgroup_sock_key``: v2 ``sock`` where the
    capture has it, else v1 ``kmem.tcp.usage_in_bytes``."""
    cg = getattr(cap, "cgroups", None)
    cols = {
        "ts": "datetime64[ns, UTC]",
        "container": "string",
        "cgroup_sock_bytes": "Int64",
        "cgroup_sock_key": "string",
    }
    if cg is None or not len(cg):
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in cols.items()})
    rows = cg.assign(key=cg["key"].astype("string"))
    rows = rows[rows["key"].isin(["sock", "kmem.tcp.usage_in_bytes"])]
    rows = rows.assign(rank=(rows["key"] != "sock").astype("int64")).sort_values("rank")
    rows = rows.drop_duplicates(["ts", "cgroup"], keep="first")
    out = pd.DataFrame(
        {
            "ts": rows["ts"],
            "container": rows["cgroup"].astype("string"),
            "cgroup_sock_bytes": rows["value_bytes"].astype("Int64"),
            "cgroup_sock_key": rows["key"].astype("string"),
        }
    )
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------- one pass
def _socket_frame(sockets: pd.DataFrame, owners: pd.DataFrame | None) -> pd.DataFrame:
    """One row per TCP socket of a batch: ``ts``, ``netns``, ``pid`` (primary owner), the counts
    (0/1) and bytes the sums read."""
    s = attributed_sockets(tcp_sockets(sockets), owners)
    state = s["state"].astype("string")
    full = ~state.isin(list(_NOT_FULL)).fillna(False).astype(bool)
    ipv4 = ~string_test(s["local_address"], lambda a: a.str.contains(":", regex=False))
    conn = s["is_connection"].astype(bool)
    idle = conn & (s["queued_bytes"].astype("Int64").fillna(0) == 0)
    out = pd.DataFrame(
        {
            "ts": s["ts"],
            "netns": s["netns"].astype("Int64"),
            "pid": s["pid"].astype("Int64"),
            "tcp_sockets": 1,
            "full_sockets": full.astype("int64"),
            "connections": conn.astype("int64"),
            "idle_connections": idle.astype("int64"),
            "listeners": (state == "LISTEN").fillna(False).astype("int64"),
            "listed_ipv4_sockets": (full & ipv4).astype("int64"),
            "unattributed_sockets": s["pid"].isna().astype("int64"),
            "buffer_bytes": s["buffer_bytes"].astype("Int64").fillna(0),
            "skmem_r_bytes": s["skmem_r"].astype("Int64").fillna(0),
            "skmem_w_bytes": s["skmem_w"].astype("Int64").fillna(0),
            "skmem_f_bytes": s["skmem_f"].astype("Int64").fillna(0),
            "queued_bytes": s["queued_bytes"].astype("Int64").fillna(0),
        }
    )
    return out


def _sums(frame: pd.DataFrame, keys: list[str], with_netns: bool = False) -> pd.DataFrame:
    """The counts and bytes summed per ``keys`` (NA keys kept as a group), plus ``processes``
    (distinct primary pids) and, ``with_netns``, the set of namespaces (``_netns``)."""
    g = frame.groupby(keys, dropna=False, sort=False)
    out = g[list(_COUNTS) + list(_BYTES)].sum()
    out["processes"] = g["pid"].nunique()
    if with_netns:  # from the distinct (keys, netns) pairs: few, whatever the socket count
        pairs = frame[[*keys, "netns"]].dropna(subset=["netns"]).drop_duplicates()
        sets = pairs.groupby(keys, sort=False)["netns"].agg(lambda v: frozenset(v.astype("int64")))
        out["_netns"] = [sets.get(k, frozenset()) for k in out.index]
    return out.reset_index()


def _pass(cap: Capture) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sums per (ts, netns) and per (ts, container), from one pass over the socket rows."""
    pid_cg = _pid_cgroups(cap)
    ns = namespaces(cap)[["ts", "netns", "cgroup"]].rename(columns={"cgroup": "_ns_cgroup"})
    per_ns: list[pd.DataFrame] = []
    per_ct: list[pd.DataFrame] = []
    for sockets, owners in cap.socket_batches(_SOCKET_COLUMNS, owners=True):
        if not len(sockets):
            continue
        rows = _socket_frame(sockets, owners)
        if not len(rows):
            continue
        per_ns.append(_sums(rows, ["ts", "netns"]))
        rows = rows.merge(pid_cg, on=["ts", "pid"], how="left")
        rows = rows.merge(ns, on=["ts", "netns"], how="left")
        container = rows["cgroup"].astype("string").fillna(rows["_ns_cgroup"].astype("string"))
        rows["container"] = container.fillna(UNKNOWN_CONTAINER)
        per_ct.append(_sums(rows, ["ts", "container"], with_netns=True))
    return _concat(per_ns, ["ts", "netns"]), _concat(per_ct, ["ts", "container"])


def _concat(parts: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    if not parts:
        cols = {
            "ts": "datetime64[ns, UTC]",
            keys[1]: "Int64" if keys[1] == "netns" else "string",
            **{c: "int64" for c in (*_COUNTS, *_BYTES, "processes")},
            **({"_netns": "object"} if keys[1] == "container" else {}),
        }
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in cols.items()})
    # batches hold whole snapshots: no (ts, key) pair spans two of them
    return pd.concat(parts, ignore_index=True)


def _sums_memo(cap: Capture) -> tuple[pd.DataFrame, pd.DataFrame]:
    return cap.memo("analysis.namespaces", lambda: _pass(cap))  # type: ignore[no-any-return]


def _per_socket_bytes(cap: Capture, given: float | None) -> float:
    if given is not None:
        return float(given)
    return float(idle_cost(cap).per_socket_bytes)


# --------------------------------------------------------------------------------------- views
def by_namespace(cap: Capture, per_socket_bytes: float | None = None) -> pd.DataFrame:
    """Per snapshot and network namespace: sockets, buffers, idle cost, sockstat (module doc).

    ``per_socket_bytes``: the kernel objects of one socket (default: ``idle_cost(cap)``'s)."""
    snaps = snapshots(cap)
    ns = namespaces(cap)
    sums, _ = _sums_memo(cap)
    # a socket whose namespace the netns frame does not list (it should not happen) keeps a row
    out = ns.merge(sums, on=["ts", "netns"], how="outer")
    out = out.merge(snaps, on="ts", how="left")
    for col in (*_COUNTS, *_BYTES, "processes"):
        out[col] = out[col].astype("Int64").fillna(0).where(out["read"].fillna(True), pd.NA)
    out["idle_cost_bytes"] = out["full_sockets"].astype("Float64") * _per_socket_bytes(
        cap, per_socket_bytes
    )
    out["sockstat_tcp_inuse"] = out["tcp_inuse"]
    out["sockstat_tcp_tw"] = out["tcp_tw"]
    out["unlisted_sockets"] = out["sockstat_tcp_inuse"] - out["listed_ipv4_sockets"]
    out = out.astype({c: t for c, t in NAMESPACE_COLUMNS.items() if c != "ts"})[
        list(NAMESPACE_COLUMNS)
    ]
    out = out.sort_values(["ts", "own", "buffer_bytes"], ascending=[True, False, False])
    return as_output(out)


def _names(sets: pd.Series, labels: dict[tuple[Any, int], str], ts: pd.Series) -> pd.Series:
    out = []
    for when, inodes in zip(ts, sets, strict=True):
        out.append(" ".join(sorted(labels.get((when, i), str(i)) for i in inodes)) or pd.NA)
    return pd.Series(out, index=sets.index, dtype="string")


def by_container(cap: Capture, per_socket_bytes: float | None = None) -> pd.DataFrame:
    """Per snapshot and container (memory cgroup): sockets, buffers, idle cost and what the
    kernel charged the cgroup for sockets (module doc)."""
    snaps = snapshots(cap)
    _, sums = _sums_memo(cap)
    ns = namespaces(cap)
    named = ns.dropna(subset=["netns"])
    labels = {
        (ts, int(inode)): (str(name) if name is not pd.NA else str(int(inode)))
        for ts, inode, name in zip(named["ts"], named["netns"], named["name"], strict=True)
    }
    out = sums.merge(snaps, on="ts", how="left")
    out["namespaces"] = out["_netns"].map(len).astype("Int64")
    out["netns_names"] = _names(out["_netns"], labels, out["ts"])
    out["idle_cost_bytes"] = out["full_sockets"].astype("Float64") * _per_socket_bytes(
        cap, per_socket_bytes
    )
    out = out.merge(_cgroup_charges(cap), on=["ts", "container"], how="left")
    out = out.astype({c: t for c, t in CONTAINER_COLUMNS.items() if c != "ts"})[
        list(CONTAINER_COLUMNS)
    ]
    out = out.sort_values(["ts", "buffer_bytes", "container"], ascending=[True, False, True])
    return as_output(out)


def _not_read_reasons(cap: Capture) -> dict[tuple[str, int], str]:
    """(snapshot, inode) -> the collector's reason for a namespace it did not read."""
    pr = cap.problems
    if pr is None or not len(pr):
        return {}
    rows = pr[pr["severity"].astype("string") == "collector"]
    found = rows["file"].astype("string").str.extract(r"^ss_tcp\.ns(\d+)\.txt", expand=False)
    out: dict[tuple[str, int], str] = {}
    for snap, inode, reason in zip(rows["snapshot"], found, rows["reason"], strict=True):
        if inode is not pd.NA and isinstance(inode, str):
            out[(str(snap), int(inode))] = str(reason)
    return out


def read_status(cap: Capture) -> pd.DataFrame:
    """Per snapshot: the namespaces seen, read and not read (named, with the collector's reason),
    from ``Capture.netns`` and the collector's problems alone (no socket row is read)."""
    snaps = snapshots(cap)
    ns = namespaces(cap)
    snap_names = cap.meta.drop_duplicates("ts").set_index("ts")["snapshot"]
    reasons = _not_read_reasons(cap)
    read = ns["read"].fillna(False).astype(bool)
    out = snaps.copy()
    out["namespaces"] = out["ts"].map(ns.groupby("ts").size()).fillna(0).astype("Int64")
    out["namespaces_read"] = out["ts"].map(read.groupby(ns["ts"]).sum()).fillna(0)
    out["namespaces_not_read"] = out["namespaces"] - out["namespaces_read"].astype("Int64")
    missing: dict[Any, list[str]] = {}
    for ts, inode, name in zip(ns["ts"][~read], ns["netns"][~read], ns["name"][~read], strict=True):
        label = f"{inode}" + (f" ({name})" if name is not pd.NA else "")
        why = reasons.get((str(snap_names.get(ts)), int(inode))) if inode is not pd.NA else None
        missing.setdefault(ts, []).append(f"{label}: {why}" if why else label)
    out["not_read"] = out["ts"].map(lambda t: "; ".join(missing[t]) if t in missing else pd.NA)
    cols = list(STATUS_COLUMNS)
    return as_output(out.astype({c: t for c, t in STATUS_COLUMNS.items() if c != "ts"})[cols])


def unseen(cap: Capture) -> pd.DataFrame:
    """Per snapshot: :func:`read_status`, and the TCP sockets sockstat counts that no namespace
    read listed (module doc)."""
    out = read_status(cap).astype({"host": "string", "phase": "string"})
    ns = namespaces(cap)
    sums, _ = _sums_memo(cap)
    st = cap.sockstat.drop_duplicates("ts").set_index("ts")
    out["tcp_alloc"] = out["ts"].map(st["tcp_alloc"]).astype("Int64")
    s = sums.merge(ns[["ts", "netns", "own"]], on=["ts", "netns"], how="left")
    other = ~s["own"].fillna(True).astype(bool)
    full = s.groupby("ts")["full_sockets"].sum()
    out["listed_full_sockets"] = out["ts"].map(full).fillna(0).astype("Int64")
    out["other_netns_full_sockets"] = (
        out["ts"].map(s[other].groupby("ts")["full_sockets"].sum()).fillna(0).astype("Int64")
    )
    out["other_netns_buffer_bytes"] = (
        out["ts"].map(s[other].groupby("ts")["buffer_bytes"].sum()).fillna(0).astype("Int64")
    )
    out["unseen_sockets"] = out["tcp_alloc"] - out["listed_full_sockets"]
    out = out.astype({c: t for c, t in UNSEEN_COLUMNS.items() if c != "ts"})[list(UNSEEN_COLUMNS)]
    return as_output(out)


def _label(row: pd.Series) -> str:
    """A namespace as the verdict names it: its ip netns name, else ``netns INODE``; its pid."""
    name = row["name"]
    out = str(name) if name is not pd.NA else f"netns {int(row['netns'])}"
    return out if row["pid"] is pd.NA else f"{out} (pid {int(row['pid'])})"


def verdict(cap: Capture) -> Verdict:
    """How many namespaces were seen and read, what the others held (and which held the most),
    what stayed unseen."""
    u = unseen(cap)
    if not len(u):
        return Verdict("one namespace", "No snapshot in this capture.", {})
    seen = int(u["namespaces"].max())
    not_read = int(u["namespaces_not_read"].max())
    other = u["other_netns_buffer_bytes"].astype("Float64")
    peak = int(other.idxmax())
    hidden = u["unseen_sockets"].astype("Float64")
    fig = {
        "namespaces_count": float(seen),
        "namespaces_read_count": float(u["namespaces_read"].max()),
        "namespaces_not_read_count": float(not_read),
        "other_netns_full_sockets_at_peak": float(u.at[peak, "other_netns_full_sockets"]),
        "other_netns_buffer_bytes_max": float(other.max()),
        "unseen_sockets_max": float(hidden.max()) if hidden.notna().any() else float("nan"),
    }
    if getattr(cap, "netns", None) is None or not len(cap.netns):
        return Verdict(
            "one namespace",
            "This capture lists no network namespaces (collector before version 2): ss read only "
            "the collector's own namespace, so sockets of containers are not in it.",
            fig,
        )
    text = f"{seen} network namespace(s) seen, {int(fig['namespaces_read_count'])} read."
    if fig["other_netns_full_sockets_at_peak"] > 0:
        sums, _ = _sums_memo(cap)
        ns = namespaces(cap)
        at = ns[(ns["ts"] == u.at[peak, "ts"]) & ~ns["own"].fillna(True).astype(bool)]
        at = at.merge(sums[["ts", "netns", "buffer_bytes"]], on=["ts", "netns"], how="left")
        top = at.loc[at["buffer_bytes"].astype("Float64").fillna(0).idxmax()]
        fig["top_netns_buffer_bytes"] = float(top["buffer_bytes"])
        text += (
            f" Where they held the most, {int(fig['other_netns_full_sockets_at_peak'])} TCP "
            f"sockets outside the collector's own namespace held {fmt_bytes(other.max())} of "
            f"socket buffers, {fmt_bytes(top['buffer_bytes'])} of it in {_label(top)}."
        )
    if not_read:
        label = "namespaces not read"
        named = u["not_read"].dropna()
        text += (
            f" {not_read} namespace(s) were not read ({named.iloc[-1]}); their sockets are in "
            "sockstat only."
        )
    else:
        label = "all namespaces read" if seen > 1 else "one namespace"
    if hidden.notna().any() and float(hidden.max()) > 0:
        text += (
            f" Up to {int(hidden.max())} allocated TCP socket(s) were in no namespace read "
            "(a namespace kept alive only by a socket held elsewhere, or opened/closed between "
            "the reads)."
        )
    return Verdict(label, text, fig)
