"""Q2 (tuning): did a change (tcp_wmem, SO_SNDBUF, fewer connections...) reduce socket memory, and
did the memory really go away or move into the application?

``compare(before, after, phase=None) -> CompareResult`` takes two captures (or two
``capture.select(...)`` slices) of the same workload and compares **like with like**:

- ``phase`` given: that phase on both sides;
- else, when both sides have phases in common: the common phase in which the before side held the
  most socket buffer memory (the phase the change is meant for, e.g. ``slow``);
- else: the *busy part* of each side, the snapshots holding at least half of that side's peak
  Σ r+w+f (all snapshots when a side holds none). A ramp up to the load is left out on both sides.

``matched`` says which was used. Within it each metric's per-snapshot values are compared: each side's
**median**, the change of the medians with a bootstrap 95 % interval (resampling each side's
snapshots, seeded), and each side's **peak** over the whole capture. A change is *significant* when the
interval excludes 0 and the change exceeds ``floor_bytes`` (sockstat: the per-CPU reserve bound, by
which that counter may lag). With one snapshot a side the interval is the change itself: take more
snapshots to see the noise. A ramp on one side widens its spread but cannot hide a shift of the medians.

``system`` (one row per metric): ``metric`` (unit in the name), ``before``, ``after`` (medians over
the matched snapshots), ``delta``, ``ratio`` (after / before), ``delta_low``, ``delta_high`` (the
bootstrap interval), ``noise`` (half its width, plus the floor), ``before_peak``, ``after_peak``
(whole capture), ``before_spread``, ``after_spread`` (median absolute deviation), ``n_before``,
``n_after`` (snapshots compared), ``significant``.
Metrics: :data:`SYSTEM_METRICS`. ``kernel_socket_bytes`` is Σ skmem r+w+f (the sockets ss saw),
``socket_owner_rss_bytes`` the RSS of the processes that own TCP sockets and ``total_cost_bytes`` their
sum: what the operator pays for the sockets' data, wherever it sits.

``sockets`` (same columns, per-connection metrics :data:`SOCKET_METRICS`, each a per-snapshot value
whose median is compared): the quantiles p50/p99/max of w and r over connections, the largest
socket, how many connections hold data to send (w ≥ a page) or to read (r ≥ a page) and how much each
holds (median), how many sit at their send or receive limit.

``by_process`` (one row per comm and metric; processes grouped by name so restarted pids compare;
largest change first): ``comm``, ``metric`` (:data:`PROCESS_METRICS`), then the columns of ``system``.
A comm absent on one side counts 0 sockets and bytes there (RSS: NA).

``limits`` (one row per comm and limit): ``comm``, ``limit`` (``rcvbuf``/``sndbuf``: the rb/tb of that
comm's connections, whole captures), ``before_median_bytes``, ``after_median_bytes``,
``before_max_bytes``, ``after_max_bytes``, ``changed`` (medians differ).

``sysctls`` (one row per tuning sysctl): ``name``, ``before``, ``after`` (last snapshot), ``changed``.

``verdict`` (:func:`compare_verdict`, worded from these frames only): label ``reduced`` (kernel socket
memory fell and the total cost fell too), ``moved into the application`` (kernel socket memory fell
but the owners' RSS rose by at least half as much: no saving), ``increased``, ``no significant
change``. The text states the evidence: the matched part, the medians and peaks, the per-socket
figures ("200 connections held ~3.9 MiB each of data to send (at their send limit tb ...) before,
~290 KiB after"), the total cost and which process's RSS moved, the limits and sysctls that changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from tcpmemlib.analysis.common import (
    fmt_bytes,
    number,
    page_size_bytes,
    pcpu_reserve_pages,
    sysctl_last,
)
from tcpmemlib.analysis.process import by_process
from tcpmemlib.analysis.stats import compare_values, stats_frame
from tcpmemlib.analysis.summary import DISTRIBUTION_COLUMNS, median_max, socket_summary
from tcpmemlib.analysis.verdict import Verdict
from tcpmemlib.analysis.where import by_snapshot_frame
from tcpmemlib.errors import TcpmemError

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture

__all__ = [
    "LABELS",
    "PROCESS_METRICS",
    "SOCKET_METRICS",
    "SYSTEM_METRICS",
    "CompareResult",
    "compare",
    "compare_frames",
    "compare_verdict",
]

LABELS = ("reduced", "moved into the application", "increased", "no significant change")
SYSTEM_METRICS = (
    "kernel_socket_bytes",
    "sockstat_tcp_mem_bytes",
    "socket_owner_rss_bytes",
    "total_cost_bytes",
    "queued_bytes",
    "connections",
    "tcp_sockets",
    "rcvbuf_limit_bytes",
    "sndbuf_limit_bytes",
    "socket_slab_bytes",
    "skb_slab_bytes",
    "meminfo_Slab_bytes",
    "meminfo_MemAvailable_bytes",
    "unlisted_bytes",
    "process_rss_bytes",
)
# the per-connection distribution of summary.DISTRIBUTION_COLUMNS, and how many held a page or more
SOCKET_METRICS = ("connections_with_buffer", *DISTRIBUTION_COLUMNS)
PROCESS_METRICS = (
    "buffer_bytes",
    "rss_bytes",
    "sockets",
    "connections",
    "queued_bytes",
    "rcvbuf_limit_bytes",
    "sndbuf_limit_bytes",
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
#: The busy part of a side without common phases: snapshots holding at least this share of its peak.
BUSY_SHARE = 0.5
#: Owners' RSS rising by at least this share of the kernel's fall means the memory moved, not went.
MOVED_SHARE = 0.5
#: A process's RSS rise is named when it is at least this share of the kernel's change.
MOVER_SHARE = 0.05


@dataclass(frozen=True)
class CompareResult:
    """Result of :func:`compare` (schemas in the module doc)."""

    matched: str
    system: pd.DataFrame
    sockets: pd.DataFrame
    by_process: pd.DataFrame
    limits: pd.DataFrame
    sysctls: pd.DataFrame
    verdict: Verdict


# ------------------------------------------------------------------------------- per side
def _per_snapshot(cap: Capture) -> pd.DataFrame:
    """One row per snapshot: every system and socket metric (module doc)."""
    bs, _ = by_snapshot_frame(cap)
    per = socket_summary(cap).per_snapshot
    cols = [
        "connections",
        "tcp_sockets",
        "queued_bytes",
        "rcvbuf_limit_bytes",
        "sndbuf_limit_bytes",
        "connections_with_buffer",
        *DISTRIBUTION_COLUMNS,
    ]
    extra = per[cols].reindex(bs["ts"]).reset_index(drop=True)
    for c in cols:
        zero = not c.endswith("_bytes") or c in ("queued_bytes",)
        extra[c] = extra[c].fillna(0) if zero else extra[c]
    out = pd.concat([bs.reset_index(drop=True), extra], axis=1)
    out["kernel_socket_bytes"] = out["skmem_buffer_bytes"]
    kernel = out["skmem_buffer_bytes"].astype("Float64")
    out["total_cost_bytes"] = kernel + out["socket_owner_rss_bytes"].astype("Float64")
    return out


def _phase_names(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame.sort_values("ts")["phase"].dropna().astype(str)))


def _busy(frame: pd.DataFrame) -> pd.Series:
    kernel = frame["kernel_socket_bytes"].astype("Float64").fillna(0)
    peak = float(kernel.max()) if len(kernel) else 0.0
    if peak <= 0:
        return pd.Series(True, index=frame.index)
    return (kernel >= BUSY_SHARE * peak).astype(bool)


def _match(
    sb: pd.DataFrame, sa: pd.DataFrame, phase: str | None
) -> tuple[str, pd.Series, pd.Series]:
    """Which snapshots of each side to compare, and a phrase saying which."""
    if phase is not None:
        mb, ma = sb["phase"].astype("string") == phase, sa["phase"].astype("string") == phase
        if not mb.fillna(False).any() or not ma.fillna(False).any():
            raise TcpmemError(f"phase {phase!r} is not in both captures")
        return f"phase {phase}", mb.fillna(False), ma.fillna(False)
    common = [p for p in _phase_names(sb) if p in set(_phase_names(sa))]
    if common:
        held = {
            p: float(sb.loc[sb["phase"].astype("string") == p, "kernel_socket_bytes"].median())
            for p in common
        }
        best = max(common, key=lambda p: held[p] if held[p] == held[p] else -1.0)
        mb = (sb["phase"].astype("string") == best).fillna(False)
        ma = (sa["phase"].astype("string") == best).fillna(False)
        return (
            f"phase {best} (of the phases both captures have, where before held the most)",
            mb,
            ma,
        )
    return (
        f"the busy part of each capture (snapshots holding at least {BUSY_SHARE:.0%} of its peak "
        "socket buffer memory)",
        _busy(sb),
        _busy(sa),
    )


def _pcpu_floor(cap: Capture) -> float:
    try:
        rsv, _ = pcpu_reserve_pages(cap)
        return float(rsv.max()) * page_size_bytes(cap) * int(cap.cpus)
    except (TcpmemError, ValueError):  # a capture without page size / CPUs: no floor
        return 0.0


def _process_rows(before: Capture, after: Capture, tb: pd.Series, ta: pd.Series) -> pd.DataFrame:
    """``by_process`` compared per comm over the matched snapshots ``tb``/``ta`` (ts values)."""
    pb, pa = by_process(before), by_process(after)
    ts_b, ts_a = list(pb["ts"].drop_duplicates()), list(pa["ts"].drop_duplicates())
    rows = []
    comms = sorted(set(pb["comm"].astype(str)) | set(pa["comm"].astype(str)))
    keep_b, keep_a = set(tb), set(ta)
    for comm in comms:
        for m in PROCESS_METRICS:
            per_b = pb[pb["comm"].astype(str) == comm].groupby("ts")[m].sum(min_count=1)
            per_a = pa[pa["comm"].astype(str) == comm].groupby("ts")[m].sum(min_count=1)
            per_b, per_a = per_b.reindex(ts_b), per_a.reindex(ts_a)
            if m != "rss_bytes":
                per_b, per_a = per_b.fillna(0), per_a.fillna(0)
            mb = per_b[[t in keep_b for t in per_b.index]]
            ma = per_a[[t in keep_a for t in per_a.index]]
            rows.append({"comm": comm, "metric": m, **compare_values(mb, ma, per_b, per_a)})
    out = stats_frame(pd.DataFrame(rows), ["comm", "metric"])
    if not len(out):
        return out
    # largest change first: a comm's rows stay together, ordered by its largest change of memory
    # held (kernel buffers, RSS); limits are ceilings, not memory, and do not order the table
    held = out["metric"].isin(["buffer_bytes", "rss_bytes", "queued_bytes"])
    size = out["delta"].abs().where(held, 0).fillna(0)
    order = size.groupby(out["comm"]).transform("max")
    out = out.assign(_o=order).sort_values(["_o", "comm"], ascending=[False, True], kind="stable")
    return out.drop(columns="_o").reset_index(drop=True)


def _limits(before: Capture, after: Capture) -> pd.DataFrame:
    lb, la = socket_summary(before).limits, socket_summary(after).limits

    def med_max(counts: pd.DataFrame, comm: str, limit: str) -> tuple[float, float]:
        rows = counts[(counts["comm"].astype(str) == comm) & (counts["limit"] == limit)]
        return median_max(rows["value"], rows["count"])

    rows = []
    for comm in sorted(set(lb["comm"].astype(str)) | set(la["comm"].astype(str))):
        for name in ("rcvbuf", "sndbuf"):
            bmed, bmax = med_max(lb, comm, name)
            amed, amax = med_max(la, comm, name)
            rows.append(
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
    types = {
        "comm": "string",
        "limit": "category",
        "before_median_bytes": "Float64",
        "after_median_bytes": "Float64",
        "before_max_bytes": "Float64",
        "after_max_bytes": "Float64",
        "changed": "boolean",
    }
    if not rows:
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in types.items()})
    return pd.DataFrame(rows).astype(types)


def _sysctls(before: Capture, after: Capture) -> pd.DataFrame:
    scb, sca = sysctl_last(before), sysctl_last(after)
    rows = [
        {
            "name": n,
            "before": scb.get(n, pd.NA),
            "after": sca.get(n, pd.NA),
            "changed": scb.get(n) != sca.get(n) if n in scb and n in sca else pd.NA,
        }
        for n in SYSCTLS
        if n in scb or n in sca
    ]
    return pd.DataFrame(rows, columns=["name", "before", "after", "changed"]).astype(
        {"name": "string", "before": "string", "after": "string", "changed": "boolean"}
    )


# ------------------------------------------------------------------------------- frames
def compare_frames(before: Capture, after: Capture, phase: str | None = None) -> CompareResult:
    """Every frame of the comparison (module doc), with a placeholder verdict."""
    sb, sa = _per_snapshot(before), _per_snapshot(after)
    matched, mb, ma = _match(sb, sa, phase)
    floor = _pcpu_floor(before)

    def table(metrics: tuple[str, ...]) -> pd.DataFrame:
        rows = []
        for m in metrics:
            f = floor if m == "sockstat_tcp_mem_bytes" else 0.0
            rows.append(
                {"metric": m, **compare_values(sb.loc[mb, m], sa.loc[ma, m], sb[m], sa[m], f)}
            )
        return stats_frame(pd.DataFrame(rows), ["metric"])

    system, sockets = table(SYSTEM_METRICS), table(SOCKET_METRICS)
    procs = _process_rows(before, after, sb.loc[mb, "ts"], sa.loc[ma, "ts"])
    empty = Verdict("no significant change", "", {})
    return CompareResult(
        matched, system, sockets, procs, _limits(before, after), _sysctls(before, after), empty
    )


# ------------------------------------------------------------------------------- verdict
def _wmem_max(sysctls: pd.DataFrame, side: str) -> float:
    row = sysctls[sysctls["name"] == "net.ipv4.tcp_wmem"]
    if not len(row) or pd.isna(row[side].iloc[0]):
        return float("nan")
    parts = str(row[side].iloc[0]).split()
    return float(parts[2]) if len(parts) == 3 and parts[2].isdigit() else float("nan")


def _limit_note(tb: float, wmem_max: float) -> str:
    if tb != tb:
        return ""
    if wmem_max == wmem_max and abs(tb - wmem_max) <= 0.01 * wmem_max:
        return f"their send limit tb {fmt_bytes(tb)}, the tcp_wmem ceiling"
    return f"their send limit tb {fmt_bytes(tb)}"


def _socket_evidence(r: CompareResult) -> tuple[str, dict[str, float]]:
    """The per-socket sentence: how many connections held data and how much each, before/after."""
    s = r.sockets.set_index("metric")

    def v(metric: str, col: str) -> float:
        return number(s.at[metric, col])

    parts, fig = [], {}
    n_b, n_a = v("sending_connections", "before"), v("sending_connections", "after")
    if (n_b == n_b and n_b >= 1) or (n_a == n_a and n_a >= 1):
        wb, wa = v("sending_w_p50_bytes", "before"), v("sending_w_p50_bytes", "after")
        tbb, tba = v("sending_tb_p50_bytes", "before"), v("sending_tb_p50_bytes", "after")
        at_b, at_a = v("at_sndbuf_limit", "before"), v("at_sndbuf_limit", "after")
        note_b = _limit_note(tbb, _wmem_max(r.sysctls, "before"))
        note_a = _limit_note(tba, _wmem_max(r.sysctls, "after"))
        parts.append(
            f"{n_b:.0f} connections held ~{fmt_bytes(wb)} each of data not yet sent or acked"
            + (f" ({at_b:.0f} at {note_b})" if note_b and at_b >= 1 else "")
            + f" before, {n_a:.0f} held ~{fmt_bytes(wa)} each"
            + (f" ({at_a:.0f} at {note_a})" if note_a and at_a >= 1 else "")
            + " after"
        )
        fig.update(
            sending_connections_before=n_b,
            sending_connections_after=n_a,
            sending_w_p50_before_bytes=wb,
            sending_w_p50_after_bytes=wa,
            at_sndbuf_limit_before=at_b,
            at_sndbuf_limit_after=at_a,
        )
    n_b, n_a = v("receiving_connections", "before"), v("receiving_connections", "after")
    if (n_b == n_b and n_b >= 1) or (n_a == n_a and n_a >= 1):
        rb_, ra = v("receiving_r_p50_bytes", "before"), v("receiving_r_p50_bytes", "after")
        parts.append(
            f"{n_b:.0f} held ~{fmt_bytes(rb_)} each of data not yet read before, "
            f"{n_a:.0f} held ~{fmt_bytes(ra)} after"
        )
        fig.update(
            receiving_connections_before=n_b,
            receiving_connections_after=n_a,
            receiving_r_p50_before_bytes=rb_,
            receiving_r_p50_after_bytes=ra,
        )
    mb, ma = v("socket_buffer_max_bytes", "before_peak"), v("socket_buffer_max_bytes", "after_peak")
    fig.update(largest_socket_before_bytes=mb, largest_socket_after_bytes=ma)
    text = "Per connection (median snapshot): " + "; ".join(parts) + "." if parts else ""
    text += f" The largest single socket held {fmt_bytes(mb)} before, {fmt_bytes(ma)} after."
    return text.strip(), fig


def _rss_mover(r: CompareResult, kernel_delta: float) -> tuple[str, float, float] | None:
    """The comm whose RSS rose the most by at least :data:`MOVER_SHARE` of the kernel's change (and
    a MiB), with its before/after medians: a significant rise first; else (a ramp over a few
    snapshots can leave the interval wide) the largest such rise."""
    p = r.by_process
    least = max(
        float(1 << 20), MOVER_SHARE * abs(kernel_delta) if kernel_delta == kernel_delta else 0
    )
    rose = p[(p["metric"] == "rss_bytes") & (p["delta"] >= least)]
    rss = rose[rose["significant"].fillna(False).astype(bool)]
    if not len(rss):
        rss = rose
    if not len(rss):
        return None
    top = rss.loc[rss["delta"].astype("float64").idxmax()]
    return str(top["comm"]), number(top["before"]), number(top["after"])


def compare_verdict(r: CompareResult) -> Verdict:
    """Word the comparison ``r`` (from :func:`compare_frames`): only what its frames hold."""
    sysm = r.system.set_index("metric")

    def v(metric: str, col: str) -> float:
        return number(sysm.at[metric, col])

    metric = "kernel_socket_bytes"
    if v(metric, "n_before") == 0 or v(metric, "before") != v(metric, "before"):
        metric = "sockstat_tcp_mem_bytes"
    d, sig = v(metric, "delta"), sysm.at[metric, "significant"]
    kb, ka = v(metric, "before"), v(metric, "after")
    cost_d = v("total_cost_bytes", "delta")
    owner_d = v("socket_owner_rss_bytes", "delta")
    fig = {
        f"{m}_{k}": v(m, k)
        for m in (
            "kernel_socket_bytes",
            "sockstat_tcp_mem_bytes",
            "socket_owner_rss_bytes",
            "total_cost_bytes",
            "connections",
        )
        for k in ("before", "after", "delta", "before_peak", "after_peak", "noise")
    }
    if sig is pd.NA or not bool(sig):
        label = "no significant change"
    elif d > 0:
        label = "increased"
    elif owner_d == owner_d and owner_d >= MOVED_SHARE * -d:
        label = "moved into the application"
    else:
        label = "reduced"
    what = (
        "Kernel socket memory (Σ skmem r+w+f)"
        if metric == "kernel_socket_bytes"
        else "sockstat TCP mem"
    )
    n = f"{v(metric, 'n_before'):.0f} and {v(metric, 'n_after'):.0f} snapshots"
    lo, hi = v(metric, "delta_low"), v(metric, "delta_high")
    spread = (
        f" (95% interval {fmt_bytes(lo)} to {fmt_bytes(hi)})"
        if hi - lo > 0.001 * max(abs(d), 1.0)
        else " (the same in every snapshot compared)"
        if min(v(metric, "n_before"), v(metric, "n_after")) > 1
        else " (one snapshot a side: no noise estimate)"
    )
    ob, oa = v("socket_owner_rss_bytes", "before"), v("socket_owner_rss_bytes", "after")
    cb, ca = v("total_cost_bytes", "before"), v("total_cost_bytes", "after")
    ratio = v(metric, "ratio")
    mover = _rss_mover(r, d) if cb == cb and ca == ca else None
    kernel = f"{fmt_bytes(kb)} -> {fmt_bytes(ka)}"
    # the answer first, in one sentence with its numbers
    if label == "moved into the application":
        who = (
            f"{mover[0]}'s RSS rose {fmt_bytes(mover[1])} -> {fmt_bytes(mover[2])}"
            if mover
            else f"the socket owners' RSS rose {fmt_bytes(ob)} -> {fmt_bytes(oa)}"
        )
        saving = (
            "no saving"
            if -cost_d < 0.1 * -d
            else f"a saving of {fmt_bytes(-cost_d)}, not {fmt_bytes(-d)}"
        )
        text = (
            f"{what} fell {kernel} (x{ratio:.2f}) but {who}: {saving} (kernel socket memory + "
            f"the socket owners' RSS went {fmt_bytes(cb)} -> {fmt_bytes(ca)}); the application "
            "kept in user-space buffers the data the kernel no longer queues."
        )
    elif label == "reduced":
        text = f"{what} fell {kernel} (x{ratio:.2f})"
        text += (
            f" and what the operator pays (kernel socket memory + the socket owners' RSS) fell "
            f"{fmt_bytes(cb)} -> {fmt_bytes(ca)}."
            if cb == cb and ca == ca
            else "."
        )
        if mover:
            text += f" {mover[0]}'s RSS rose {fmt_bytes(mover[1])} -> {fmt_bytes(mover[2])}."
    elif label == "increased":
        text = f"{what} rose {kernel} (x{ratio:.2f})."
    else:
        text = f"{what} did not change beyond the noise: {kernel}."
    text += (
        f" Compared over {r.matched} ({n}): medians {kernel}, change {fmt_bytes(d)}{spread}; peak "
        f"{fmt_bytes(v(metric, 'before_peak'))} -> {fmt_bytes(v(metric, 'after_peak'))}."
    )
    evidence, sock_fig = _socket_evidence(r)
    fig.update(sock_fig)
    text += " " + evidence
    if label not in ("moved into the application", "reduced") and cb == cb and ca == ca:
        text += (
            f" Kernel socket memory + the socket owners' RSS: {fmt_bytes(cb)} before, "
            f"{fmt_bytes(ca)} after (owners' RSS {fmt_bytes(ob)} -> {fmt_bytes(oa)})."
        )
    changed = r.limits[r.limits["changed"].fillna(False)]
    if len(changed):
        text += (
            " Limits changed: "
            + "; ".join(
                f"{c.comm} {c.limit} {fmt_bytes(c.before_median_bytes)} -> "
                f"{fmt_bytes(c.after_median_bytes)}"
                for c in changed.itertuples()
            )
            + " (median per connection; limits are ceilings, memory is used only for queued data)."
        )
    sc_changed = r.sysctls[r.sysctls["changed"].fillna(False)]
    if len(sc_changed):
        text += (
            " Sysctls changed: "
            + "; ".join(f"{c.name} {c.before} -> {c.after}" for c in sc_changed.itertuples())
            + "."
        )
    return Verdict(label, text, fig)


def compare(before: Capture, after: Capture, phase: str | None = None) -> CompareResult:
    """Like-with-like comparison of two captures, with the total cost (module doc)."""
    frames = compare_frames(before, after, phase)
    return CompareResult(
        frames.matched,
        frames.system,
        frames.sockets,
        frames.by_process,
        frames.limits,
        frames.sysctls,
        compare_verdict(frames),
    )
