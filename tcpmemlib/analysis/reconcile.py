"""Do the per-socket numbers add up to the kernel's global counter?

``reconcile(capture) -> ReconcileResult`` compares, per snapshot, Σ(r + w + f) over every TCP socket
``ss`` listed with sockstat ``TCP: mem`` × page size, and bounds what can explain the gap
(reference §2.1, §2.2):

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
  (a burst being acked, a busy box) widens the gap of that snapshot only. Not bounded.

``by_snapshot``:

| column | unit | meaning |
|---|---|---|
| ts, host, phase | | snapshot |
| skmem_sum_bytes | bytes | Σ r + w + f over TCP sockets ss listed |
| sockstat_mem_bytes | bytes | sockstat TCP ``mem`` × page size |
| gap_bytes | bytes | sockstat_mem_bytes − skmem_sum_bytes |
| pcpu_reserve_bound_bytes | bytes | mem_pcpu_rsv × page size × CPUs |
| explained_bound_bytes | bytes | the largest \\|gap\\| the known lags explain (= the per-CPU bound) |
| unexplained | boolean | \\|gap\\| > explained_bound_bytes |
| persistent | boolean | unexplained here and in a neighbouring snapshot too (an isolated one is most likely collection skew right after a burst); with a single snapshot, = unexplained |
| tcp_alloc | sockets | sockstat ``alloc`` (global) |
| ss_full_sockets | sockets | TCP sockets ss listed, minus TIME-WAIT and SYN-RECV |
| hidden_sockets | sockets | tcp_alloc − ss_full_sockets (NA without sockstat) |
| backlog_bytes | bytes | Σ bl (not charged anywhere yet) |
| sockstat_udp_mem_bytes | bytes | UDP's separate counter |

``verdict`` label: ``consistent`` (every snapshot within the bound), ``transient gaps`` (only isolated
snapshots exceed it: memory that moved while collect.sh read), ``unexplained gap`` (a gap that
persists across neighbouring snapshots) or ``no data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from tcpmemlib.analysis.common import (
    as_output,
    fmt_bytes,
    number,
    page_size_bytes,
    pcpu_reserve_pages,
    snapshots,
)
from tcpmemlib.analysis.summary import per_snapshot_socket_sums, socket_summary
from tcpmemlib.analysis.verdict import Verdict

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture

__all__ = ["ReconcileResult", "reconcile"]


@dataclass(frozen=True)
class ReconcileResult:
    """``by_snapshot`` and ``verdict`` of :func:`reconcile` (schema in the module doc)."""

    by_snapshot: pd.DataFrame
    verdict: Verdict


def reconcile(capture: Capture) -> ReconcileResult:
    """Σ skmem r+w+f against sockstat TCP mem, with the bound on the gap (module doc)."""
    cap = capture
    snaps = snapshots(cap)
    sums = per_snapshot_socket_sums(cap)
    per_snap = socket_summary(cap).per_snapshot
    ss_full = per_snap["full_sockets"]
    bl = per_snap["backlog_bytes"]
    st = cap.sockstat.drop_duplicates("ts").set_index("ts")
    page = page_size_bytes(cap)
    cpus = int(cap.cpus)
    rsv, rsv_source = pcpu_reserve_pages(cap)

    out = snaps.copy()
    out["skmem_sum_bytes"] = sums["buffer_bytes"].astype("Int64").values
    out["sockstat_mem_bytes"] = st["tcp_mem_bytes"].reindex(out["ts"]).astype("Int64").values
    out["gap_bytes"] = out["sockstat_mem_bytes"] - out["skmem_sum_bytes"]
    out["pcpu_reserve_bound_bytes"] = (rsv.reindex(out["ts"]).astype("Int64") * page * cpus).values
    out["explained_bound_bytes"] = out["pcpu_reserve_bound_bytes"]
    out["unexplained"] = (out["gap_bytes"].abs() > out["explained_bound_bytes"]).astype("boolean")
    unexp = out["unexplained"].fillna(False).astype(bool)
    if len(out) > 1:
        neighbour = unexp.shift(1, fill_value=False) | unexp.shift(-1, fill_value=False)
        out["persistent"] = (unexp & neighbour).astype("boolean")
    else:
        out["persistent"] = out["unexplained"]
    out["tcp_alloc"] = st["tcp_alloc"].reindex(out["ts"]).astype("Int64").values
    out["ss_full_sockets"] = ss_full.reindex(out["ts"]).fillna(0).astype("Int64").values
    out["hidden_sockets"] = out["tcp_alloc"] - out["ss_full_sockets"]
    out["backlog_bytes"] = bl.reindex(out["ts"]).fillna(0).astype("Int64").values
    out["sockstat_udp_mem_bytes"] = st["udp_mem_bytes"].reindex(out["ts"]).astype("Int64").values
    out = as_output(out)

    fig: dict[str, float] = {
        "snapshots": float(len(out)),
        "page_size_bytes": float(page),
        "cpus": float(cpus),
    }
    if not len(out) or out["gap_bytes"].notna().sum() == 0:
        return ReconcileResult(
            out, Verdict("no data", "No snapshot has both sockstat and ss data to reconcile.", fig)
        )
    gap = out["gap_bytes"].astype("Float64")
    worst = int(gap.abs().idxmax())
    bound = number(out.at[worst, "explained_bound_bytes"])
    n_unexp = int(out["unexplained"].fillna(False).sum())
    n_persist = int(out["persistent"].fillna(False).sum())
    hidden = number(out["hidden_sockets"].max())
    udp = number(out["sockstat_udp_mem_bytes"].max())
    blmax = number(out["backlog_bytes"].max())
    fig.update(
        max_abs_gap_bytes=float(abs(gap.iloc[worst])),
        gap_at_worst_bytes=float(gap.iloc[worst]),
        skmem_at_worst_bytes=number(out.at[worst, "skmem_sum_bytes"]),
        sockstat_at_worst_bytes=number(out.at[worst, "sockstat_mem_bytes"]),
        bound_bytes=bound,
        unexplained_snapshots=float(n_unexp),
        persistent_snapshots=float(n_persist),
        max_hidden_sockets=hidden,
        max_udp_mem_bytes=udp,
        max_backlog_bytes=blmax,
    )
    rsv_txt = {
        "sysctl": "net.core.mem_pcpu_rsv",
        "default": "kernel default 1 MiB per CPU (sysctl not collected)",
        "none": "kernel < 6.0 has no per-CPU reserve",
    }[rsv_source]
    text = (
        f"Σ skmem r+w+f = {fmt_bytes(fig['skmem_at_worst_bytes'])} vs sockstat TCP mem "
        f"{fmt_bytes(fig['sockstat_at_worst_bytes'])} in the worst of {len(out)} snapshot(s): gap "
        f"{fmt_bytes(fig['gap_at_worst_bytes'])}; the per-CPU reserves explain up to ±"
        f"{fmt_bytes(bound)} ({rsv_txt}, {cpus} CPUs)."
    )
    if n_persist:
        label = "unexplained gap"
        text += (
            f" {n_unexp} snapshot(s) exceed that bound, {n_persist} of them next to another that does: "
            "memory outside what ss listed (sockets of other network namespaces, see below) or "
            "charged to no listed socket."
        )
    elif n_unexp:
        label = "transient gaps"
        text += (
            f" {n_unexp} isolated snapshot(s) exceed that bound while their neighbours do not: memory "
            "that moved between the sockstat read and the ss read (collect.sh takes them "
            "milliseconds apart; e.g. a burst being acked), not memory that stays unaccounted."
        )
    else:
        label = "consistent"
        text += " Every snapshot is within that bound."
    if hidden == hidden and hidden > 0:
        text += (
            f" sockstat is host-wide but ss sees only its own network namespace: up to {int(hidden)} "
            "allocated TCP socket(s) were not visible to ss (other namespaces, or opened/closed between "
            "the reads); their buffers are in sockstat only."
        )
    else:
        text += " sockstat is host-wide and ss sees only its own network namespace; no hidden sockets here."
    text += f" UDP is counted separately (up to {fmt_bytes(udp)})"
    text += f"; backlog skbs (Σbl up to {fmt_bytes(blmax)}) are not charged in either."
    return ReconcileResult(out, Verdict(label, text, fig))
