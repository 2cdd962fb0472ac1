"""Plots for the notebooks and reports, plus the small presentation views they need.

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

MIB = float(1 << 20)
KIB = 1024.0

# One colour per place/series, the same in every notebook.
COLORS = {
    "sockstat_tcp_mem_bytes": "#cc0000",
    "skmem_buffer_bytes": "#f57900",
    "unlisted_bytes": "#75507b",
    "meminfo_Slab_bytes": "#3465a4",
    "meminfo_SReclaimable_bytes": "#729fcf",
    "meminfo_SUnreclaim_bytes": "#204a87",
    "buff_cache_bytes": "#4e9a06",
    "process_rss_bytes": "#c17d11",
    "socket_owner_rss_bytes": "#c17d11",
    "holder_rss_bytes": "#c17d11",
    "socket_slab_bytes": "#06989a",
    "pcp_free_bytes": "#888a85",
}

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


def plain(text: object) -> str:
    """A string from the box made safe for a matplotlib label (no math mode)."""
    return str(text).replace("$", r"\$")


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


def with_buff_cache(by_snapshot: pd.DataFrame) -> pd.DataFrame:
    """Add ``buff_cache_bytes`` = Buffers + Cached + SReclaimable: the figure free(1)/top show as
    buff/cache (procps 4: "Cached and SReclaimable")."""
    out = by_snapshot.copy()
    cols = ["meminfo_Buffers_bytes", "meminfo_Cached_bytes", "meminfo_SReclaimable_bytes"]
    if "buff_cache_bytes" not in out.columns and all(c in out.columns for c in cols):
        out["buff_cache_bytes"] = sum(out[c].astype("Float64") for c in cols)
    return out


def with_holder_rss(by_snapshot: pd.DataFrame, procs: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """Add ``holder_rss_bytes``: per snapshot, the summed RSS of the ``n`` processes (pids) that held
    the most socket buffer memory at the peak (from ``by_process``). The RSS to watch: the
    processes whose sockets hold the buffers, without the noise of everything else running."""
    out = by_snapshot.copy()
    named = procs[procs["pid"].notna()]
    if not len(named):
        return out
    peak_ts = named.groupby("ts")["buffer_bytes"].sum().idxmax()
    at_peak = named[named["ts"] == peak_ts]
    top = at_peak.assign(_v=_num(at_peak["buffer_bytes"])).nlargest(n, "_v")
    pids = set(top.loc[top["_v"] > 0, "pid"].astype("int64"))
    if not pids:
        return out
    rows = named[named["pid"].astype("int64").isin(pids)]
    rss = rows.groupby("ts")["rss_bytes"].sum(min_count=1)
    out["holder_rss_bytes"] = out["ts"].map(rss).astype("Float64")
    return out


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
        ax.plot(x, y, marker=".", label=PLACE_LABELS.get(col, col), color=COLORS.get(col))
    ax.set_ylabel(("change since first snapshot" if relative else "memory") + " (MiB)")
    ax.axhline(0, color="0.5", lw=0.5)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _title(ax, "Where the memory shows up, over time")
    return ax


def reconcile_plot(by_snapshot: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """sockstat ``mem`` against the sum of ss skmem r+w+f, with the per-CPU reserve bound as a band
    around the skmem sum: inside the band the two agree within what the kernel allows."""
    ax = _ax(ax)
    frame = by_snapshot.sort_values("ts")
    x = _time_axis(ax, frame)
    skmem = _num(frame["skmem_sum_bytes"]) / MIB
    bound = (
        _num(frame["pcpu_reserve_bound_bytes"]) / MIB
        if "pcpu_reserve_bound_bytes" in frame
        else np.zeros_like(skmem)
    )
    ax.fill_between(
        x,
        skmem - bound,
        skmem + bound,
        color="#fcaf3e",
        alpha=0.3,
        lw=0,
        label="per-CPU reserve bound (+/-)",
    )
    ax.plot(x, skmem, marker=".", color=COLORS["skmem_buffer_bytes"], label="sum of ss skmem r+w+f")
    ax.plot(
        x,
        _num(frame["sockstat_mem_bytes"]) / MIB,
        marker="x",
        ls="--",
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
    "sockstat_tcp_mem_bytes",
    "skmem_buffer_bytes",
    "queued_bytes",
    "unlisted_bytes",
    "socket_slab_bytes",
    "meminfo_Slab_bytes",
)


def compare_bars(
    system: pd.DataFrame, metrics: Iterable[str] | None = None, ax: Axes | None = None
) -> Axes:
    """Before/after bars per metric (MiB) with the noise band as an error bar on ``after``.
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
    ax.set_xlabel("bytes (MiB); red bar = noise band")
    ax.legend(fontsize=8)
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


# --- presentation views: small tables the notebooks show (selection and totals, no analysis) ----

SKMEM_MEANING = {
    "recv_q": ("bytes", "Recv-Q: payload received in order and not yet read by the application"),
    "send_q": ("bytes", "Send-Q: payload not yet acknowledged by the peer (unsent + in flight)"),
    "skmem_r": ("bytes", "r: memory of the receive queue + out-of-order queue (skb truesize)"),
    "skmem_rb": ("bytes", "rb: receive buffer LIMIT (sk_rcvbuf), a ceiling, not an allocation"),
    "skmem_t": ("bytes", "t: copies handed to the IP layer/driver and not yet freed (usually 0)"),
    "skmem_tb": ("bytes", "tb: send buffer LIMIT (sk_sndbuf), a ceiling, not an allocation"),
    "skmem_f": ("bytes", "f: pages already reserved for this socket but not yet used (< 4096)"),
    "skmem_w": (
        "bytes",
        "w: memory of the write queue: unsent AND sent-but-unacked data (truesize)",
    ),
    "skmem_o": ("bytes", "o: option memory (filters, MD5 keys, multicast lists)"),
    "skmem_bl": ("bytes", "bl: packets parked while the application held the socket lock"),
    "skmem_d": ("segments", "d: segments dropped (memory, but also duplicates and old data)"),
}


def capture_overview(cap: Any) -> pd.DataFrame:
    """What the capture is: host, kernel, ss, page size, CPUs, snapshots, time span, phases."""
    meta = cap.meta.sort_values("ts")
    first, last = meta["ts"].iloc[0], meta["ts"].iloc[-1]
    phases = cap.phases["phase"].astype("string").tolist() if len(cap.phases) else []
    rows = [
        ("host", cap.host),
        ("kernel", meta["kernel"].iloc[-1]),
        ("ss", meta["ss_version"].iloc[-1]),
        ("page size (bytes)", cap.page_size_bytes),
        ("CPUs", cap.cpus),
        ("snapshots", len(meta)),
        ("first snapshot (UTC)", str(first)),
        ("duration (s)", round((last - first).total_seconds(), 1)),
        ("phases", ", ".join(phases) if phases else "(none)"),
        ("sockets rows (all snapshots)", cap.socket_rows),
        (
            "socket rows kept",
            "on disk, read a batch of snapshots at a time" if cap.sockets_on_disk else "in memory",
        ),
    ]
    return pd.DataFrame(rows, columns=["item", "value"]).astype({"value": "string"})


def example_socket(cap: Any, field: str = "skmem_r") -> pd.Series:
    """The socket row (any snapshot) with the largest ``field``: a concrete socket to read (the
    first such row, named by its position among the capture's socket rows).

    Reads ``field`` a batch at a time, then the row itself (on disk: only its snapshot)."""
    best: tuple[Any, int, Any, int] | None = None  # value, position, ts, sock_id
    offset = 0
    for batch, _ in cap.socket_batches([field]):
        values = pd.to_numeric(batch[field], errors="coerce")
        if values.notna().any():
            i = int(np.argmax(values.to_numpy(dtype="float64", na_value=-np.inf)))
            if best is None or values.iloc[i] > best[0]:
                best = (values.iloc[i], offset + i, batch["ts"].iloc[i], batch["sock_id"].iloc[i])
        offset += len(batch)
    if best is None:
        raise ValueError(f"no socket row has a {field} value")
    _, position, ts, sock_id = best
    one = cap.select(start=ts, end=ts + pd.Timedelta(1, "ns")) if cap.sockets_on_disk else None
    for source in (one, cap) if one is not None else (cap,):
        for batch, _ in source.socket_batches():
            rows = batch[(batch["ts"] == ts) & (batch["sock_id"] == sock_id)]
            if len(rows):
                return rows.iloc[0].rename(position)
    raise ValueError(f"socket {sock_id} of snapshot {ts} not found")  # (not reached)


def skmem_glossary(sock: pd.Series) -> pd.DataFrame:
    """One socket's queue and skmem fields, each with its value, unit and meaning."""
    rows = []
    for col, (unit, meaning) in SKMEM_MEANING.items():
        value = sock.get(col, pd.NA)
        rows.append((col.removeprefix("skmem_"), value, unit, meaning))
    out = pd.DataFrame(rows, columns=["field", "value", "unit", "meaning"])
    out["value"] = out["value"].astype("Int64")
    return out


def socket_totals(cap: Any) -> pd.DataFrame:
    """Per snapshot, for the primer's plots: the analyses' per-snapshot TCP socket sums
    (:func:`tcpmemlib.analysis._frames.per_snapshot_socket_sums`) under ss's own names:
    ``sockets`` (those with skmem), ``recv_q_bytes``, ``send_q_bytes`` (connections only),
    ``skmem_<r,w,f,t,rb,tb>_bytes``, ``buffer_bytes`` (r+w+f), ``limits_bytes`` (rb+tb),
    ``max_f_bytes``; plus ``ts`` and ``phase``."""
    from tcpmemlib.analysis._frames import per_snapshot_socket_sums

    sums = per_snapshot_socket_sums(cap)
    out = sums.rename(
        columns={"rcvbuf_limit_bytes": "skmem_rb_bytes", "sndbuf_limit_bytes": "skmem_tb_bytes"}
    )
    out["sockets"] = out["tcp_sockets"] - out["sockets_without_skmem"]
    out["limits_bytes"] = out["skmem_rb_bytes"] + out["skmem_tb_bytes"]
    columns = ["ts", "phase", "sockets", "recv_q_bytes", "send_q_bytes"]
    columns += [f"skmem_{f}_bytes" for f in ("r", "w", "f", "t", "rb", "tb")]
    columns += ["max_f_bytes", "buffer_bytes", "limits_bytes"]
    return out[columns]


def phase_table(
    frame: pd.DataFrame, columns: Sequence[str], scale: float = MIB, suffix: str = " (MiB)"
) -> pd.DataFrame:
    """Mean of ``columns`` per phase (in the order the phases happened), scaled (default MiB) and
    rounded; without phases, one row for the whole capture."""
    f = frame.sort_values("ts").copy()
    f["phase"] = f["phase"].astype("string").fillna("(all)") if "phase" in f else "(all)"
    order = list(dict.fromkeys(f["phase"]))
    cols = [c for c in columns if c in f.columns]
    means = f.groupby("phase", sort=False)[cols].agg(
        lambda c: pd.to_numeric(c, errors="coerce").astype("float64").mean()
    )
    means = (means.loc[order] / scale).round(2)
    means.columns = [c.removesuffix("_bytes") + suffix for c in means.columns]
    return means.reset_index()


def quiet_snapshot(totals: pd.DataFrame) -> pd.Series:
    """From :func:`socket_totals`: the snapshot with the most sockets among those holding (almost)
    no buffer memory (within 1 MiB of the least): the best view of idle connections."""
    floor = totals["buffer_bytes"].astype("Float64").min()
    calm = totals[totals["buffer_bytes"].astype("Float64") <= floor + MIB]
    return calm.loc[calm["sockets"].astype("Int64").idxmax()]


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


def owner_limits_by_phase(cap: Any, comm: str) -> pd.DataFrame:
    """For the sockets owned by process name ``comm``: per phase, connections and the median and
    maximum rb and tb (bytes). Shows autotuning (tb grows for a blocked sender, rb stays put for a
    receiver that never reads) and SO_RCVBUF/SO_SNDBUF doubling."""
    from tcpmemlib.analysis._summary import median_max, socket_summary

    summary = socket_summary(cap)
    rows = summary.owner_comms[summary.owner_comms["comm"] == comm]
    rows = rows.sort_values("first_ts", kind="stable")
    limits = summary.owner_comm_limits
    limits = limits[limits["comm"] == comm]
    stats: dict[str, list[float]] = {c: [] for c in OWNER_LIMIT_STATS}
    for r in rows.itertuples():
        mine = limits[limits["phase"] == r.phase]
        rb = mine[mine["column"] == "skmem_rb"]
        tb = mine[mine["column"] == "skmem_tb"]
        med_rb, max_rb = median_max(rb["value"], rb["count"])
        med_tb, max_tb = median_max(tb["value"], tb["count"])
        values = (r.rows / r.snapshots, med_rb, max_rb, med_tb, max_tb, r.max_r, r.max_w)
        for column, value in zip(OWNER_LIMIT_STATS, values, strict=True):
            stats[column].append(np.nan if pd.isna(value) else float(value))
    index = pd.Index(rows["phase"].astype("string").to_numpy(), dtype="string", name="phase")
    out = pd.DataFrame({c: pd.Series(v, index=index, dtype="float64") for c, v in stats.items()})
    return out.round(0).astype("Int64").reset_index()


OWNER_LIMIT_STATS = (
    "connections (per snapshot)",
    "median rb",
    "max rb",
    "median tb",
    "max tb",
    "max r",
    "max w",
)


def sysctl_table(cap: Any, names: Sequence[str]) -> pd.DataFrame:
    """The last snapshot's value of each sysctl in ``names`` (string as printed; NA if absent)."""
    sc = cap.sysctl
    last = sc[sc["ts"] == sc["ts"].max()] if len(sc) else sc
    values = dict(zip(last["name"].astype("string"), last["value"].astype("string"), strict=True))
    return pd.DataFrame(
        {"sysctl": list(names), "value": [values.get(n, pd.NA) for n in names]}
    ).astype("string")


def top_rows_at_peak(frame: pd.DataFrame, value: str = "buffer_bytes", n: int = 10) -> pd.DataFrame:
    """The ``n`` largest rows of ``frame`` by ``value`` in the snapshot where Σ``value`` peaked."""
    if not len(frame):
        return frame
    totals = frame.groupby("ts")[value].sum()
    peak = totals.idxmax()
    part = frame[frame["ts"] == peak]
    return (
        part.assign(_v=_num(part[value]))
        .sort_values("_v", ascending=False)
        .drop(columns="_v")
        .head(n)
    )


def by_cgroup(frame: pd.DataFrame) -> pd.DataFrame:
    """Per cgroup of one snapshot's ``by_process`` rows: processes, sockets, buffer bytes and the
    cgroup's own ``cgroup_sock_bytes`` (what the memory controller charged, NA if not collected)."""
    f = frame.copy()
    f["cgroup"] = f["cgroup"].astype("string").fillna("(unknown)")
    g = f.groupby("cgroup")
    out = pd.DataFrame(
        {
            "processes": g["comm"].size(),
            "sockets": g["sockets"].sum(),
            "buffer_bytes": g["buffer_bytes"].sum(),
            "cgroup_sock_bytes": g["cgroup_sock_bytes"].max(),
        }
    ).sort_values("buffer_bytes", ascending=False)
    return out.reset_index()


def mib_columns(frame: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """A copy with every ``*_bytes`` column shown in MiB (renamed ``* (MiB)``), for tables."""
    out = frame.copy()
    for col in [c for c in out.columns if str(c).endswith("_bytes")]:
        out[col] = (pd.to_numeric(out[col], errors="coerce").astype("Float64") / MIB).round(digits)
        out = out.rename(columns={col: str(col).removesuffix("_bytes") + " (MiB)"})
    return out


def scaled_columns(frame: pd.DataFrame, scale: float = KIB, unit: str = "KiB") -> pd.DataFrame:
    """Like :func:`mib_columns` with another unit (KiB suits per-socket limits and costs)."""
    out = frame.copy()
    for col in [c for c in out.columns if str(c).endswith("_bytes")]:
        out[col] = (pd.to_numeric(out[col], errors="coerce").astype("Float64") / scale).round(2)
        out = out.rename(columns={col: str(col).removesuffix("_bytes") + f" ({unit})"})
    return out


def metric_table(frame: pd.DataFrame, value_columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A long table with a ``metric`` column (``compare`` results): rows whose metric ends in
    ``_bytes`` get their value columns in MiB and ``(MiB)`` in the metric name."""
    out = frame.copy()
    cols = (
        list(value_columns)
        if value_columns is not None
        else [
            c
            for c in out.columns
            if c not in ("metric", "comm", "significant", "n_before", "n_after")
            and pd.api.types.is_numeric_dtype(out[c].dtype)
        ]
    )
    is_bytes = out["metric"].astype("string").str.endswith("_bytes").fillna(False).to_numpy()
    for col in cols:
        values = pd.to_numeric(out[col], errors="coerce").astype("Float64")
        out[col] = values.where(~is_bytes, (values / MIB).round(2))
    names = out["metric"].astype("string")
    out["metric"] = names.where(~is_bytes, names.str.removesuffix("_bytes") + " (MiB)")
    return out


def describe_socket(cap: Any, sock: pd.Series) -> str:
    """One line naming a socket row: state, addresses, owners and the snapshot's phase."""
    owners = sock.get("owners") or ()
    who = ", ".join(f"{comm} (pid {pid})" for comm, pid, *_ in owners) or "no owning process"
    phases = cap.meta.loc[cap.meta["ts"] == sock["ts"], "phase"]
    phase = phases.iloc[0] if len(phases) and not pd.isna(phases.iloc[0]) else None
    when = f"snapshot {sock['ts']}" + (f", phase {phase}" if phase else "")
    return (
        f"{sock['state']} {sock['local_address']}:{sock['local_port']} -> "
        f"{sock['peer_address']}:{sock['peer_port']}, owned by {who}; {when}"
    )


def command_lines(cap: Any, pids: Iterable[Any]) -> pd.DataFrame:
    """``pid``, ``comm``, ``args`` of the given pids (their latest snapshot), for captures made with
    ``collect.sh -a``; ``args`` is NA where it was not collected."""
    wanted = {int(p) for p in pids if not pd.isna(p)}
    procs = cap.processes
    rows = procs[procs["pid"].isin(wanted)].sort_values("ts").drop_duplicates("pid", keep="last")
    return rows[["pid", "comm", "args"]].reset_index(drop=True)
