"""What does a TCP socket cost when it carries no data?

A socket that exists holds kernel objects even with empty queues (docs/kernel.md §8): its ``struct
tcp_sock`` (slab ``TCP``/``TCPv6``), the socket inode (``sock_inode_cache``), a sockfs ``dentry``, a
``struct file`` (``filp``), LSM blobs (``lsm_inode_cache``/``lsm_file_cache`` when an LSM is built in)
and, for ``connect()``-ed sockets with an ephemeral port, a bind bucket pair (``tcp_bind_bucket`` +
``tcp_bind2_bucket``). None of it is in sockstat ``mem`` or in ss skmem. Sockets registered in epoll
add ``eventpoll_epi`` + ``eventpoll_pwq`` (listed, not counted: the capture cannot tell).

``idle_cost(capture) -> IdleCostResult``:

- ``by_object``: one row per object: ``object``, ``cache`` (kernel cache name), ``shown_as`` (the
  slabinfo row that holds it: with SLUB merging that row is named after another cache, see
  ``merged_with``), ``merged_with`` (other caches sharing the row; NA if not merged),
  ``objsize_bytes``, ``objects_per_socket`` (1; the IPv4/IPv6 share for TCP/TCPv6; the share of
  connect()-ed sockets for bind buckets), ``bytes_per_socket`` (= objsize × objects_per_socket),
  ``counted`` (bool: part of ``per_socket_bytes``), ``meminfo_bucket`` (SUnreclaim/SReclaimable),
  ``evidence`` (where the size came from).
- ``per_socket_bytes``: Σ bytes_per_socket of counted objects (float; NaN when nothing is known).
- ``by_snapshot``: ``ts``, ``host``, ``phase``, ``sockets`` (sockstat TCP ``alloc``, host-wide like
  slab; ss full sockets when sockstat lacks it), ``object_slab_bytes`` (slab pages of the rows that
  hold the counted objects), ``meminfo_slab_bytes``.
- ``regression_slab_bytes_per_socket`` / ``regression_meminfo_slab_bytes_per_socket``: least-squares
  slope of those against ``sockets`` when the capture spans a change of at least
  ``MIN_SOCKET_SPAN`` sockets (NaN otherwise). Slab pages include partly-filled slabs and anything
  else the host allocated meanwhile, so they scatter around the object figure.
- ``verdict``: label ``per-socket cost`` (object sizes known), ``partial: no slabinfo`` (slabinfo not
  collected: only ``/proc/net/protocols`` sizes) or ``no data``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tcpmemlib.analysis.common import (
    as_output,
    fmt_bytes,
    meminfo_wide,
    number,
    resolve_cache,
    slab_frame,
    snapshots,
)
from tcpmemlib.analysis.summary import per_snapshot_socket_sums, socket_summary
from tcpmemlib.analysis.verdict import Verdict

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture

__all__ = [
    "MIN_SOCKET_SPAN",
    "IdleCostResult",
    "idle_cost",
    "idle_cost_frames",
    "idle_cost_verdict",
]

MIN_SOCKET_SPAN = 20

# object, cache, share kind, counted, meminfo bucket
_OBJECTS: tuple[tuple[str, str, str, bool, str], ...] = (
    ("struct tcp_sock (IPv4)", "TCP", "v4", True, "SUnreclaim"),
    ("struct tcp6_sock (IPv6)", "TCPv6", "v6", True, "SUnreclaim"),
    ("struct socket + inode", "sock_inode_cache", "one", True, "SReclaimable"),
    ("sockfs dentry", "dentry", "one", True, "SReclaimable"),
    ("struct file", "filp", "one", True, "SUnreclaim"),
    ("LSM inode blob", "lsm_inode_cache", "one", True, "SUnreclaim"),
    ("LSM file blob", "lsm_file_cache", "one", True, "SUnreclaim"),
    ("bind bucket (connect()-ed)", "tcp_bind_bucket", "connected", True, "SUnreclaim"),
    ("bind2 bucket (connect()-ed)", "tcp_bind2_bucket", "connected", True, "SUnreclaim"),
    ("epoll item (if registered)", "eventpoll_epi", "one", False, "SUnreclaim"),
    ("epoll wait-queue hook (if registered)", "eventpoll_pwq", "one", False, "SUnreclaim"),
)


@dataclass(frozen=True)
class IdleCostResult:
    """Result of :func:`idle_cost` (schemas in the module doc)."""

    by_object: pd.DataFrame
    per_socket_bytes: float
    by_snapshot: pd.DataFrame
    regression_slab_bytes_per_socket: float
    regression_meminfo_slab_bytes_per_socket: float
    verdict: Verdict
    slabinfo_collected: bool = True
    shares: dict[str, float] = field(default_factory=dict)


def _shares(cap: Capture) -> dict[str, float]:
    """IPv4/IPv6 share of TCP full sockets and the share of connect()-ed connections."""
    summary = socket_summary(cap)
    full = summary.full_sockets
    if not full:
        return {"v4": 1.0, "v6": 0.0, "one": 1.0, "connected": 0.0}
    # connect()-ed: a connection whose local port is not a port its snapshot listens on
    v6 = float(summary.ipv6_sockets) / float(full)
    connected = float(summary.connected_sockets) / float(full)
    return {"v4": 1.0 - v6, "v6": v6, "one": 1.0, "connected": connected}


def _protocol_size(cap: Capture, proto: str) -> float:
    pr = getattr(cap, "protocols", None)
    if pr is None or not len(pr):
        return float("nan")
    rows = pr[pr["protocol"].astype("string") == proto]
    return number(rows["size_bytes"].iloc[-1]) if len(rows) else float("nan")


def _slope(x: pd.Series, y: pd.Series) -> float:
    xs = pd.to_numeric(x, errors="coerce").astype("float64")
    ys = pd.to_numeric(y, errors="coerce").astype("float64")
    ok = xs.notna() & ys.notna()
    xs, ys = xs[ok].to_numpy(), ys[ok].to_numpy()
    if len(xs) < 2 or np.ptp(xs) < MIN_SOCKET_SPAN:
        return float("nan")
    return float(np.polyfit(xs, ys, 1)[0])


def _object_table(cap: Capture, sl: pd.DataFrame | None, shares: dict[str, float]) -> pd.DataFrame:
    """``by_object`` (module doc): each kernel object's size, where it is counted, and its share."""
    names: set[str] = set(sl["name"].dropna()) if sl is not None else set()
    latest = sl[sl["ts"] == sl["ts"].max()].set_index("name") if sl is not None else None
    rows = []
    for obj, cache, share, counted, bucket in _OBJECTS:
        shown, merged = resolve_cache(cap, cache, names) if sl is not None else (None, [])
        size = float("nan")
        evidence = ""
        if shown is not None and latest is not None and shown in latest.index:
            size = number(latest.at[shown, "objsize_bytes"])
            evidence = f"slabinfo row {shown!r} objsize"
            if merged:
                evidence += f" (merged cache: the row also holds {', '.join(merged)})"
        if cache in ("TCP", "TCPv6"):
            psize = _protocol_size(cap, cache)
            if math.isnan(size) and not math.isnan(psize):
                size = psize
                evidence = "/proc/net/protocols size (no slabinfo)"
            elif not math.isnan(psize):
                evidence += f"; /proc/net/protocols size {int(psize)}"
        if math.isnan(size):
            evidence = (
                "not in this capture's slabinfo" if sl is not None else "slabinfo not collected"
            )
            if cache.startswith("lsm_") and sl is not None:
                counted = False  # no LSM blobs on this kernel
        per = shares[share]
        rows.append(
            (
                obj,
                cache,
                shown,
                ", ".join(merged) or None,
                size,
                per,
                size * per,
                counted,
                bucket,
                evidence,
            )
        )
    by_object = pd.DataFrame(
        rows,
        columns=[
            "object",
            "cache",
            "shown_as",
            "merged_with",
            "objsize_bytes",
            "objects_per_socket",
            "bytes_per_socket",
            "counted",
            "meminfo_bucket",
            "evidence",
        ],
    )
    by_object = by_object.astype(
        {
            "object": "string",
            "cache": "string",
            "shown_as": "string",
            "merged_with": "string",
            "objsize_bytes": "Float64",
            "objects_per_socket": "Float64",
            "bytes_per_socket": "Float64",
            "counted": "boolean",
            "meminfo_bucket": "category",
            "evidence": "string",
        }
    )
    return by_object


def _regression(
    cap: Capture, sl: pd.DataFrame | None, known: pd.DataFrame
) -> tuple[pd.DataFrame, float, float]:
    """``by_snapshot`` and the slopes of slab bytes against the socket count (module doc)."""
    snaps = snapshots(cap)
    bs = snaps.copy()
    st = cap.sockstat.drop_duplicates("ts").set_index("ts")
    sockets = st["tcp_alloc"].reindex(bs["ts"]).astype("Int64") if len(st) else None
    if sockets is None or sockets.isna().all():
        sums = per_snapshot_socket_sums(cap)
        bs["sockets"] = (sums["tcp_sockets"] - 0).astype("Int64").values
    else:
        bs["sockets"] = sockets.values
    counted_rows = sorted({r for r in known["shown_as"].dropna()})
    if sl is not None:
        obj_slab = sl[sl["name"].isin(counted_rows)].groupby("ts")["slab_bytes"].sum()
        bs["object_slab_bytes"] = obj_slab.reindex(bs["ts"]).astype("Int64").values
    else:
        bs["object_slab_bytes"] = pd.Series(pd.NA, index=bs.index, dtype="Int64")
    mw = meminfo_wide(cap).set_index("ts")
    slab_col = mw["Slab"] if "Slab" in mw.columns else pd.Series(pd.NA, index=mw.index)
    bs["meminfo_slab_bytes"] = slab_col.reindex(bs["ts"]).astype("Int64").values
    reg_slab = _slope(bs["sockets"], bs["object_slab_bytes"])
    reg_mem = _slope(bs["sockets"], bs["meminfo_slab_bytes"])
    return as_output(bs), reg_slab, reg_mem


def idle_cost_frames(capture: Capture) -> IdleCostResult:
    """The frames and figures of :func:`idle_cost`, with an empty verdict."""
    sl = slab_frame(capture)
    shares = _shares(capture)
    by_object = _object_table(capture, sl, shares)
    known = by_object[by_object["counted"] & by_object["bytes_per_socket"].notna()]
    per_socket = float(known["bytes_per_socket"].sum()) if len(known) else float("nan")
    bs, reg_slab, reg_mem = _regression(capture, sl, known)
    return IdleCostResult(
        by_object, per_socket, bs, reg_slab, reg_mem, Verdict("", "", {}), sl is not None, shares
    )


def idle_cost_verdict(result: IdleCostResult) -> Verdict:
    """Word :func:`idle_cost_frames`' result (module doc)."""
    by_object, per_socket, shares = result.by_object, result.per_socket_bytes, result.shares
    reg_slab = result.regression_slab_bytes_per_socket
    reg_mem = result.regression_meminfo_slab_bytes_per_socket
    known = by_object[by_object["counted"] & by_object["bytes_per_socket"].notna()]
    merged_notes = [
        f"{c} -> slabinfo {s!r}"
        for c, s, m in zip(
            by_object["cache"], by_object["shown_as"], by_object["merged_with"], strict=True
        )
        if m is not pd.NA and s is not pd.NA and s != c
    ]
    fig = {
        "per_socket_bytes": per_socket,
        "regression_slab_bytes_per_socket": reg_slab,
        "regression_meminfo_slab_bytes_per_socket": reg_mem,
        "connected_share": shares["connected"],
        "ipv6_share": shares["v6"],
        "epoll_bytes_per_socket": float(
            by_object[~by_object["counted"]]["bytes_per_socket"].astype("Float64").sum()
        ),
    }
    if math.isnan(per_socket):
        verdict = Verdict(
            "no data", "No object sizes in this capture (no slabinfo, no protocols).", fig
        )
    else:
        if not result.slabinfo_collected:
            label = "partial: no slabinfo"
            text = (
                f"slabinfo was not collected (run collect.sh as root): only the tcp_sock size is known, "
                f"{fmt_bytes(per_socket)} per socket from /proc/net/protocols; inode, dentry, file and "
                "bind-bucket objects add about 1.3 KiB more on 6.x kernels."
            )
        else:
            label = "per-socket cost"
            text = (
                f"Each socket costs about {fmt_bytes(per_socket)} of kernel slab objects even with no "
                f"data queued ({', '.join(known['cache'].astype(str))}); none of it is in sockstat mem "
                "or in ss skmem."
            )
            if fig["epoll_bytes_per_socket"] > 0:
                text += (
                    f" Sockets registered in epoll add {fmt_bytes(fig['epoll_bytes_per_socket'])}."
                )
            if merged_notes:
                text += " SLUB merged caches: " + "; ".join(merged_notes) + "."
        if not math.isnan(reg_slab):
            text += (
                f" Across this capture's change in socket count, slab pages grew by "
                f"{fmt_bytes(reg_slab)} per socket (meminfo Slab: {fmt_bytes(reg_mem)} per socket)."
            )
        else:
            text += " The capture does not span a change in socket count, so there is no slab-delta estimate."
        verdict = Verdict(label, text, fig)
    return verdict


def idle_cost(capture: Capture) -> IdleCostResult:
    """Kernel memory per socket that exists with no traffic (module doc)."""
    r = idle_cost_frames(capture)
    return IdleCostResult(
        r.by_object,
        r.per_socket_bytes,
        r.by_snapshot,
        r.regression_slab_bytes_per_socket,
        r.regression_meminfo_slab_bytes_per_socket,
        idle_cost_verdict(r),
        r.slabinfo_collected,
        r.shares,
    )
