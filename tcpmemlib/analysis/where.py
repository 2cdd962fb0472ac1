"""Q1: where is TCP buffer memory reported -- top's buff/cache, a process's RES, or nowhere?

``where_is_it(capture) -> WhereResult`` lines up, per snapshot, every place an operator might look for
socket memory, then compares how each moved between the snapshot with the least and the one with the
most socket buffer memory (sockstat TCP ``mem``).

``by_snapshot`` (one row per snapshot):

| column | unit | source |
|---|---|---|
| ts, host, phase | | snapshot start, host, phase (NA without phases.tsv) |
| sockstat_tcp_mem_bytes | bytes | sockstat ``TCP: mem`` × page size (global, v4+v6, lags ±mem_pcpu_rsv×CPUs) |
| sockstat_udp_mem_bytes | bytes | sockstat ``UDP: mem`` × page size |
| skmem_buffer_bytes | bytes | Σ over TCP sockets ss saw of r + w + f |
| meminfo_<field>_bytes | bytes | MemTotal, MemFree, MemAvailable, Buffers, Cached, SwapCached, AnonPages, Slab, SReclaimable, SUnreclaim, KernelStack, PageTables, SecPageTables, Percpu, VmallocUsed (NA when the kernel does not print it) |
| buff_cache_bytes | bytes | Buffers + Cached + SReclaimable: what free(1)/top call buff/cache |
| pcp_free_bytes | bytes | Σ per-CPU page-list ``count`` from zoneinfo × page size: free pages not in MemFree (NA without zoneinfo; then nothing is subtracted below) |
| unlisted_bytes | bytes | MemTotal − (MemFree + Buffers + Cached + SwapCached + AnonPages + Slab + KernelStack + PageTables + SecPageTables + Percpu + VmallocUsed) − pcp_free_bytes (docs/kernel.md §9; a field the kernel does not print counts 0) |
| socket_slab_bytes | bytes | slab pages of the socket object caches (TCP, TCPv6, sock_inode_cache, tw_sock_*, request_sock_*), SLUB aliases resolved (a merged row also holds other objects) |
| skb_slab_bytes | bytes | slab pages of skbuff_head_cache, skbuff_fclone_cache, skbuff_small_head (aliases resolved) |
| process_rss_bytes | bytes | Σ RSS of every process in ps |
| socket_owner_rss_bytes | bytes | Σ RSS of the processes that own at least one TCP socket (each once) |
| cgroup_sock_bytes | bytes | Σ cgroup v2 ``memory.stat sock`` over the cgroups collected (NA without v2) |

``places`` (one row per place): ``place``, ``contains_socket_buffers`` (``yes``/``no``/``partly``),
``why`` (kernel reason, docs/kernel.md §10), ``low_bytes`` and ``high_bytes`` (the place's value in the
snapshot with the least and the most socket memory of the capture's own sockets, Σ skmem; sockstat
TCP mem when ss gave none: sockstat counts the whole box, sockets the capture does not see
included), ``delta_bytes`` and ``delta_ratio``
(delta_bytes / the sockstat delta, or the Σ skmem delta when sockstat did not move: ≈1 for a place
that holds the buffers, ≈0 for one that does not). For ``RSS of socket owners`` the delta is taken
over the pids that own sockets in the high snapshot and also ran in the low one, so a process that
started in between does not count its whole RSS as growth.

For ``RSS of socket owners`` the ``why`` is computed: when their RSS rose with the socket load (by at
least a quarter of the socket memory's rise and 16 MiB, or correlating ≥ 0.8 across snapshots) it
says so: the application buffers the data in user space too (Redis' client output buffers), a copy
beside the kernel's socket memory.

``verdict`` (:func:`where_verdict`, from the frames of :func:`where_frames`): label ``outside RSS and
buff/cache`` (always, on Linux) unless the sockets ss saw never held buffer memory (Σ skmem r+w+f 0
in every snapshot: ``no socket buffers``; sockstat alone is host-wide and may read a little from
other namespaces). The text quotes the capture's numbers, the skb slabs' own change beside meminfo
Slab's, and says when the owners' RSS rose with the socket load. ``notes``: merged slab caches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from tcpmemlib.analysis.common import (
    SKB_CACHES,
    SOCKET_OBJECT_CACHES,
    as_output,
    corr,
    fmt_bytes,
    meminfo_wide,
    number,
    page_size_bytes,
    slab_sum,
    snapshots,
)
from tcpmemlib.analysis.summary import per_snapshot_socket_sums, socket_summary
from tcpmemlib.analysis.verdict import Verdict

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture

__all__ = ["WhereResult", "by_snapshot_frame", "where_frames", "where_is_it", "where_verdict"]

MEMINFO_FIELDS = (
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapCached",
    "AnonPages",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "SecPageTables",
    "Percpu",
    "VmallocUsed",
)
#: The consumers MemTotal is split into for the "unlisted" remainder (docs/kernel.md §9).
LISTED = (
    "MemFree",
    "Buffers",
    "Cached",
    "SwapCached",
    "AnonPages",
    "Slab",
    "KernelStack",
    "PageTables",
    "SecPageTables",
    "Percpu",
    "VmallocUsed",
)


@dataclass(frozen=True)
class WhereResult:
    """``by_snapshot``, ``places`` and ``verdict`` of :func:`where_is_it` (schemas in the module doc)."""

    by_snapshot: pd.DataFrame
    places: pd.DataFrame
    verdict: Verdict
    notes: list[str] = field(default_factory=list)


def _pcp_free(cap: Capture) -> pd.Series:
    snaps = snapshots(cap)
    z = getattr(cap, "zoneinfo", None)
    if z is None or not len(z):
        return pd.Series(pd.NA, index=snaps["ts"], dtype="Int64")
    pcp = z[z["cpu"].notna()]
    s = pcp.groupby("ts")["count_pages"].sum().astype("Int64") * page_size_bytes(cap)
    present = set(z["ts"])
    out = s.reindex(snaps["ts"]).fillna(0).astype("Int64")
    return out.where(out.index.isin(present), pd.NA)


def _cgroup_sock(cap: Capture) -> pd.Series:
    snaps = snapshots(cap)
    cg = getattr(cap, "cgroups", None)
    if cg is None or not len(cg):
        return pd.Series(pd.NA, index=snaps["ts"], dtype="Int64")
    rows = cg[cg["key"].astype("string") == "sock"].drop_duplicates(["ts", "cgroup"])
    if not len(rows):
        return pd.Series(pd.NA, index=snaps["ts"], dtype="Int64")
    s = rows.groupby("ts")["value_bytes"].sum().astype("Int64")
    return s.reindex(snaps["ts"]).astype("Int64")


def _owner_rss(cap: Capture) -> pd.Series:
    """Per ts: Σ RSS of the processes owning at least one TCP socket (0 when none)."""
    snaps = snapshots(cap)
    pids = socket_summary(cap).owner_pids
    procs = cap.processes
    if not len(pids) or procs is None or not len(procs):
        return pd.Series(0, index=snaps["ts"], dtype="Int64")
    rss = procs[["ts", "pid", "rss_bytes"]].drop_duplicates(["ts", "pid"]).copy()
    rss["pid"] = rss["pid"].astype("Int64")
    total = pids.merge(rss, on=["ts", "pid"], how="inner").groupby("ts")["rss_bytes"].sum()
    return total.reindex(snaps["ts"]).fillna(0).astype("Int64")


def by_snapshot_frame(cap: Capture) -> tuple[pd.DataFrame, list[str]]:
    """The ``by_snapshot`` frame (module doc) and notes on merged slab caches."""
    snaps = snapshots(cap)
    st = cap.sockstat.drop_duplicates("ts").set_index("ts")
    out = snaps.copy()
    out["sockstat_tcp_mem_bytes"] = st["tcp_mem_bytes"].reindex(out["ts"]).astype("Int64").values
    out["sockstat_udp_mem_bytes"] = st["udp_mem_bytes"].reindex(out["ts"]).astype("Int64").values
    sums = per_snapshot_socket_sums(cap)
    out["skmem_buffer_bytes"] = sums["buffer_bytes"].astype("Int64").values
    mw = meminfo_wide(cap).set_index("ts").reindex(out["ts"])
    for name in MEMINFO_FIELDS:
        col = mw[name] if name in mw.columns else pd.Series(pd.NA, index=mw.index)
        out[f"meminfo_{name}_bytes"] = col.astype("Int64").values
    out["buff_cache_bytes"] = (
        out["meminfo_Buffers_bytes"]
        + out["meminfo_Cached_bytes"]
        + out["meminfo_SReclaimable_bytes"]
    )
    out["pcp_free_bytes"] = _pcp_free(cap).values
    listed = sum(out[f"meminfo_{f}_bytes"].fillna(0) for f in LISTED)
    unlisted = out["meminfo_MemTotal_bytes"] - listed - out["pcp_free_bytes"].fillna(0)
    out["unlisted_bytes"] = unlisted.astype("Int64")
    sock_slab, notes = slab_sum(cap, SOCKET_OBJECT_CACHES)
    skb_slab, notes2 = slab_sum(cap, SKB_CACHES)
    out["socket_slab_bytes"] = sock_slab.values
    out["skb_slab_bytes"] = skb_slab.values
    procs = cap.processes
    rss = procs.groupby("ts")["rss_bytes"].sum() if len(procs) else pd.Series(dtype="Int64")
    out["process_rss_bytes"] = rss.reindex(out["ts"]).astype("Int64").values
    out["socket_owner_rss_bytes"] = _owner_rss(cap).reindex(out["ts"]).astype("Int64").values
    out["cgroup_sock_bytes"] = _cgroup_sock(cap).values
    return out, notes + notes2


_PLACES: tuple[tuple[str, str, str, str], ...] = (
    # place, column, contains, why
    (
        "sockstat TCP mem",
        "sockstat_tcp_mem_bytes",
        "yes",
        "the protocol's memory_allocated: pages charged for skb truesize in receive/OFO/write/retransmit "
        "queues; global over network namespaces, v4+v6, lags by up to mem_pcpu_rsv pages per CPU",
    ),
    (
        "ss skmem r+w+f",
        "skmem_buffer_bytes",
        "yes",
        "per socket: r (receive+OFO truesize) + w (unsent+unacked truesize) + f (forward-allocated "
        "quota); only sockets of the collector's network namespace",
    ),
    (
        "cgroup v2 memory.stat sock",
        "cgroup_sock_bytes",
        "yes",
        "MEMCG_SOCK: charged with the same pages as sockstat, for sockets of non-root cgroups only "
        "(v1 charges nothing unless memory.kmem.tcp.limit_in_bytes was set)",
    ),
    (
        "unlisted kernel memory",
        "unlisted_bytes",
        "yes",
        "payload lives in page frags from alloc_pages() (sk_page_frag / NIC page pools), which no "
        "meminfo line lists: MemTotal minus every listed consumer and free/per-CPU-free pages",
    ),
    (
        "meminfo Slab",
        "meminfo_Slab_bytes",
        "partly",
        "only skb heads and struct sk_buff (a few % of the data); large kmalloc heads are in "
        "SUnreclaim; the payload itself is not slab",
    ),
    (
        "skb slab caches",
        "skb_slab_bytes",
        "partly",
        "skbuff_head_cache / skbuff_fclone_cache / skbuff_small_head: skb metadata and small heads",
    ),
    (
        "socket slab caches",
        "socket_slab_bytes",
        "no",
        "struct tcp_sock, socket inode, minisockets: the cost of a socket existing, not its buffers",
    ),
    (
        "top/free buff/cache",
        "buff_cache_bytes",
        "no",
        "Buffers + Cached + SReclaimable: block and file page cache plus reclaimable slab; only the "
        "socket inode/dentry objects (SReclaimable) land here, never buffer data",
    ),
    (
        "meminfo Buffers",
        "meminfo_Buffers_bytes",
        "no",
        "block-device page cache; meminfo has no socket line",
    ),
    ("meminfo Cached", "meminfo_Cached_bytes", "no", "file page cache"),
    (
        "process RSS (top RES)",
        "process_rss_bytes",
        "no",
        "RSS counts pages mapped in the process's page tables (file, anon, shmem); skb memory is "
        "kernel memory never mapped there (exception: TCP_ZEROCOPY_RECEIVE while mapped)",
    ),
    (
        "RSS of socket owners",
        "socket_owner_rss_bytes",
        "no",
        "the processes that hold the sockets: their RSS does not grow with the data their sockets "
        "queue (delta over the pids present in both snapshots)",
    ),
    (
        "MemAvailable",
        "meminfo_MemAvailable_bytes",
        "no",
        "socket buffers are 'used' memory: MemAvailable falls as they grow",
    ),
)


def _owner_rss_delta(cap: Capture, ts_lo: pd.Timestamp, ts_hi: pd.Timestamp) -> object:
    """Σ RSS change, low -> high snapshot, of the pids owning TCP sockets at ``ts_hi`` that also ran
    at ``ts_lo`` (processes that started in between are left out: their whole RSS is not a change)."""
    summary, procs = socket_summary(cap), cap.processes
    if not summary.owner_rows or procs is None or not len(procs):
        return pd.NA
    at_hi = summary.owner_pids[summary.owner_pids["ts"] == ts_hi]
    pids = set(at_hi["pid"].dropna().astype(int))
    rss = procs[procs["pid"].isin(pids)].drop_duplicates(["ts", "pid"])
    lo = rss[rss["ts"] == ts_lo].set_index("pid")["rss_bytes"]
    hi = rss[rss["ts"] == ts_hi].set_index("pid")["rss_bytes"]
    both = lo.index.intersection(hi.index)
    return int((hi[both].astype("int64") - lo[both].astype("int64")).sum())


def _places(bs: pd.DataFrame) -> tuple[pd.DataFrame, int | None, int | None]:
    # The snapshots with the least and the most socket memory, by the capture's own sockets (ss
    # skmem): sockstat's TCP mem counts every socket of the box, in namespaces the capture may not
    # see (another workload's), and could pick the peak of sockets that are not in the capture.
    tcp = bs["skmem_buffer_bytes"].astype("Float64")
    if tcp.notna().sum() == 0 or not tcp.max():
        tcp = bs["sockstat_tcp_mem_bytes"].astype("Float64")
    lo = hi = None
    if tcp.notna().any():
        lo, hi = int(tcp.idxmin()), int(tcp.idxmax())
    rows = []
    for place, col, contains, why in _PLACES:
        low = bs.at[lo, col] if lo is not None else pd.NA
        high = bs.at[hi, col] if hi is not None else pd.NA
        rows.append((place, contains, why, low, high))
    out = pd.DataFrame(
        rows, columns=["place", "contains_socket_buffers", "why", "low_bytes", "high_bytes"]
    )
    out["low_bytes"] = out["low_bytes"].astype("Int64")
    out["high_bytes"] = out["high_bytes"].astype("Int64")
    out["delta_bytes"] = out["high_bytes"] - out["low_bytes"]
    ref = out.loc[0, "delta_bytes"] if out.loc[0, "low_bytes"] is not pd.NA else pd.NA
    if ref is pd.NA or ref == 0:
        ref = out.loc[1, "delta_bytes"]
    if ref is pd.NA or ref == 0:
        out["delta_ratio"] = pd.Series(pd.NA, index=out.index, dtype="Float64")
    else:
        out["delta_ratio"] = (out["delta_bytes"].astype("Float64") / float(ref)).round(3)
    out["place"] = out["place"].astype("string")
    out["contains_socket_buffers"] = out["contains_socket_buffers"].astype("category")
    out["why"] = out["why"].astype("string")
    return out, lo, hi


#: The owners' RSS "follows the socket load" when it rose by at least this share of the socket
#: memory's rise (and :data:`RSS_FOLLOWS_MIN_BYTES`), or correlates with it across snapshots.
RSS_FOLLOWS_SHARE = 0.25
RSS_FOLLOWS_MIN_BYTES = 16 * (1 << 20)
RSS_FOLLOWS_CORR = 0.8


def _owner_rss_follows(bs: pd.DataFrame, delta: float, ref: float) -> tuple[bool, float]:
    """Whether the socket owners' RSS rose with the socket load (module doc), and the correlation
    of the two across snapshots."""
    c = corr(bs["socket_owner_rss_bytes"], bs["skmem_buffer_bytes"])
    rss = pd.to_numeric(bs["socket_owner_rss_bytes"], errors="coerce").astype("float64")
    span = float(rss.max() - rss.min()) if rss.notna().any() else 0.0
    rose = delta == delta and ref == ref and ref > 0 and delta >= RSS_FOLLOWS_SHARE * ref
    big = (delta == delta and delta >= RSS_FOLLOWS_MIN_BYTES) or (
        c == c and c >= RSS_FOLLOWS_CORR and span >= RSS_FOLLOWS_MIN_BYTES
    )
    return bool(big and (rose or (c == c and c >= RSS_FOLLOWS_CORR))), c


def where_frames(capture: Capture) -> WhereResult:
    """The frames of :func:`where_is_it` (``by_snapshot``, ``places``), with an empty verdict."""
    bs, notes = by_snapshot_frame(capture)
    places, lo, hi = _places(bs)
    i = places.index[places["place"] == "RSS of socket owners"][0]
    if lo is not None and hi is not None:
        delta = _owner_rss_delta(capture, bs.at[lo, "ts"], bs.at[hi, "ts"])
        places.loc[i, "delta_bytes"] = delta
        ref = places.loc[0, "delta_bytes"]
        if ref is pd.NA or ref == 0:
            ref = places.loc[1, "delta_bytes"]
        if delta is not pd.NA and ref is not pd.NA and ref != 0:
            places.loc[i, "delta_ratio"] = round(float(delta) / float(ref), 3)
        follows, _ = _owner_rss_follows(bs, number(delta), number(ref))
        if follows:
            places.loc[i, "why"] = (
                "the processes that hold the sockets: their RSS rose with the socket load "
                f"(+{fmt_bytes(number(delta))} while socket memory rose {fmt_bytes(number(ref))}): "
                "the application's own buffering in user space (like Redis' client output "
                "buffers): data waiting in the application, beside the kernel's socket memory, "
                "not that memory"
            )
    return WhereResult(as_output(bs), places, Verdict("", "", {}), notes)


def where_verdict(result: WhereResult) -> Verdict:
    """Word :func:`where_frames`' result: only what its frames hold."""
    bs, places, notes = result.by_snapshot, result.places, result.notes
    by_place = places.set_index("place")

    def val(place: str, col: str) -> float:
        return number(by_place.at[place, col])

    # sockstat's own peak ("up to"): the high snapshot is chosen by the capture's sockets (skmem)
    sockstat = pd.to_numeric(bs["sockstat_tcp_mem_bytes"], errors="coerce") if len(bs) else None
    peak = (
        float(sockstat.max())
        if sockstat is not None and sockstat.notna().any()
        else val("sockstat TCP mem", "high_bytes")
    )
    skmem_peak = val("ss skmem r+w+f", "high_bytes")
    skmem_max = number(bs["skmem_buffer_bytes"].max()) if len(bs) else float("nan")
    fig: dict[str, float] = {
        "peak_sockstat_tcp_mem_bytes": peak,
        "peak_skmem_buffer_bytes": skmem_peak,
        "max_skmem_buffer_bytes": skmem_max,
        "rss_total_bytes": val("process RSS (top RES)", "high_bytes"),
        "socket_owner_rss_bytes": val("RSS of socket owners", "high_bytes"),
    }
    for name, place in (
        ("sockstat", "sockstat TCP mem"),
        ("rss", "process RSS (top RES)"),
        ("owner_rss", "RSS of socket owners"),
        ("buff_cache", "top/free buff/cache"),
        ("unlisted", "unlisted kernel memory"),
        ("slab", "meminfo Slab"),
        ("skb_slab", "skb slab caches"),
        ("skmem", "ss skmem r+w+f"),
    ):
        fig[f"delta_{name}_bytes"] = val(place, "delta_bytes")
    ref = fig["delta_sockstat_bytes"]
    if ref != ref or ref == 0:
        ref = fig["delta_skmem_bytes"]
    follows, c = _owner_rss_follows(bs, fig["delta_owner_rss_bytes"], ref)
    fig["owner_rss_follows_socket_load"] = float(follows)
    fig["corr_owner_rss_skmem"] = c
    if bs.empty or (peak != peak and skmem_peak != skmem_peak):
        return Verdict("no socket buffers", "The capture has no sockstat or socket data.", fig)
    if skmem_max != skmem_max or skmem_max <= 0:
        text = (
            "The sockets ss saw held no buffer memory (Σ skmem r+w+f 0 in every snapshot): "
            "there is nothing to find in RSS or buff/cache."
        )
        if peak == peak and peak > 0:
            text += (
                f" sockstat TCP mem read up to {fmt_bytes(peak)}: it is host-wide (every network "
                "namespace, sockets ss did not list) and lags by up to the per-CPU reserves."
            )
        return Verdict("no socket buffers", text, fig)
    lo_hi = val("sockstat TCP mem", "low_bytes") == val("sockstat TCP mem", "low_bytes")
    text = (
        f"Socket buffers held up to {fmt_bytes(skmem_max)} (Σ skmem r+w+f of the sockets ss saw; "
        f"sockstat TCP mem, host-wide: up to {fmt_bytes(peak)}). They are not in any process's "
        f"RSS (all RSS together: {fmt_bytes(fig['rss_total_bytes'])}) and not in buff/cache."
    )
    if lo_hi and ref == ref and ref != 0:
        skb = fig["delta_skb_slab_bytes"]
        slab = f"meminfo Slab by {fmt_bytes(fig['delta_slab_bytes'])}"
        slab += (
            f" (the skb slabs, which hold skb heads: {fmt_bytes(skb)})"
            if skb == skb
            else " (slabinfo not collected: the skb slabs' share is unknown)"
        )
        text += (
            f" Between the snapshot with the least and the most socket memory, socket memory rose "
            f"by {fmt_bytes(ref)} while the socket owners' RSS changed by "
            f"{fmt_bytes(fig['delta_owner_rss_bytes'])} (all processes: "
            f"{fmt_bytes(fig['delta_rss_bytes'])}), buff/cache by "
            f"{fmt_bytes(fig['delta_buff_cache_bytes'])} and {slab}; the 'unlisted' kernel memory "
            f"(in no meminfo line, shown as 'used' by top) rose by "
            f"{fmt_bytes(fig['delta_unlisted_bytes'])}."
        )
        if follows:
            text += (
                f" The socket owners' RSS rose with the socket load (+"
                f"{fmt_bytes(fig['delta_owner_rss_bytes'])}"
                + (f", correlation {c:.2f} across snapshots" if c == c else "")
                + "): that is the application buffering data in user space (its own output "
                "buffers, like Redis' client-output-buffer-limit), beside the kernel socket memory, "
                "not the kernel memory itself. The operator pays for both."
            )
    else:
        text += (
            " Socket memory did not change within the capture, so which lines follow it cannot be "
            "seen here; the kernel puts the payload in page frags that no meminfo line lists."
        )
    growth = _rise_in_time_order(bs["socket_owner_rss_bytes"])
    fig["owner_rss_growth_bytes"] = growth
    if not follows and growth >= max(RSS_FOLLOWS_MIN_BYTES, RSS_FOLLOWS_SHARE * skmem_max):
        text += (
            f" The socket owners' RSS grew by {fmt_bytes(growth)} during the capture while their "
            f"sockets held at most {fmt_bytes(skmem_max)}: data buffered in the application's "
            "user space (its own output buffers, like Redis' client-output-buffer-limit), beside "
            "the kernel socket memory. The operator pays for both."
        )
    if notes:
        text += " Merged slab caches: " + "; ".join(notes) + "."
    return Verdict("outside RSS and buff/cache", text, fig)


def _rise_in_time_order(values: pd.Series) -> float:
    """The largest rise of ``values`` from a snapshot to a later one (0 if it only fell)."""
    v = pd.to_numeric(values, errors="coerce").astype("float64").dropna()
    if v.empty:
        return 0.0
    return float((v - v.cummin()).max())


def where_is_it(capture: Capture) -> WhereResult:
    """Q1: line up every place socket memory might be reported, per snapshot (module doc)."""
    frames = where_frames(capture)
    return WhereResult(frames.by_snapshot, frames.places, where_verdict(frames), frames.notes)
