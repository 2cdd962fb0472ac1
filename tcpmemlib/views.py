"""Tables for the notebooks and reports: selections, totals and unit conversions of what the
analyses computed (no analysis here, no plotting: plots.py draws, this module shapes tables).

Every table is sorted by what its page is about (bytes held, connections, change), never by name;
byte columns are shown in MiB or KiB and rates in MiB/s or KiB/s.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from tcpmemlib import load_capture
from tcpmemlib.analysis.common import KIB, MIB
from tcpmemlib.analysis.summary import median_max, per_snapshot_socket_sums, socket_summary
from tcpmemlib.html import show_table
from tcpmemlib.report import resolve_input

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture


def _num(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()


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


def capture_overview(cap: Capture) -> pd.DataFrame:
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


def example_socket(cap: Capture, field: str = "skmem_r") -> pd.Series:
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


def socket_totals(cap: Capture) -> pd.DataFrame:
    """Per snapshot, for the primer's plots: the analyses' per-snapshot TCP socket sums
    (``analysis.summary.per_snapshot_socket_sums``) under ss's own names:
    ``sockets`` (those with skmem), ``recv_q_bytes``, ``send_q_bytes`` (connections only),
    ``skmem_<r,w,f,t,rb,tb>_bytes``, ``buffer_bytes`` (r+w+f), ``limits_bytes`` (rb+tb),
    ``max_f_bytes``; plus ``ts`` and ``phase``."""
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


def owner_limits_by_phase(cap: Capture, comm: str) -> pd.DataFrame:
    """For the sockets owned by process name ``comm``: per phase, connections and the median and
    maximum rb and tb (bytes). Shows autotuning (tb grows for a blocked sender, rb stays put for a
    receiver that never reads) and SO_RCVBUF/SO_SNDBUF doubling."""
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


def sysctl_table(cap: Capture, names: Sequence[str]) -> pd.DataFrame:
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
    ).sort_values(["buffer_bytes", "sockets"], ascending=False, kind="stable")
    return out.reset_index()


def _unit_name(col: str, unit: str) -> str | None:
    """The display name of a byte column in ``unit``, or None when ``col`` is not one."""
    if col.endswith("_bytes_per_s"):
        return col.removesuffix("_bytes_per_s") + f" ({unit}/s)"
    if col.endswith("_bytes_per_connection"):
        return col.removesuffix("_bytes_per_connection") + " per connection (KiB)"
    if col.endswith("_bytes"):
        return col.removesuffix("_bytes") + f" ({unit})"
    return None


def scaled_columns(frame: pd.DataFrame, scale: float = KIB, unit: str = "KiB") -> pd.DataFrame:
    """A copy for tables with every byte column in human units: ``*_bytes`` in ``unit``,
    ``*_bytes_per_s`` in ``unit``/s, ``*_bytes_per_connection`` in KiB, renamed to say so."""
    out = frame.copy()
    for col in list(out.columns):
        name = _unit_name(str(col), unit)
        if name is None:
            continue
        div = KIB if str(col).endswith("_per_connection") else scale
        out[col] = (pd.to_numeric(out[col], errors="coerce").astype("Float64") / div).round(2)
        out = out.rename(columns={col: name})
    return out


def mib_columns(frame: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """:func:`scaled_columns` in MiB (and MiB/s), rounded to ``digits``."""
    out = scaled_columns(frame, MIB, "MiB")
    return out.round(digits) if digits != 2 else out


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
            if c not in ("metric", "comm", "significant", "n_before", "n_after", "ratio")
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


def describe_socket(cap: Capture, sock: pd.Series) -> str:
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


def command_lines(cap: Capture, pids: Iterable[Any]) -> pd.DataFrame:
    """``pid``, ``comm``, ``args`` of the given pids (their latest snapshot), for captures made with
    ``collect.sh -a``; ``args`` is NA where it was not collected."""
    wanted = {int(p) for p in pids if not pd.isna(p)}
    procs = cap.processes
    rows = procs[procs["pid"].isin(wanted)].sort_values("ts").drop_duplicates("pid", keep="last")
    return rows[["pid", "comm", "args"]].reset_index(drop=True)


def notebook_setup(capture: str, before: str = "") -> tuple[Capture, Capture | None]:
    """The setup every report notebook shares: plot defaults, the capture (and the ``before``
    capture, when given) loaded from a notebook parameter path, its overview and its problems
    shown. Returns ``(cap, before_cap)`` (``before_cap`` None without one)."""
    plt.rcParams.update({"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})
    loaded = []
    for path in (capture, before):
        resolved = resolve_input(path)
        if resolved is None:
            loaded.append(None)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # every problem is in cap.problems, shown below
            loaded.append(load_capture(resolved))
    cap, before_cap = loaded
    if cap is None:
        raise ValueError("no capture given")
    show_table(capture_overview(cap))
    for name, one in (("this capture", cap), ("the before capture", before_cap)):
        if one is not None and len(one.problems):
            print(f"{len(one.problems)} problem(s) reading {name}; what they affect is left out:")
            show_table(problem_summary(one.problems), max_rows=20)
    return cap, before_cap


def place_why(places: pd.DataFrame, place: str) -> str:
    """The ``why`` of one row of ``where_is_it(...).places`` (computed from the capture for the
    rows whose meaning depends on it, such as the socket owners' RSS)."""
    rows = places[places["place"].astype("string") == place]
    return str(rows["why"].iloc[0]) if len(rows) else ""


# --- who holds the memory, who holds the connections ---------------------------------------------
def rows_at(
    procs: pd.DataFrame, ts: Any, by: Sequence[str] = ("buffer_bytes", "connections"), n: int = 15
) -> pd.DataFrame:
    """The ``n`` rows of ``by_process`` at snapshot ``ts``, largest first by ``by`` (bytes held,
    then connections): what the per-process page is about, never by name."""
    part = procs[procs["ts"] == ts]
    keys = [f"_{c}" for c in by]
    ordered = part.assign(**{k: _num(part[c]) for k, c in zip(keys, by, strict=True)})
    ordered = ordered.sort_values(keys, ascending=False, kind="stable").drop(columns=keys)
    return ordered.head(n).reset_index(drop=True)


def held_sockets(cap: Capture, n: int = 20) -> pd.DataFrame:
    """The ``n`` connections that held the most socket buffer memory (largest single socket first,
    read from the capture's one pass over its socket rows): who owns each, its peer, how much it
    held, for how long (snapshots, and seconds from the first to the last), and how often it sat at
    its send/receive limit. Byte columns stay in bytes (see :func:`socket_table` for display)."""
    held = socket_summary(cap).held_sockets
    out = held.head(n).copy()
    span = (out["last_ts"] - out["first_ts"]).dt.total_seconds()
    out["held_s"] = span.astype("Float64")
    out["owner"] = [
        f"{c} (pid {int(p)})" if not pd.isna(p) else str(c)
        for c, p in zip(out["comm"], out["pid"], strict=True)
    ]
    out["local"] = out["local_address"] + ":" + out["local_port"]
    out["peer"] = out["peer_address"] + ":" + out["peer_port"]
    columns = [
        "owner",
        "local",
        "peer",
        "state",
        "max_buffer_bytes",
        "max_w_bytes",
        "max_r_bytes",
        "sndbuf_limit_bytes",
        "rcvbuf_limit_bytes",
        "snapshots_held",
        "held_s",
        "snapshots_at_limit",
        "inode",
    ]
    return out[columns].reset_index(drop=True)


def by_peer(cap: Capture, n: int = 20) -> pd.DataFrame:
    """Per peer address of the connections that held memory: how many connections, the largest
    single socket, Σ of each connection's most, and how many of them sat at a limit; the peers
    holding the most first."""
    held = socket_summary(cap).held_sockets
    if not len(held):
        return pd.DataFrame(
            {
                "peer_address": pd.Series([], dtype="string"),
                "connections": pd.Series([], dtype="Int64"),
                "largest_socket_bytes": pd.Series([], dtype="Int64"),
                "sum_of_max_bytes": pd.Series([], dtype="Int64"),
                "at_limit": pd.Series([], dtype="Int64"),
            }
        )
    g = held.assign(limit=(held["snapshots_at_limit"] > 0).astype("int64")).groupby("peer_address")
    out = pd.DataFrame(
        {
            "connections": g.size(),
            "largest_socket_bytes": g["max_buffer_bytes"].max(),
            "sum_of_max_bytes": g["max_buffer_bytes"].sum(),
            "at_limit": g["limit"].sum(),
        }
    ).astype("Int64")
    out = out.sort_values(["sum_of_max_bytes", "connections"], ascending=False, kind="stable")
    return out.reset_index().head(n)


def limit_counts(cap: Capture) -> pd.DataFrame:
    """Per phase (in order): the median per snapshot of connections holding data to send / to read
    and of those at their send / receive limit, and the largest socket (bytes)."""
    per = socket_summary(cap).per_snapshot
    snaps = cap.meta[["ts", "phase"]].drop_duplicates("ts").sort_values("ts")
    frame = snaps.merge(per.reset_index(), on="ts", how="left")
    frame["phase"] = frame["phase"].astype("string").fillna("(all)")
    cols = [
        "connections",
        "sending_connections",
        "at_sndbuf_limit",
        "receiving_connections",
        "at_rcvbuf_limit",
    ]
    g = frame.groupby("phase", sort=False)
    out = g[cols].median().round(0).astype("Int64")
    out["largest_socket_bytes"] = g["socket_buffer_max_bytes"].max().astype("Int64")
    return out.reset_index()


def problem_summary(problems: pd.DataFrame) -> pd.DataFrame:
    """``Capture.problems`` with the same problem of many snapshots on one row: severity, file,
    line, reason, how many snapshots, the first of them; errors first, then the most frequent."""
    if not len(problems):
        return problems
    keys = ["severity", "file", "line", "reason"]
    frame = problems.astype({k: "string" for k in keys}).fillna({k: "" for k in keys})
    g = frame.groupby(keys, sort=False, dropna=False)
    out = pd.DataFrame({"snapshots": g.size(), "first_snapshot": g["snapshot"].min()})
    out = out.reset_index()
    rank = {"error": 0, "warning": 1, "collector": 2}
    out["_r"] = out["severity"].map(rank).fillna(3)
    out = out.sort_values(["_r", "snapshots"], ascending=[True, False], kind="stable")
    out["line"] = out["line"].replace("", "NA")
    return out.drop(columns="_r").reset_index(drop=True)


def moved_first(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """``frame`` with the rows whose ``column`` moved most first (largest absolute value; NA
    last), e.g. the pressure counters that rose."""
    size = pd.Series(np.abs(_num(frame[column])), index=frame.index).fillna(-1)
    return frame.loc[size.sort_values(ascending=False, kind="stable").index].reset_index(drop=True)


def reconcile_table(by_snapshot: pd.DataFrame) -> pd.DataFrame:
    """``reconcile(...).by_snapshot`` narrowed to what a reader checks, fitting a page: seconds
    since the first snapshot, phase, Σ skmem, sockstat before/after ss, the gap, the bracket, the
    traffic, whether the gap is outside the bracket / unexplained, and the hidden sockets."""
    frame = by_snapshot.sort_values("ts")
    start = frame["ts"].min()
    out = pd.DataFrame({"t_s": (frame["ts"] - start).dt.total_seconds().round(1)})
    columns = [
        "phase",
        "skmem_sum_bytes",
        "sockstat_mem_bytes",
        "sockstat_after_bytes",
        "gap_bytes",
        "bracket_low_bytes",
        "bracket_high_bytes",
        "traffic_bytes_per_s",
        "outside_bracket",
        "unexplained",
        "hidden_sockets",
    ]
    for c in columns:
        if c in frame.columns:
            out[c] = frame[c].to_numpy()
    return out.reset_index(drop=True)
