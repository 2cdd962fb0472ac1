"""Do the per-socket numbers add up to the kernel's global counter?

``reconcile(capture) -> ReconcileResult`` compares, per snapshot, Σ(r + w + f) over every TCP socket
``ss`` listed with sockstat ``TCP: mem`` × page size, and bounds what can explain the gap
(docs/kernel.md §4, §5):

- **per-CPU reserves** (kernel ≥ 6.0): each CPU caches up to ``net.core.mem_pcpu_rsv`` pages of
  charges/refunds before folding them into the global counter, so sockstat can be off by up to
  ``mem_pcpu_rsv × page size × CPUs`` either way. When the sysctl is missing the kernel default is used
  (1 MiB per CPU = ``1 MiB / page size`` pages, 256 at 4 KiB pages); kernels before 6.0 have no reserve.
- **other network namespaces**: sockstat ``mem`` and ``alloc`` are host-wide, ``ss`` sees only the
  collector's namespace. ``hidden_sockets`` = sockstat ``alloc`` − full TCP sockets ss listed (all
  states but TIME-WAIT / SYN-RECV); > 0 means sockets ss could not see (other namespaces, or sockets
  created/closed between the two reads). Their buffers cannot be bounded, only counted.
- **UDP** has its own counter (``sockstat_udp_mem_bytes``), not part of the TCP line.
- **backlog** (``bl``) skbs are not charged yet, so Σbl is neither in r+w+f nor in sockstat.
- **collection skew**: sockstat and ss are read a few milliseconds apart; memory that moves in between
  (a burst being acked, a busy box) widens the gap of that snapshot. collect.sh reads sockstat just
  before **and just after** ss (``Capture.sockstat`` ``tcp_mem_after_bytes``): the memory at the
  moment ss read a socket lies between the two reads, so the gap is explained when Σ skmem lies in
  the *bracket* [min(before, after) − per-CPU bound, max(before, after) + per-CPU bound]. Older
  captures have no after-read (NA): without traffic the bracket is the before-read ± the per-CPU
  bound; with traffic (sockets' bytes moved since the previous snapshot) the bound is unknown, and
  a gap there is neither explained nor called unexplained.

``by_snapshot``:

| column | unit | meaning |
|---|---|---|
| ts, host, phase | | snapshot |
| skmem_sum_bytes | bytes | Σ r + w + f over TCP sockets ss listed |
| sockstat_mem_bytes | bytes | sockstat TCP ``mem`` × page size, read just before ss |
| sockstat_after_bytes | bytes | the same read just after ss (NA: not collected, older captures) |
| gap_bytes | bytes | sockstat_mem_bytes − skmem_sum_bytes |
| pcpu_reserve_bound_bytes | bytes | mem_pcpu_rsv × page size × CPUs |
| skew_bytes | bytes | \\|after − before\\|: what moved while ss read (NA without the after-read) |
| explained_bound_bytes | bytes | per-CPU bound + skew (the per-CPU bound alone without the after-read) |
| bracket_low_bytes, bracket_high_bytes | bytes | the bracket Σ skmem must lie in (module doc) |
| traffic_bytes_per_s | bytes/s | the sockets' traffic since the previous snapshot (NA for the first) |
| bound_known | boolean | the after-read was taken, or no traffic moved |
| outside_bracket | boolean | Σ skmem outside the bracket |
| unexplained | boolean | outside_bracket and bound_known |
| persistent | boolean | unexplained here and in a neighbouring snapshot too (an isolated one is most likely collection skew right after a burst); with a single snapshot, = unexplained |
| tcp_alloc | sockets | sockstat ``alloc`` (global) |
| ss_full_sockets | sockets | TCP sockets ss listed, minus TIME-WAIT and SYN-RECV |
| hidden_sockets | sockets | tcp_alloc − ss_full_sockets (NA without sockstat) |
| backlog_bytes | bytes | Σ bl (not charged anywhere yet) |
| sockstat_udp_mem_bytes | bytes | UDP's separate counter |

``verdict`` (:func:`reconcile_verdict`) label: ``consistent`` (every snapshot within its bracket),
``bound unknown under traffic`` (gaps only where traffic moved and no after-read was taken),
``transient gaps`` (only isolated snapshots outside their bracket), ``hidden sockets`` (sockstat
persistently above Σ skmem while sockstat counts TCP sockets ss could not see: other network
namespaces hold that memory), ``unexplained gap`` (a gap that persists otherwise) or ``no data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from tcpmemlib.analysis.common import (
    as_output,
    fmt_bytes,
    fmt_rate,
    number,
    page_size_bytes,
    pcpu_reserve_pages,
    snapshots,
)
from tcpmemlib.analysis.summary import per_snapshot_socket_sums, socket_summary
from tcpmemlib.analysis.traffic import traffic_rate
from tcpmemlib.analysis.verdict import Verdict

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture

__all__ = ["LABELS", "ReconcileResult", "reconcile", "reconcile_frames", "reconcile_verdict"]

LABELS = (
    "consistent",
    "bound unknown under traffic",
    "transient gaps",
    "hidden sockets",
    "unexplained gap",
    "no data",
)


@dataclass(frozen=True)
class ReconcileResult:
    """``by_snapshot`` and ``verdict`` of :func:`reconcile` (schema in the module doc), with the
    per-CPU reserve's source (``sysctl``/``default``/``none``) and the CPU count."""

    by_snapshot: pd.DataFrame
    verdict: Verdict
    reserve_source: str = "sysctl"
    cpus: int = 0


def _sockstat_column(st: pd.DataFrame, names: tuple[str, ...], index: pd.Series) -> pd.Series:
    """The first of ``names`` that ``st`` has, per ts of ``index`` (NA when it has none)."""
    for name in names:
        if name in st.columns:
            return st[name].reindex(index).astype("Int64").reset_index(drop=True)
    return pd.Series(pd.NA, index=range(len(index)), dtype="Int64")


def reconcile_frames(capture: Capture) -> ReconcileResult:
    """The ``by_snapshot`` frame of :func:`reconcile`, with an empty verdict."""
    cap = capture
    snaps = snapshots(cap)
    sums = per_snapshot_socket_sums(cap)
    summary = socket_summary(cap)
    per_snap = summary.per_snapshot
    st = cap.sockstat.drop_duplicates("ts").set_index("ts")
    page = page_size_bytes(cap)
    cpus = int(cap.cpus)
    rsv, rsv_source = pcpu_reserve_pages(cap)

    out = snaps.copy()
    out["skmem_sum_bytes"] = sums["buffer_bytes"].astype("Int64").values
    out["sockstat_mem_bytes"] = st["tcp_mem_bytes"].reindex(out["ts"]).astype("Int64").values
    after = _sockstat_column(st, ("tcp_mem_after_bytes",), out["ts"])
    if after.isna().all() and "tcp_mem_after_pages" in st.columns:
        after = (_sockstat_column(st, ("tcp_mem_after_pages",), out["ts"]) * page).astype("Int64")
    out["sockstat_after_bytes"] = after.values
    out["gap_bytes"] = out["sockstat_mem_bytes"] - out["skmem_sum_bytes"]
    out["pcpu_reserve_bound_bytes"] = (rsv.reindex(out["ts"]).astype("Int64") * page * cpus).values
    out["skew_bytes"] = (out["sockstat_after_bytes"] - out["sockstat_mem_bytes"]).abs()
    out["explained_bound_bytes"] = out["pcpu_reserve_bound_bytes"] + out["skew_bytes"].fillna(0)
    lo = out[["sockstat_mem_bytes", "sockstat_after_bytes"]].min(axis=1, skipna=True)
    hi = out[["sockstat_mem_bytes", "sockstat_after_bytes"]].max(axis=1, skipna=True)
    out["bracket_low_bytes"] = (lo - out["pcpu_reserve_bound_bytes"]).astype("Int64")
    out["bracket_high_bytes"] = (hi + out["pcpu_reserve_bound_bytes"]).astype("Int64")
    rate = traffic_rate(summary.traffic_bytes.to_numpy(), pd.Index(snaps["ts"]), summary.tcp_rows)
    out["traffic_bytes_per_s"] = rate.to_numpy()
    quiet = (out["traffic_bytes_per_s"] == 0).fillna(False).astype(bool)
    if summary.tcp_rows == 0:
        quiet[:] = True
    out["bound_known"] = (out["sockstat_after_bytes"].notna() | quiet).astype("boolean")
    skmem = out["skmem_sum_bytes"]
    outside = (skmem < out["bracket_low_bytes"]) | (skmem > out["bracket_high_bytes"])
    out["outside_bracket"] = outside.astype("boolean")
    out["unexplained"] = (out["outside_bracket"] & out["bound_known"]).astype("boolean")
    unexp = out["unexplained"].fillna(False).astype(bool)
    if len(out) > 1:
        neighbour = unexp.shift(1, fill_value=False) | unexp.shift(-1, fill_value=False)
        out["persistent"] = (unexp & neighbour).astype("boolean")
    else:
        out["persistent"] = out["unexplained"]
    out["tcp_alloc"] = st["tcp_alloc"].reindex(out["ts"]).astype("Int64").values
    ss_full = per_snap["full_sockets"].reindex(out["ts"]).fillna(0)
    out["ss_full_sockets"] = ss_full.astype("Int64").values
    out["hidden_sockets"] = out["tcp_alloc"] - out["ss_full_sockets"]
    bl = per_snap["backlog_bytes"].reindex(out["ts"]).fillna(0)
    out["backlog_bytes"] = bl.astype("Int64").values
    out["sockstat_udp_mem_bytes"] = st["udp_mem_bytes"].reindex(out["ts"]).astype("Int64").values
    return ReconcileResult(as_output(out), Verdict("", "", {}), rsv_source, cpus)


def reconcile_verdict(result: ReconcileResult) -> Verdict:
    """Word :func:`reconcile_frames`' result (module doc)."""
    out = result.by_snapshot
    fig: dict[str, float] = {"snapshots": float(len(out)), "cpus": float(result.cpus)}
    if not len(out) or out["gap_bytes"].notna().sum() == 0:
        return Verdict("no data", "No snapshot has both sockstat and ss data to reconcile.", fig)
    gap = out["gap_bytes"].astype("Float64")
    worst = int(gap.abs().idxmax())
    bound = number(out.at[worst, "pcpu_reserve_bound_bytes"])
    unexp = out["unexplained"].fillna(False).astype(bool)
    persist = out["persistent"].fillna(False).astype(bool)
    unknown = (out["outside_bracket"].fillna(False) & ~out["bound_known"].fillna(False)).astype(
        bool
    )
    hidden = number(out["hidden_sockets"].max())
    hidden_at = out.loc[persist, "hidden_sockets"].astype("Float64")
    after_known = bool(out["sockstat_after_bytes"].notna().any())
    fig.update(
        max_abs_gap_bytes=float(abs(gap.iloc[worst])),
        gap_at_worst_bytes=float(gap.iloc[worst]),
        skmem_at_worst_bytes=number(out.at[worst, "skmem_sum_bytes"]),
        sockstat_at_worst_bytes=number(out.at[worst, "sockstat_mem_bytes"]),
        sockstat_after_at_worst_bytes=number(out.at[worst, "sockstat_after_bytes"]),
        bound_bytes=bound,
        unexplained_snapshots=float(unexp.sum()),
        persistent_snapshots=float(persist.sum()),
        bound_unknown_snapshots=float(unknown.sum()),
        max_hidden_sockets=hidden,
        max_udp_mem_bytes=number(out["sockstat_udp_mem_bytes"].max()),
        max_backlog_bytes=number(out["backlog_bytes"].max()),
    )
    rsv_txt = {
        "sysctl": "net.core.mem_pcpu_rsv",
        "default": "kernel default 1 MiB per CPU (sysctl not collected)",
        "none": "kernel < 6.0 has no per-CPU reserve",
    }[result.reserve_source]
    text = (
        f"Σ skmem r+w+f = {fmt_bytes(fig['skmem_at_worst_bytes'])} vs sockstat TCP mem "
        f"{fmt_bytes(fig['sockstat_at_worst_bytes'])}"
        + (
            f" (read again after ss: {fmt_bytes(fig['sockstat_after_at_worst_bytes'])})"
            if fig["sockstat_after_at_worst_bytes"] == fig["sockstat_after_at_worst_bytes"]
            else ""
        )
        + f" in the worst of {len(out)} snapshot(s): gap {fmt_bytes(fig['gap_at_worst_bytes'])}; "
        f"the per-CPU reserves explain up to ±{fmt_bytes(bound)} ({rsv_txt}, {result.cpus} CPUs)"
        + ("" if not after_known else ", plus what moved between the reads before and after ss")
        + "."
    )
    if persist.any():
        positive = bool((gap[persist] > 0).all())
        if positive and len(hidden_at) and bool((hidden_at > 0).all()):
            label = "hidden sockets"
            text += (
                f" In {int(persist.sum())} neighbouring snapshot(s) sockstat stays above Σ skmem "
                f"while it counts up to {int(hidden_at.max())} TCP socket(s) ss could not see: "
                "sockstat is host-wide, ss lists only its own network namespace, so those sockets "
                "(other namespaces: containers, other workloads) hold the difference."
            )
        else:
            label = "unexplained gap"
            text += (
                f" {int(unexp.sum())} snapshot(s) fall outside that bracket, {int(persist.sum())} "
                "of them next to another that does: memory outside what ss listed or charged to "
                "no listed socket."
            )
    elif unexp.any():
        label = "transient gaps"
        text += (
            f" {int(unexp.sum())} isolated snapshot(s) fall outside that bracket while their "
            "neighbours do not: memory that moved while collect.sh read (e.g. a burst being acked)."
        )
    elif unknown.any():
        label = "bound unknown under traffic"
        rate = number(out.loc[unknown, "traffic_bytes_per_s"].max())
        text += (
            f" {int(unknown.sum())} snapshot(s) exceed the per-CPU bound while traffic moved (up to "
            f"{fmt_rate(rate)}) and this capture has no sockstat read after ss, so what moved "
            "between the two reads is unknown: not evidence of missing memory. (collect.sh now "
            "reads sockstat before and after ss.)"
        )
    else:
        label = "consistent"
        text += " Every snapshot is within that bound."
    if hidden == hidden and hidden > 0 and label != "hidden sockets":
        text += (
            f" sockstat is host-wide but ss sees only its own network namespace: up to "
            f"{int(hidden)} allocated TCP socket(s) were not visible to ss; their buffers are in "
            "sockstat only."
        )
    elif not hidden > 0:
        text += " No TCP socket was hidden from ss."
    text += f" UDP is counted separately (up to {fmt_bytes(fig['max_udp_mem_bytes'])})"
    text += f"; backlog skbs (Σbl up to {fmt_bytes(fig['max_backlog_bytes'])}) are not charged in either."
    return Verdict(label, text, fig)


def reconcile(capture: Capture) -> ReconcileResult:
    """Σ skmem r+w+f against sockstat TCP mem, with the bracket on the gap (module doc)."""
    frames = reconcile_frames(capture)
    return ReconcileResult(
        frames.by_snapshot, reconcile_verdict(frames), frames.reserve_source, frames.cpus
    )
