"""Is the box near or under TCP memory pressure, and did the kernel drop or prune because of memory?

``pressure(capture) -> PressureResult`` (docs/kernel.md §7 and §12):

``by_snapshot``: ``ts``, ``host``, ``phase``, ``tcp_mem_bytes`` (sockstat TCP mem × page size),
``min_bytes``, ``pressure_bytes``, ``max_bytes`` (``net.ipv4.tcp_mem`` [0], [1], [2] × page size; NA
when the sysctl was not collected), ``fraction_of_pressure`` (tcp_mem_bytes / pressure_bytes).

``counters``: one row per counter: ``counter`` (TcpExt name), ``first``, ``last`` (values in the
first and last snapshot that print it), ``delta`` (last − first; NA when the kernel does not print the
counter), ``unit`` (``events``, ``ms`` or ``segments``...), ``meaning``.

``counters`` has a ``kind`` per counter (:data:`KINDS`): ``pressure``, ``compaction`` (PruneCalled,
TCPRcvCollapsed: a queue was collapsed to fit its limit, no data lost), ``drop`` (data thrown away) or
``abort`` (connections reset).

``verdict`` (:func:`pressure_verdict`) labels: ``over tcp_mem max``, ``under pressure`` (above
tcp_mem[1] in some snapshot, or TCPMemoryPressures rose), ``memory drops`` (a drop or abort counter
rose: data was lost), ``queues compacted`` (only compaction counters moved: nothing was dropped),
``no pressure``, ``no data``. The text gives the peak as a fraction of the pressure threshold and
names each counter that moved with what it means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from tcpmemlib.analysis.common import (
    as_output,
    fmt_bytes,
    netstat_wide,
    number,
    page_size_bytes,
    snapshots,
    sysctl_ints,
)
from tcpmemlib.analysis.verdict import Verdict

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture

__all__ = ["COUNTERS", "PressureResult", "pressure"]

#: counter -> (unit, meaning); docs/kernel.md §12
COUNTERS: dict[str, tuple[str, str]] = {
    "TCPMemoryPressures": (
        "events",
        "entered global TCP memory pressure (allocated > tcp_mem[1], or a real skb/page allocation failure)",
    ),
    "TCPMemoryPressuresChrono": ("ms", "cumulative time spent under TCP memory pressure"),
    "PruneCalled": (
        "events",
        "a receive queue exceeded rcvbuf or could not be charged: the kernel collapsed it into "
        "compact skbs (nothing is dropped unless RcvPruned/OfoPruned also rise)",
    ),
    "RcvPruned": ("events", "collapsing and OFO pruning failed: incoming data was dropped"),
    "TCPRcvCollapsed": ("skbs", "skbs freed by copying the receive/OFO queue into compact skbs"),
    "OfoPruned": ("events", "out-of-order data thrown away to make room"),
    "TCPRcvQDrop": ("segments", "in-order data dropped for lack of memory"),
    "TCPOFODrop": ("segments", "out-of-order segment dropped for lack of memory"),
    "TCPBacklogDrop": (
        "segments",
        "socket busy in the app and its backlog over 2*rcvbuf + sndbuf/2 + 64K: segment dropped",
    ),
    "TCPAbortOnMemory": (
        "connections",
        "connection reset because tcp_mem[2] was exceeded or too many orphans (dmesg: 'out of memory -- consider tuning tcp_mem')",
    ),
    "TCPZeroWindowDrop": ("segments", "data arrived while our advertised window was 0: dropped"),
}
#: What each counter counts: ``pressure`` (TCP entered memory pressure), ``compaction`` (a queue
#: was collapsed into compact skbs to fit its limit: no data lost), ``drop`` (data was thrown away),
#: ``abort`` (connections were reset). Only ``drop`` and ``abort`` counters lose data.
KINDS: dict[str, str] = {
    "TCPMemoryPressures": "pressure",
    "TCPMemoryPressuresChrono": "pressure",
    "PruneCalled": "compaction",
    "TCPRcvCollapsed": "compaction",
    "RcvPruned": "drop",
    "OfoPruned": "drop",
    "TCPRcvQDrop": "drop",
    "TCPOFODrop": "drop",
    "TCPBacklogDrop": "drop",
    "TCPZeroWindowDrop": "drop",
    "TCPAbortOnMemory": "abort",
}


@dataclass(frozen=True)
class PressureResult:
    """Result of :func:`pressure` (schemas in the module doc)."""

    by_snapshot: pd.DataFrame
    counters: pd.DataFrame
    verdict: Verdict


def pressure_frames(capture: Capture) -> PressureResult:
    """The frames of :func:`pressure` (``by_snapshot``, ``counters``), with an empty verdict."""
    cap = capture
    snaps = snapshots(cap)
    page = page_size_bytes(cap)
    st = cap.sockstat.drop_duplicates("ts").set_index("ts")
    out = snaps.copy()
    out["tcp_mem_bytes"] = st["tcp_mem_bytes"].reindex(out["ts"]).astype("Int64").values
    tm = sysctl_ints(cap, "net.ipv4.tcp_mem").reindex(out["ts"])
    for i, col in enumerate(("min_bytes", "pressure_bytes", "max_bytes")):
        vals = [v[i] * page if isinstance(v, list) and len(v) == 3 else pd.NA for v in tm]
        out[col] = pd.array(vals, dtype="Int64")
    out["fraction_of_pressure"] = out["tcp_mem_bytes"].astype("Float64") / out[
        "pressure_bytes"
    ].astype("Float64").replace(0, pd.NA)
    out = as_output(out)

    ns = netstat_wide(cap, [("TcpExt", c) for c in COUNTERS]).sort_values("ts")
    rows = []
    for c, (unit, meaning) in COUNTERS.items():
        v = ns["TcpExt" + c].dropna()
        first = v.iloc[0] if len(v) else pd.NA
        last = v.iloc[-1] if len(v) else pd.NA
        delta = last - first if len(v) else pd.NA
        rows.append((c, KINDS[c], first, last, delta, unit, meaning))
    counters = pd.DataFrame(
        rows, columns=["counter", "kind", "first", "last", "delta", "unit", "meaning"]
    ).astype(
        {
            "counter": "string",
            "kind": "category",
            "first": "Int64",
            "last": "Int64",
            "delta": "Int64",
            "unit": "category",
            "meaning": "string",
        }
    )

    return PressureResult(out, counters, Verdict("", "", {}))


def pressure_verdict(result: PressureResult) -> Verdict:
    """Word :func:`pressure_frames`' result: what moved and what it means (module doc)."""
    out, counters = result.by_snapshot, result.counters
    d = dict(zip(counters["counter"], counters["delta"], strict=True))
    peak = number(out["tcp_mem_bytes"].max())
    frac = number(out["fraction_of_pressure"].max())
    fig = {
        "peak_tcp_mem_bytes": peak,
        "min_bytes": number(out["min_bytes"].max()),
        "pressure_bytes": number(out["pressure_bytes"].max()),
        "max_bytes": number(out["max_bytes"].max()),
        "peak_fraction_of_pressure": frac,
    }
    fig.update({f"delta_{k}": number(v) for k, v in d.items()})
    moved = [k for k in COUNTERS if KINDS[k] != "pressure" and number(d.get(k)) > 0]
    lost = [k for k in moved if KINDS[k] in ("drop", "abort")]
    compacted = [k for k in moved if KINDS[k] == "compaction"]
    over_max = bool((out["tcp_mem_bytes"] > out["max_bytes"]).fillna(False).any())
    over_pressure = bool((out["tcp_mem_bytes"] > out["pressure_bytes"]).fillna(False).any())
    pressures = number(d.get("TCPMemoryPressures"))
    if peak != peak:
        return Verdict("no data", "No sockstat in this capture.", fig)
    if over_max:
        label = "over tcp_mem max"
    elif over_pressure or pressures > 0:
        label = "under pressure"
    elif lost:
        label = "memory drops"
    elif compacted:
        label = "queues compacted"
    else:
        label = "no pressure"
    text = f"sockstat TCP mem peaked at {fmt_bytes(peak)}"
    if frac == frac:
        text += (
            f", {frac:.1%} of the pressure threshold tcp_mem[1] = {fmt_bytes(fig['pressure_bytes'])} "
            f"(min {fmt_bytes(fig['min_bytes'])}, max {fmt_bytes(fig['max_bytes'])})."
        )
    else:
        text += " (net.ipv4.tcp_mem not collected: no thresholds)."
    if pressures == pressures:
        text += f" TCPMemoryPressures rose by {int(pressures)}"
        chrono = number(d.get("TCPMemoryPressuresChrono"))
        text += f" ({int(chrono)} ms under pressure)." if chrono == chrono else "."
    if lost:
        text += (
            " Data was lost: "
            + "; ".join(f"{k} +{int(number(d[k]))} ({COUNTERS[k][1]})" for k in lost)
            + "."
        )
    if compacted:
        text += (
            " Receive queues were compacted to fit their limits: "
            + ", ".join(f"{k} +{int(number(d[k]))}" for k in compacted)
            + (
                " (the kernel collapsed queued skbs into compact ones; nothing was dropped: every "
                "drop counter stayed put)."
                if not lost
                else "."
            )
        )
    if not moved:
        text += " No drop, prune or abort counter moved."
    return Verdict(label, text, fig)


def pressure(capture: Capture) -> PressureResult:
    """sockstat TCP mem against tcp_mem thresholds, and memory-trouble counters (module doc)."""
    frames = pressure_frames(capture)
    return PressureResult(frames.by_snapshot, frames.counters, pressure_verdict(frames))
