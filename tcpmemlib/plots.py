"""Plots for the notebooks and reports (the tables they show are in ``views``).

Every plot function takes the analysis result frame it draws (docs/design.md §3), an optional ``ax``,
returns the ``Axes`` and never calls ``plt.show()``. Time axes are seconds since the capture's first
snapshot, with the capture's phases shaded and labelled when it has them; byte axes are MiB (or KiB for
per-socket costs). Labels that come from the box (process names, cgroups) are drawn as plain text:
``$`` would otherwise start matplotlib's math mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from tcpmemlib.views import with_buff_cache

MIB = float(1 << 20)


KIB = 1024.0

# One colour per place/series, the same in every notebook; no two lines drawn together share a hue
# (the RSS lines are black/grey, far from the orange of the socket buffers).


COLORS = {
    "sockstat_tcp_mem_bytes": "#cc0000",
    "skmem_buffer_bytes": "#f57900",
    "unlisted_bytes": "#75507b",
    "meminfo_Slab_bytes": "#3465a4",
    "meminfo_SReclaimable_bytes": "#729fcf",
    "meminfo_SUnreclaim_bytes": "#204a87",
    "buff_cache_bytes": "#4e9a06",
    "process_rss_bytes": "#555753",
    "socket_owner_rss_bytes": "#2e3436",
    "holder_rss_bytes": "#2e3436",
    "socket_slab_bytes": "#06989a",
    "pcp_free_bytes": "#888a85",
}


# Line styles and markers that tell apart the lines expected to lie on top of each other.
STYLES = {"skmem_buffer_bytes": "--", "holder_rss_bytes": "-.", "socket_owner_rss_bytes": "-."}
MARKERS = {"skmem_buffer_bytes": "x", "holder_rss_bytes": "s", "socket_owner_rss_bytes": "s"}

PLACE_LABELS = {
    "sockstat_tcp_mem_bytes": "sockstat TCP mem (pages x page size)",
    "skmem_buffer_bytes": "sum of ss skmem r+w+f",
    "unlisted_bytes": "unlisted (in no meminfo line)",
    "meminfo_Slab_bytes": "meminfo Slab",
    "meminfo_SReclaimable_bytes": "meminfo SReclaimable",
    "meminfo_SUnreclaim_bytes": "meminfo SUnreclaim",
    "buff_cache_bytes": "free/top buff/cache (Buffers+Cached+SReclaimable)",
    "process_rss_bytes": "sum of process RSS",
    "socket_owner_rss_bytes": "RSS of the socket-owning processes",
    "holder_rss_bytes": "RSS of the processes holding the buffers",
    "socket_slab_bytes": "socket objects in slab",
    "pcp_free_bytes": "per-CPU free page lists",
}


def _ax(ax: Axes | None, figsize: tuple[float, float] = (9, 4)) -> Axes:
    if ax is not None:
        return ax
    _, new = plt.subplots(figsize=figsize, layout="constrained")
    return new


#: Characters above this code point may be missing from the default font (DejaVu Sans covers Latin,
#: Greek and Cyrillic): a label escapes them rather than draw a box and warn "Glyph ... missing".
FONT_SAFE_BELOW = 0x500


def _safe_char(c: str) -> str:
    if c.isprintable() and ord(c) < FONT_SAFE_BELOW:
        return c
    code = ord(c)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def plain(text: object) -> str:
    """A string from the box made safe for a matplotlib label: no math mode (``$`` escaped), and
    control characters or characters the font may lack written as escapes (``\\x1b``, ``\\u540d``),
    so an odd process name never draws as boxes or warns about missing glyphs."""
    return "".join(_safe_char(c) for c in str(text)).replace("$", r"\$")


def _num(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()


def elapsed_s(ts: pd.Series | Sequence[Any], t0: Any = None) -> np.ndarray:
    """Seconds since ``t0`` (default: the earliest ``ts``) as floats."""
    t = pd.to_datetime(pd.Series(ts), utc=True)
    start = t.min() if t0 is None else pd.Timestamp(t0)
    if start.tzinfo is None:
        start = start.tz_localize("UTC")
    return ((t - start).dt.total_seconds()).to_numpy(dtype="float64")


def phase_spans(ts: pd.Series, phase: pd.Series) -> list[tuple[str, float, float]]:
    """Contiguous runs of one phase as ``(label, start_s, end_s)``, seconds since the first ``ts``.

    A run ends where the next one starts (so the shading has no gaps); the last ends at its last
    snapshot. Snapshots without a phase make no span."""
    frame = pd.DataFrame(
        {"t": elapsed_s(ts), "phase": pd.Series(phase).astype("string").to_numpy()}
    )
    frame = frame.sort_values("t").reset_index(drop=True)
    spans: list[tuple[str, float, float]] = []
    run_label: str | None = None
    run_start = 0.0
    for t, label in zip(frame["t"], frame["phase"], strict=True):
        label = None if pd.isna(label) else str(label)
        if label != run_label:
            if run_label is not None:
                spans.append((run_label, run_start, float(t)))
            run_label, run_start = label, float(t)
    if run_label is not None:
        spans.append((run_label, run_start, float(frame["t"].iloc[-1])))
    return spans


def shade_phases(ax: Axes, ts: pd.Series, phase: pd.Series | None, labels: bool = True) -> Axes:
    """Shade each phase on a time axis (seconds since the first snapshot) and, with ``labels``,
    write its name above the axes (alternating heights so short neighbouring phases stay legible)."""
    if phase is None:
        return ax
    spans = phase_spans(ts, phase)
    for i, (label, start, end) in enumerate(spans):
        if end <= start:
            end = start + 0.5
        ax.axvspan(start, end, color="0.90" if i % 2 == 0 else "0.97", zorder=0, lw=0)
        if labels:
            ax.text(
                (start + end) / 2,
                1.01 if i % 2 == 0 else 1.06,
                plain(label),
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=8,
                color="0.25",
                clip_on=False,
            )
    return ax


def _title(ax: Axes, text: str, phases: bool = True) -> None:
    ax.set_title(text, pad=24 if phases else 6)


def _time_axis(ax: Axes, frame: pd.DataFrame) -> np.ndarray:
    x = elapsed_s(frame["ts"])
    shade_phases(ax, frame["ts"], frame["phase"] if "phase" in frame.columns else None)
    ax.set_xlabel("time since the first snapshot (s)")
    return x


def where_over_time(
    by_snapshot: pd.DataFrame,
    places: Iterable[str] = (
        "sockstat_tcp_mem_bytes",
        "skmem_buffer_bytes",
        "unlisted_bytes",
        "meminfo_Slab_bytes",
        "buff_cache_bytes",
        "holder_rss_bytes",
    ),
    ax: Axes | None = None,
    relative: bool = True,
) -> Axes:
    """Q1: each place's bytes over time, in MiB. ``relative`` plots the change since the first
    snapshot (what the workload added), which puts a 1 GiB page cache and a 60 MiB socket queue on
    one readable scale."""
    ax = _ax(ax)
    frame = with_buff_cache(by_snapshot).sort_values("ts")
    x = _time_axis(ax, frame)
    for col in places:
        if col == "holder_rss_bytes" and col not in frame.columns:
            col = "socket_owner_rss_bytes"  # without with_holder_rss(): every socket owner
        if col not in frame.columns:
            continue
        y = _num(frame[col]) / MIB
        finite = y[np.isfinite(y)]
        if relative and len(finite):
            y = y - finite[0]  # from the first snapshot that has the value
        ax.plot(
            x,
            y,
            marker=MARKERS.get(col, "."),
            ls=STYLES.get(col, "-"),
            label=PLACE_LABELS.get(col, col),
            color=COLORS.get(col),
        )
    ax.set_ylabel(("change since first snapshot" if relative else "memory") + " (MiB)")
    ax.axhline(0, color="0.5", lw=0.5)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _title(ax, "Where the memory shows up, over time")
    return ax


def reconcile_plot(by_snapshot: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """sockstat ``mem`` against the sum of ss skmem r+w+f, with sockstat's bracket as a band (the
    reads just before and after ss, widened by the per-CPU reserve bound; ± that bound around the
    one read in older captures): where the skmem line lies inside the band the two agree within what
    the kernel and the timing of the reads allow."""
    ax = _ax(ax)
    frame = by_snapshot.sort_values("ts")
    x = _time_axis(ax, frame)
    skmem = _num(frame["skmem_sum_bytes"]) / MIB
    if "bracket_low_bytes" in frame:
        low, high = _num(frame["bracket_low_bytes"]) / MIB, _num(frame["bracket_high_bytes"]) / MIB
        band = "sockstat's bracket (read before/after ss, +/- per-CPU reserve)"
    else:
        bound = _num(frame["pcpu_reserve_bound_bytes"]) / MIB
        low, high = skmem - bound, skmem + bound
        band = "per-CPU reserve bound (+/-)"
    ax.fill_between(x, low, high, color="#fcaf3e", alpha=0.3, lw=0, label=band)
    ax.plot(
        x,
        skmem,
        marker="x",
        ls="--",
        color=COLORS["skmem_buffer_bytes"],
        label="sum of ss skmem r+w+f",
    )
    ax.plot(
        x,
        _num(frame["sockstat_mem_bytes"]) / MIB,
        marker=".",
        color=COLORS["sockstat_tcp_mem_bytes"],
        label="sockstat TCP mem",
    )
    ax.set_ylabel("TCP buffer memory (MiB)")
    ax.legend(fontsize=8)
    _title(ax, "Two views of the same memory: per-socket sum vs the kernel's global counter")
    return ax


def top_bar(
    frame: pd.DataFrame,
    value: str,
    label: str = "comm",
    n: int = 10,
    ax: Axes | None = None,
    scale: float = MIB,
    unit: str = "MiB",
    title: str | None = None,
    xlabel: str | None = None,
) -> Axes:
    """Horizontal bars of the ``n`` largest ``value`` rows, labelled ``label (pid)`` when there is a
    pid column. ``scale``/``unit`` convert bytes (default MiB); use ``scale=1, unit="sockets"``
    for counts."""
    ax = _ax(ax, (8, max(2.0, 0.35 * min(n, len(frame)) + 1)))
    top = frame.assign(_v=_num(frame[value])).sort_values("_v", ascending=False).head(n)
    names = []
    for _, row in top.iterrows():
        name = plain(row[label])
        if "pid" in top.columns and not pd.isna(row["pid"]):
            name = f"{name} ({int(row['pid'])})"
        names.append(name)
    pos = np.arange(len(top))[::-1]
    ax.barh(pos, top["_v"].to_numpy() / scale, color="#3465a4")
    if not (top["_v"].fillna(0) > 0).any():  # nothing to draw: say so instead of an empty axis
        ax.set_xlim(0, 1)
        ax.text(0.5, 0.5, "none in this snapshot", transform=ax.transAxes, ha="center", color="0.4")
    ax.set_yticks(pos, names)
    ax.set_xlabel(xlabel or f"{value.removesuffix('_bytes').replace('_', ' ')} ({unit})")
    if title:
        ax.set_title(title)
    return ax


def buffer_vs_connections(by_snapshot: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Q3: buffer bytes (MiB) against the number of connections, one dot per snapshot, coloured
    by phase. Idle cost shows as a slope; queued data as dots far above the line."""
    ax = _ax(ax, (7, 4.5))
    frame = by_snapshot.copy()
    phase = frame["phase"].astype("string").fillna("(no phase)") if "phase" in frame else None
    groups = phase.unique() if phase is not None else [None]
    for g in groups:
        part = frame if g is None else frame[phase == g]
        ax.scatter(
            _num(part["connections"]),
            _num(part["buffer_bytes"]) / MIB,
            label=None if g is None else plain(g),
            s=25,
        )
    ax.set_xlabel("connections (sockets not LISTEN/TIME-WAIT)")
    ax.set_ylabel("socket buffers r+w+f (MiB)")
    if phase is not None:
        ax.legend(fontsize=8, title="phase")
    ax.set_title("Buffer memory against connection count")
    return ax


def growth_over_time(
    by_snapshot: pd.DataFrame, axes: Sequence[Axes] | None = None
) -> Sequence[Axes]:
    """Q3 on one timeline: connections; buffer and queued bytes (MiB); traffic (MiB/s); slab.
    Returns the three stacked Axes."""
    if axes is None:
        _, axes = plt.subplots(3, 1, figsize=(9, 7), sharex=True, layout="constrained")
    frame = by_snapshot.sort_values("ts")
    x = elapsed_s(frame["ts"])
    for i, ax in enumerate(axes):
        shade_phases(ax, frame["ts"], frame.get("phase", None), labels=i == 0)
    a0, a1, a2 = axes
    a0.plot(x, _num(frame["connections"]), marker=".", color="k")
    a0.yaxis.set_major_locator(MaxNLocator(integer=True))
    a0.set_ylabel("connections")
    a1.plot(
        x,
        _num(frame["buffer_bytes"]) / MIB,
        marker=".",
        label="socket buffers r+w+f",
        color=COLORS["skmem_buffer_bytes"],
    )
    a1.plot(
        x,
        _num(frame["queued_bytes"]) / MIB,
        marker="x",
        ls="--",
        label="queued payload Recv-Q+Send-Q",
        color="#3465a4",
    )
    if "slab_bytes" in frame:
        a1.plot(
            x,
            _num(frame["slab_bytes"]) / MIB,
            marker=".",
            ls=":",
            label="socket slab",
            color=COLORS["socket_slab_bytes"],
        )
    a1.set_ylabel("memory (MiB)")
    a1.legend(fontsize=8, loc="upper left")
    a2.plot(x, _num(frame["traffic_bytes_per_s"]) / MIB, marker=".", color="#4e9a06")
    a2.set_ylabel("traffic (MiB/s)")
    a2.set_xlabel("time since the first snapshot (s)")
    return axes


def pressure_plot(by_snapshot: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """sockstat TCP ``mem`` against the three ``tcp_mem`` thresholds, all in MiB."""
    ax = _ax(ax)
    frame = by_snapshot.sort_values("ts")
    x = _time_axis(ax, frame)
    ax.plot(
        x,
        _num(frame["tcp_mem_bytes"]) / MIB,
        marker=".",
        color=COLORS["sockstat_tcp_mem_bytes"],
        label="sockstat TCP mem",
    )
    for col, style, name in (
        ("min_bytes", ":", "tcp_mem[0] min"),
        ("pressure_bytes", "--", "tcp_mem[1] pressure"),
        ("max_bytes", "-", "tcp_mem[2] max"),
    ):
        if col in frame:
            ax.plot(x, _num(frame[col]) / MIB, ls=style, color="0.3", lw=1, label=name)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylabel("TCP memory (MiB, log scale)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _title(ax, "How close TCP memory came to the tcp_mem thresholds")
    return ax


COMPARE_METRICS = (
    "kernel_socket_bytes",
    "socket_owner_rss_bytes",
    "total_cost_bytes",
    "sockstat_tcp_mem_bytes",
    "unlisted_bytes",
    "socket_slab_bytes",
)


def compare_bars(
    system: pd.DataFrame, metrics: Iterable[str] | None = None, ax: Axes | None = None
) -> Axes:
    """Before/after bars per metric (MiB: the medians over the matched snapshots) with the noise
    (half the bootstrap interval of the change) as an error bar on ``after``.
    ``metrics`` defaults to the socket-memory figures (:data:`COMPARE_METRICS`) that exist."""
    wanted = list(COMPARE_METRICS if metrics is None else metrics)
    frame = system[system["metric"].astype("string").isin(wanted)]
    ax = _ax(ax, (8, max(2.5, 0.5 * len(frame) + 1)))
    pos = np.arange(len(frame))[::-1]
    before = _num(frame["before"]) / MIB
    after = _num(frame["after"]) / MIB
    noise = _num(frame["noise"]) / MIB if "noise" in frame else None
    ax.barh(pos + 0.2, before, height=0.4, color="0.6", label="before")
    ax.barh(
        pos - 0.2,
        after,
        height=0.4,
        color="#3465a4",
        label="after",
        xerr=noise,
        error_kw={"ecolor": "#cc0000", "capsize": 3},
    )
    ax.set_yticks(pos, [plain(m) for m in frame["metric"]])
    ax.set_xlabel("median over the snapshots compared (MiB); red bar = noise")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def per_socket_bars(by_object: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Idle cost: bytes per socket of each kernel object (KiB)."""
    ax = _ax(ax, (8, max(2.5, 0.4 * len(by_object) + 1)))
    frame = by_object.assign(_v=_num(by_object["bytes_per_socket"])).sort_values("_v")
    pos = np.arange(len(frame))
    ax.barh(pos, frame["_v"].to_numpy() / KIB, color="#06989a")
    names = [plain(o) for o in frame["object"]]
    ax.set_yticks(pos, names)
    ax.set_xlabel("bytes per socket (KiB)")
    ax.set_title("What one idle socket costs, by kernel object")
    return ax


def skmem_hist(
    sockets: pd.DataFrame,
    fields: Sequence[str] = ("skmem_r", "skmem_w", "skmem_rb", "skmem_tb"),
    ax: Axes | None = None,
) -> Axes:
    """Distribution over sockets of skmem fields (KiB, log scale): limits (rb, tb) sit far to the
    right of what is used (r, w)."""
    ax = _ax(ax)
    data = []
    names = []
    for f in fields:
        v = _num(sockets[f])
        v = v[~np.isnan(v)] / KIB
        data.append(np.maximum(v, 1e-3))
        names.append(f.removeprefix("skmem_"))
    ax.boxplot(data, vert=False, whis=(0, 100))
    ax.set_yticks(np.arange(1, len(names) + 1), names)
    ax.set_xscale("log")
    ax.set_xlabel("per socket (KiB, log scale; 0 drawn at 0.001)")
    return ax


def _mib_lines(
    totals: pd.DataFrame, lines: Sequence[tuple[str, str, dict[str, Any]]], ax: Axes | None
) -> Axes:
    """Plot ``(column, label, style)`` lines of ``totals`` in MiB over time, legend outside."""
    ax = _ax(ax)
    frame = totals.sort_values("ts")
    x = _time_axis(ax, frame)
    for column, label, style in lines:
        ax.plot(x, _num(frame[column]) / MIB, label=label, **style)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return ax


def limits_vs_use(totals: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Σ rb + Σ tb (limits) against Σ r + w + f (used), MiB, log scale, over time."""
    used = {"marker": "o", "color": COLORS["skmem_buffer_bytes"]}
    lines = [
        ("skmem_rb_bytes", "sum of rb (receive limits)", {"marker": ".", "color": "#3465a4"}),
        ("skmem_tb_bytes", "sum of tb (send limits)", {"marker": ".", "color": "#75507b"}),
        ("buffer_bytes", "sum of r+w+f (actually used)", used),
    ]
    ax = _mib_lines(totals, lines, ax)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylabel("bytes (MiB, log scale)")
    _title(ax, "Limits are not allocations")
    return ax


def queue_vs_truesize(totals: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Payload (Recv-Q, Send-Q) against memory (r, w) over time, MiB."""
    payload, memory = {"ls": "--", "marker": "x"}, {"marker": "."}
    lines = [
        ("recv_q_bytes", "sum of Recv-Q (payload)", {**payload, "color": "#3465a4"}),
        ("skmem_r_bytes", "sum of r (memory)", {**memory, "color": "#3465a4"}),
        ("send_q_bytes", "sum of Send-Q (payload)", {**payload, "color": "#cc0000"}),
        ("skmem_w_bytes", "sum of w (memory)", {**memory, "color": "#cc0000"}),
    ]
    ax = _mib_lines(totals, lines, ax)
    ax.set_ylabel("bytes (MiB)")
    _title(ax, "Queued payload vs the memory holding it")
    return ax


def top_sockets_bar(held: pd.DataFrame, n: int = 15, ax: Axes | None = None) -> Axes:
    """The connections that held the most (``views.held_sockets``): bars of the most r+w+f each
    held in one snapshot (MiB, or KiB when every socket held less than a MiB), labelled
    owner -> peer, with how many snapshots it held memory."""
    frame = held.head(n)
    ax = _ax(ax, (9, max(2.0, 0.32 * len(frame) + 1)))
    pos = np.arange(len(frame))[::-1]
    values = _num(frame["max_buffer_bytes"])
    scale, unit = (MIB, "MiB") if len(values) and np.nanmax(values) >= MIB else (KIB, "KiB")
    ax.barh(pos, values / scale, color=COLORS["skmem_buffer_bytes"])
    names = [
        f"{plain(o)} -> {plain(p)} ({int(k)} snapshots)"
        for o, p, k in zip(frame["owner"], frame["peer"], frame["snapshots_held"], strict=True)
    ]
    ax.set_yticks(pos, names, fontsize=8)
    ax.set_xlabel(f"most socket buffer memory r+w+f held in one snapshot ({unit})")
    ax.set_title("The connections that held the most")
    return ax
