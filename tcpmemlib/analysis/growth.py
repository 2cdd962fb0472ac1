"""Q3: do socket buffers hold memory when traffic is minimal, or grow with load?

On Linux, ``rb``/``tb`` are ceilings: a socket charges memory per skb as data is queued (receive queue
not yet read, write queue not yet acked) and returns it as the data leaves (docs/kernel.md §11). This
function measures, in the capture, what buffer memory follows: the number of connections, the traffic,
or the queued bytes.

``growth(capture) -> GrowthResult``:

``by_snapshot`` (one row per snapshot):

| column | unit | meaning |
|---|---|---|
| ts, host, phase | | snapshot |
| connections | sockets | TCP connections (every state but LISTEN/TIME-WAIT/SYN-RECV) |
| buffer_bytes | bytes | Σ r + w + f over TCP sockets |
| queued_bytes | bytes | Σ Recv-Q + Send-Q over connections (payload not read / not acked) |
| connections_with_buffer | sockets | connections holding at least one page of r + w + f |
| buffer_bytes_per_connection, queued_bytes_per_connection | bytes | the above / connections (NA at 0) |
| largest_socket_bytes | bytes | r + w + f of the snapshot's largest socket ("max per connection") |
| traffic_bytes_per_s | bytes/s | Σ over sockets seen in this and the previous snapshot of Δ(bytes_received + bytes_acked), / Δt (both ends of a loopback pair count); NA for the first snapshot |
| ip_traffic_bytes_per_s | bytes/s | Δ netstat IpExt InOctets + OutOctets / Δt (whole host, all protocols) |
| sockstat_tcp_mem_bytes | bytes | sockstat TCP mem × page size |
| slab_bytes | bytes | slab pages of the socket object caches (as in where_is_it) |

``by_phase`` (one row per phase, ``(no phase)`` when phases.tsv is absent): ``phase``, ``snapshots``,
mean ``connections``, ``connections_with_buffer``, ``buffer_bytes``, ``queued_bytes``, ``traffic_bytes_per_s``,
``buffer_bytes_per_connection``, ``queued_bytes_per_connection``, ``buffer_to_queued_ratio``,
``holding_share`` (connections_with_buffer / connections), and the phase's ``label``.

Label set (per phase, and for the whole capture in ``verdict.label``; per phase checked in this order):

- ``no connections``: the phase (or capture) has no TCP connection.
- ``grows with queued data``: at least a page is queued **per connection** (judged per connection,
  not box-wide: a few sockets holding a little data among thousands do not make a phase) and
  buffers ≈ queued bytes (``0.5 ≤ buffer/queued ≤ 4``; the excess over 1 is skb truesize
  overhead): memory is there because data waits for a reader or an ACK.
- ``not held while idle``: less than one page of buffer per connection (only the sub-page ``f``
  forward-allocation remains): idle or trickling connections do not hold buffer memory.
- ``held while idle``: more than a page per connection that queued data does not explain.

Whole capture (``verdict.label``): ``not held while idle`` when every phase with connections is;
otherwise the first that holds of
``grows with queued data`` (some phase is, and the overall buffer/queued ratio is in range),
``grows with connections`` (buffers follow the connection count: correlation ≥ 0.8 across snapshots;
e.g. pre-6.0 kernels caching up to 2 MB of ``f`` per socket), ``grows with traffic`` (correlation with
traffic ≥ 0.8; e.g. out-of-order data on a lossy path, which is in ``r`` but not in Recv-Q),
``held while idle``. ``verdict.text`` gives every phase's figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from tcpmemlib.analysis.common import (
    SOCKET_OBJECT_CACHES,
    as_output,
    corr,
    fmt_bytes,
    netstat_wide,
    number,
    page_size_bytes,
    slab_sum,
    snapshots,
)
from tcpmemlib.analysis.summary import per_snapshot_socket_sums, socket_summary
from tcpmemlib.analysis.traffic import traffic_rate
from tcpmemlib.analysis.verdict import Verdict

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture

__all__ = ["LABELS", "GrowthResult", "growth"]

LABELS = (
    "not held while idle",
    "grows with queued data",
    "grows with connections",
    "grows with traffic",
    "held while idle",
    "no connections",
)
QUEUED_RATIO_RANGE = (0.5, 4.0)
CORR_MIN = 0.8
NO_PHASE = "(no phase)"


@dataclass(frozen=True)
class GrowthResult:
    """Result of :func:`growth` (schemas and labels in the module doc)."""

    by_snapshot: pd.DataFrame
    by_phase: pd.DataFrame
    verdict: Verdict


def _ip_traffic(cap: Capture, snaps: pd.DataFrame) -> pd.Series:
    w = netstat_wide(cap, [("IpExt", "InOctets"), ("IpExt", "OutOctets")]).set_index("ts")
    tot = (w["IpExtInOctets"] + w["IpExtOutOctets"]).astype("Float64").reindex(snaps["ts"])
    dt = snaps.set_index("ts", drop=False)["ts"].diff().dt.total_seconds()
    return (tot.diff() / dt.astype("Float64")).where(dt > 0)


def _label(conn: float, buf: float, queued: float, page: int) -> str:
    """A phase's label from its mean connections, buffer and queued bytes: judged per connection,
    so a few sockets holding a little data on a box of thousands do not label the phase."""
    if not conn or conn != conn:
        return "no connections"
    lo, hi = QUEUED_RATIO_RANGE
    if queued >= page * conn and lo * queued <= buf <= hi * queued:
        return "grows with queued data"
    if buf != buf or buf < page * conn:
        return "not held while idle"
    return "held while idle"


def growth_frames(capture: Capture) -> GrowthResult:
    """The frames of :func:`growth` (``by_snapshot``, ``by_phase`` with each phase's label), with
    an empty verdict."""
    cap = capture
    page = page_size_bytes(cap)
    snaps = snapshots(cap)
    summary = socket_summary(cap)
    sums = per_snapshot_socket_sums(cap)
    bs = snaps.copy()
    bs["connections"] = sums["connections"].astype("Int64").values
    bs["buffer_bytes"] = sums["buffer_bytes"].astype("Int64").values
    bs["queued_bytes"] = sums["queued_bytes"].astype("Int64").values
    held = summary.per_snapshot["connections_with_buffer"].reindex(bs["ts"])
    held = held.fillna(0).astype("Int64")
    bs["connections_with_buffer"] = held.values
    largest = summary.per_snapshot["socket_buffer_max_bytes"].reindex(bs["ts"])
    bs["largest_socket_bytes"] = largest.astype("Int64").values
    conn = bs["connections"].astype("Float64").replace(0, pd.NA)
    bs["buffer_bytes_per_connection"] = (bs["buffer_bytes"].astype("Float64") / conn).astype(
        "Float64"
    )
    bs["queued_bytes_per_connection"] = (bs["queued_bytes"].astype("Float64") / conn).astype(
        "Float64"
    )
    traffic = traffic_rate(
        summary.traffic_bytes.to_numpy(), pd.Index(snaps["ts"]), summary.tcp_rows
    )
    bs["traffic_bytes_per_s"] = traffic.values
    bs["ip_traffic_bytes_per_s"] = _ip_traffic(cap, snaps).astype("Float64").values
    st = cap.sockstat.drop_duplicates("ts").set_index("ts")
    bs["sockstat_tcp_mem_bytes"] = st["tcp_mem_bytes"].reindex(bs["ts"]).astype("Int64").values
    bs["slab_bytes"] = slab_sum(cap, SOCKET_OBJECT_CACHES)[0].values

    ph = bs.assign(phase=bs["phase"].fillna(NO_PHASE))
    first_seen = {p: i for i, p in reversed(list(enumerate(ph["phase"])))}
    g = ph.groupby("phase", sort=False)
    by_phase = pd.DataFrame(
        {
            "snapshots": g.size(),
            "connections": g["connections"].mean(),
            "connections_with_buffer": g["connections_with_buffer"].mean(),
            "buffer_bytes": g["buffer_bytes"].mean(),
            "queued_bytes": g["queued_bytes"].mean(),
            "traffic_bytes_per_s": g["traffic_bytes_per_s"].mean(),
        }
    ).astype("Float64")
    by_phase["buffer_bytes_per_connection"] = by_phase["buffer_bytes"] / by_phase[
        "connections"
    ].replace(0, pd.NA)
    by_phase["queued_bytes_per_connection"] = by_phase["queued_bytes"] / by_phase[
        "connections"
    ].replace(0, pd.NA)
    by_phase["buffer_to_queued_ratio"] = by_phase["buffer_bytes"] / by_phase[
        "queued_bytes"
    ].replace(0, pd.NA)
    by_phase["holding_share"] = by_phase["connections_with_buffer"] / by_phase[
        "connections"
    ].replace(0, pd.NA)
    by_phase["label"] = [
        _label(number(r.connections), number(r.buffer_bytes), number(r.queued_bytes), page)
        for r in by_phase.itertuples()
    ]
    by_phase = by_phase.reset_index()
    by_phase["_o"] = by_phase["phase"].map(first_seen)
    by_phase = by_phase.sort_values("_o").drop(columns="_o")
    by_phase["snapshots"] = by_phase["snapshots"].astype("Int64")
    by_phase["label"] = by_phase["label"].astype("category")
    return GrowthResult(as_output(bs), as_output(by_phase), Verdict("", "", {}))


def growth_verdict(result: GrowthResult) -> Verdict:
    """Word :func:`growth_frames`' result: the whole capture's label from the phases' labels and
    the correlations across snapshots (module doc)."""
    bs, by_phase = result.by_snapshot, result.by_phase
    c_q = corr(bs["buffer_bytes"], bs["queued_bytes"])
    c_c = corr(bs["buffer_bytes"], bs["connections"])
    c_t = corr(bs["buffer_bytes"], bs["traffic_bytes_per_s"])
    tot_buf = number(bs["buffer_bytes"].sum())
    tot_q = number(bs["queued_bytes"].sum())
    ratio = tot_buf / tot_q if tot_q else float("nan")
    labels = list(by_phase["label"].astype(str))
    idle = by_phase[by_phase["label"] == "not held while idle"]
    fig = {
        "corr_buffer_queued": c_q,
        "corr_buffer_connections": c_c,
        "corr_buffer_traffic": c_t,
        "buffer_to_queued_ratio": ratio,
        # "max per connection" is the largest single socket (r+w+f), not a snapshot's average
        "max_buffer_bytes_per_connection": number(bs["largest_socket_bytes"].max()),
        "max_mean_buffer_bytes_per_connection": number(bs["buffer_bytes_per_connection"].max()),
        "idle_buffer_bytes_per_connection": number(idle["buffer_bytes_per_connection"].mean())
        if len(idle)
        else float("nan"),
        "max_connections": number(bs["connections"].max()),
    }
    real = [lab for lab in labels if lab != "no connections"]
    if not real:
        label = "no connections"
    elif all(lab == "not held while idle" for lab in real):
        label = "not held while idle"
    elif (
        QUEUED_RATIO_RANGE[0] <= ratio <= QUEUED_RATIO_RANGE[1] and "grows with queued data" in real
    ):
        label = "grows with queued data"
    elif c_c == c_c and c_c >= CORR_MIN:
        label = "grows with connections"
    elif c_t == c_t and c_t >= CORR_MIN:
        label = "grows with traffic"
    else:
        label = "held while idle"
    parts = []
    for r in by_phase.itertuples():
        parts.append(
            f"{r.phase}: {number(r.connections):.0f} connections "
            f"({number(r.connections_with_buffer):.0f} of them, "
            f"{_share(number(r.holding_share))}, holding a page or more), "
            f"{fmt_bytes(number(r.buffer_bytes_per_connection))} buffer and "
            f"{fmt_bytes(number(r.queued_bytes_per_connection))} queued per connection ({r.label})"
        )
    text = (
        f"Overall: {label} (up to {fig['max_connections']:.0f} connections; the largest socket "
        f"held {fmt_bytes(fig['max_buffer_bytes_per_connection'])}, the most per connection on "
        f"average in a snapshot was {fmt_bytes(fig['max_mean_buffer_bytes_per_connection'])}). "
        + "; ".join(parts)
        + "."
    )
    if c_q == c_q:
        text += (
            f" Across snapshots buffer memory correlates {c_q:.2f} with queued bytes, "
            f"{c_c:.2f} with connections and {c_t:.2f} with traffic"
            if c_c == c_c and c_t == c_t
            else f" Across snapshots buffer memory correlates {c_q:.2f} with queued bytes"
        )
        text += f"; buffer/queued = {ratio:.2f}." if ratio == ratio else "."
    return Verdict(label, text, fig)


def _share(value: float) -> str:
    if value != value:
        return "n/a"
    return f"{value:.0%}" if value >= 0.01 or value == 0 else "<1%"


def growth(capture: Capture) -> GrowthResult:
    """Does buffer memory follow connections, traffic or queued data? (module doc)"""
    frames = growth_frames(capture)
    return GrowthResult(frames.by_snapshot, frames.by_phase, growth_verdict(frames))
