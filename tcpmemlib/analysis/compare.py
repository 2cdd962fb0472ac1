"""Q2 (tuning): did a change (SO_RCVBUF, tcp_rmem, fewer connections...) reduce socket memory?

``compare(before, after) -> CompareResult`` takes two captures (or two ``capture.select(phase=...)``
slices) and compares per-snapshot values side by side. Each side's value is the **mean over its
snapshots**; its spread is the range (max − min) over its snapshots.

``system`` (one row per metric): ``metric`` (unit in the name), ``before``, ``after`` (means),
``delta`` (after − before), ``before_min``, ``before_max``, ``after_min``, ``after_max``, ``n_before``,
``n_after`` (snapshots), ``noise`` (the larger of the two ranges, plus for sockstat TCP mem the per-CPU
reserve bound: it can lag by that much), ``significant`` (\\|delta\\| > noise; with one snapshot a side
the ranges are 0, so any change counts: take more snapshots to see the noise).
Metrics: ``sockstat_tcp_mem_bytes``, ``skmem_buffer_bytes``, ``queued_bytes``, ``connections``,
``tcp_sockets``, ``rcvbuf_limit_bytes``, ``sndbuf_limit_bytes``, ``socket_slab_bytes``,
``meminfo_Slab_bytes``, ``meminfo_SUnreclaim_bytes``, ``meminfo_SReclaimable_bytes``,
``meminfo_MemAvailable_bytes``, ``unlisted_bytes``, ``process_rss_bytes``.

``by_process`` (one row per comm and metric; processes grouped by name so restarted pids compare):
``comm``, ``metric`` (``sockets``, ``buffer_bytes``, ``queued_bytes``, ``rcvbuf_limit_bytes``,
``sndbuf_limit_bytes``, ``rss_bytes``), then the same columns as ``system``. A comm absent on one side
counts 0 there.

``limits`` (one row per comm and limit): ``comm``, ``limit`` (``rcvbuf``/``sndbuf``: the ss ``rb``/
``tb`` of that comm's connections), ``before_median_bytes``, ``after_median_bytes``,
``before_max_bytes``, ``after_max_bytes``, ``changed`` (medians differ).

``sysctls`` (one row per tuning sysctl): ``name``, ``before``, ``after`` (value strings, last snapshot
of each side), ``changed``.

``verdict``: label ``reduced``, ``increased`` or ``no significant change`` (Σ skmem r+w+f, falling back
to sockstat TCP mem); the text names limit and sysctl changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from tcpmemlib.analysis.common import (
    fmt_bytes,
    number,
    page_size_bytes,
    pcpu_reserve_pages,
    snapshots,
)
from tcpmemlib.analysis.process import by_process as _by_process
from tcpmemlib.analysis.summary import median_max, per_snapshot_socket_sums, socket_summary
from tcpmemlib.analysis.verdict import Verdict
from tcpmemlib.analysis.where import by_snapshot_frame
from tcpmemlib.errors import TcpmemError

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture

__all__ = ["SYSTEM_METRICS", "CompareResult", "compare"]

SYSTEM_METRICS = (
    "sockstat_tcp_mem_bytes",
    "skmem_buffer_bytes",
    "queued_bytes",
    "connections",
    "tcp_sockets",
    "rcvbuf_limit_bytes",
    "sndbuf_limit_bytes",
    "socket_slab_bytes",
    "meminfo_Slab_bytes",
    "meminfo_SUnreclaim_bytes",
    "meminfo_SReclaimable_bytes",
    "meminfo_MemAvailable_bytes",
    "unlisted_bytes",
    "process_rss_bytes",
)
PROCESS_METRICS = (
    "sockets",
    "buffer_bytes",
    "queued_bytes",
    "rcvbuf_limit_bytes",
    "sndbuf_limit_bytes",
    "rss_bytes",
)
SYSCTLS = (
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_mem",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.rmem_default",
    "net.core.wmem_default",
    "net.ipv4.tcp_moderate_rcvbuf",
    "net.ipv4.tcp_congestion_control",
    "net.core.mem_pcpu_rsv",
)
STAT_COLUMNS = (
    "before",
    "after",
    "delta",
    "before_min",
    "before_max",
    "after_min",
    "after_max",
    "n_before",
    "n_after",
    "noise",
    "significant",
)


@dataclass(frozen=True)
class CompareResult:
    """Result of :func:`compare` (schemas in the module doc)."""

    system: pd.DataFrame
    by_process: pd.DataFrame
    limits: pd.DataFrame
    sysctls: pd.DataFrame
    verdict: Verdict


def _side_stats(values: pd.Series) -> tuple[float, float, float, int]:
    v = pd.to_numeric(values, errors="coerce").astype("Float64").dropna()
    if not len(v):
        return float("nan"), float("nan"), float("nan"), 0
    return float(v.mean()), float(v.min()), float(v.max()), len(v)


def _row(before: pd.Series, after: pd.Series, floor: float = 0.0) -> dict[str, Any]:
    b, bmin, bmax, nb = _side_stats(before)
    a, amin, amax, na = _side_stats(after)
    spread = [x for x in (bmax - bmin, amax - amin) if x == x]
    noise = (max(spread) if spread else float("nan")) + floor
    delta = a - b
    sig: Any = pd.NA if delta != delta or noise != noise else bool(abs(delta) > noise)
    return {
        "before": b,
        "after": a,
        "delta": delta,
        "before_min": bmin,
        "before_max": bmax,
        "after_min": amin,
        "after_max": amax,
        "n_before": nb,
        "n_after": na,
        "noise": noise,
        "significant": sig,
    }


def _typed(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    types = {c: "Float64" for c in STAT_COLUMNS}
    types.update(n_before="Int64", n_after="Int64", significant="boolean")
    types.update({k: "string" for k in keys})
    if not len(frame):
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in types.items()})[
            keys + list(STAT_COLUMNS)
        ]
    return frame.astype(types)[keys + list(STAT_COLUMNS)]


def _system_frame(cap: Capture) -> pd.DataFrame:
    bs, _ = by_snapshot_frame(cap)
    sums = per_snapshot_socket_sums(cap)
    for c in (
        "queued_bytes",
        "connections",
        "tcp_sockets",
        "rcvbuf_limit_bytes",
        "sndbuf_limit_bytes",
    ):
        bs[c] = sums[c].values
    return bs


def _limits(cap: Capture) -> pd.DataFrame:
    """Value counts of rb and tb over the capture's connections, per (primary owner) comm:
    ``comm``, ``limit`` (rcvbuf/sndbuf), ``value`` (NA kept), ``count``."""
    return socket_summary(cap).limits


def _median_max(counts: pd.DataFrame, comm: str, limit: str) -> tuple[float, float]:
    rows = counts[(counts["comm"].astype(str) == comm) & (counts["limit"] == limit)]
    return median_max(rows["value"], rows["count"])


def _sysctl_last(cap: Capture) -> dict[str, str]:
    sc = cap.sysctl
    if sc is None or not len(sc):
        return {}
    last = sc[sc["ts"] == sc["ts"].max()]
    return {
        str(n): " ".join(str(v).split()) for n, v in zip(last["name"], last["value"], strict=True)
    }


def compare(before: Any, after: Any) -> CompareResult:
    """System and per-process deltas between two captures, with noise (module doc)."""
    sb, sa = _system_frame(before), _system_frame(after)
    try:
        rsv_b, _ = pcpu_reserve_pages(before)
        floor = float(rsv_b.max()) * page_size_bytes(before) * int(before.cpus)
    except (TcpmemError, ValueError):  # a capture without page size / CPUs: no floor
        floor = 0.0
    rows = []
    for m in SYSTEM_METRICS:
        r = _row(sb[m], sa[m], floor if m == "sockstat_tcp_mem_bytes" else 0.0)
        rows.append({"metric": m, **r})
    system = _typed(pd.DataFrame(rows), ["metric"])

    pb, pa = _by_process(before), _by_process(after)
    prow = []
    comms = sorted(set(pb["comm"].astype(str)) | set(pa["comm"].astype(str)))
    tb = list(snapshots(before)["ts"])
    ta = list(snapshots(after)["ts"])
    for comm in comms:
        for m in PROCESS_METRICS:
            per_b = pb[pb["comm"].astype(str) == comm].groupby("ts")[m].sum(min_count=1).reindex(tb)
            per_a = pa[pa["comm"].astype(str) == comm].groupby("ts")[m].sum(min_count=1).reindex(ta)
            if m != "rss_bytes":
                per_b, per_a = per_b.fillna(0), per_a.fillna(0)
            prow.append({"comm": comm, "metric": m, **_row(per_b, per_a)})
    by_proc = _typed(pd.DataFrame(prow), ["comm", "metric"])

    lb, la = _limits(before), _limits(after)
    lrows = []
    for comm in sorted(set(lb["comm"].astype(str)) | set(la["comm"].astype(str))):
        for name in ("rcvbuf", "sndbuf"):
            bmed, bmax = _median_max(lb, comm, name)
            amed, amax = _median_max(la, comm, name)
            lrows.append(
                {
                    "comm": comm,
                    "limit": name,
                    "before_median_bytes": bmed,
                    "after_median_bytes": amed,
                    "before_max_bytes": bmax,
                    "after_max_bytes": amax,
                    "changed": pd.NA if bmed != bmed or amed != amed else bool(bmed != amed),
                }
            )
    limit_types = {
        "comm": "string",
        "limit": "category",
        "before_median_bytes": "Float64",
        "after_median_bytes": "Float64",
        "before_max_bytes": "Float64",
        "after_max_bytes": "Float64",
        "changed": "boolean",
    }
    if lrows:
        limits = pd.DataFrame(lrows).astype(limit_types)
    else:
        limits = pd.DataFrame({c: pd.Series([], dtype=t) for c, t in limit_types.items()})

    scb, sca = _sysctl_last(before), _sysctl_last(after)
    srows = [
        {
            "name": n,
            "before": scb.get(n, pd.NA),
            "after": sca.get(n, pd.NA),
            "changed": scb.get(n) != sca.get(n) if n in scb and n in sca else pd.NA,
        }
        for n in SYSCTLS
        if n in scb or n in sca
    ]
    sysctls = pd.DataFrame(srows, columns=["name", "before", "after", "changed"]).astype(
        {"name": "string", "before": "string", "after": "string", "changed": "boolean"}
    )

    sysr = system.set_index("metric")
    metric = "skmem_buffer_bytes"
    if (
        sysr.at[metric, "before"] is pd.NA
        and sysr.at["sockstat_tcp_mem_bytes", "before"] is not pd.NA
    ):
        metric = "sockstat_tcp_mem_bytes"
    d, sig = sysr.at[metric, "delta"], sysr.at[metric, "significant"]
    fig = {
        f"{m}_{k}": number(sysr.at[m, k])
        for m in (
            "skmem_buffer_bytes",
            "sockstat_tcp_mem_bytes",
            "rcvbuf_limit_bytes",
            "sndbuf_limit_bytes",
            "connections",
        )
        for k in ("before", "after", "delta", "noise")
    }
    if sig is pd.NA or not bool(sig):
        label = "no significant change"
    else:
        label = "reduced" if float(d) < 0 else "increased"
    text = (
        f"Socket buffer memory (Σ skmem r+w+f): {fmt_bytes(number(sysr.at[metric, 'before']))} before, "
        f"{fmt_bytes(number(sysr.at[metric, 'after']))} after (Δ {fmt_bytes(number(d))}, noise "
        f"{fmt_bytes(number(sysr.at[metric, 'noise']))}): {label}."
        if metric == "skmem_buffer_bytes"
        else f"sockstat TCP mem Δ {fmt_bytes(number(d))}: {label}."
    )
    changed = limits[limits["changed"].fillna(False)]
    if len(changed):
        text += (
            " Limits changed: "
            + "; ".join(
                f"{r.comm} {r.limit} {fmt_bytes(r.before_median_bytes)} -> {fmt_bytes(r.after_median_bytes)}"
                for r in changed.itertuples()
            )
            + " (median per connection; limits are ceilings, memory is used only for queued data)."
        )
    sc_changed = sysctls[sysctls["changed"].fillna(False)]
    if len(sc_changed):
        text += (
            " Sysctls changed: "
            + "; ".join(f"{r.name} {r.before} -> {r.after}" for r in sc_changed.itertuples())
            + "."
        )
    return CompareResult(system, by_proc, limits, sysctls, Verdict(label, text, fig))
