"""A loaded capture's small tables for the fleet dataset (everything but the socket rows).

``capture_tables(cap, passed, key) -> {table: frame}`` (``passed``: the capture's
``sockets.SocketPass`` after every batch). Frames carry ``ts`` where the table is per snapshot;
``ingest`` adds ``host``, ``date`` and ``capture_key``.

``snapshots`` columns (one row per snapshot; NA where the capture lacks the source):

| column | unit | from |
|---|---|---|
| snapshot, phase, kernel | | meta.txt, phases.tsv |
| page_size_bytes, cpus | bytes, CPUs | meta.txt |
| sockstat_tcp_mem_bytes, sockstat_udp_mem_bytes | bytes | sockstat ``mem`` × page size |
| tcp_inuse, tcp_orphan, tcp_tw, tcp_alloc | sockets | sockstat |
| tcp_mem_min_bytes, tcp_mem_pressure_bytes, tcp_mem_max_bytes | bytes | ``net.ipv4.tcp_mem`` × page size |
| tcp_rmem_{min,default,max}_bytes, tcp_wmem_{min,default,max}_bytes | bytes | ``net.ipv4.tcp_rmem``/``tcp_wmem`` |
| meminfo_{MemTotal,MemAvailable,Slab,SUnreclaim}_bytes | bytes | meminfo |
| tcp_sockets, connections, listeners, full_sockets | sockets | the socket rows (0 when none) |
| buffer_bytes, skmem_{r,w,f,t}_bytes, recv_q_bytes, send_q_bytes, queued_bytes | bytes | the socket rows (``fleet.sockets``) |
| gap_bytes, pcpu_reserve_bound_bytes, unexplained, persistent | bytes, bool | ``reconcile(cap).by_snapshot`` |

``netns``: per (snapshot, namespace inode) the socket sums (``fleet.sockets``) with the namespace's
``name`` and ``cgroup`` from ``Capture.netns``; ``namespaces``: ``Capture.netns`` as loaded (both only
where the capture records namespaces, collector 2 and later).
``counters``: ``ts``, ``counter``, ``value`` for the TcpExt counters ``pressure`` reads
(``tcpmemlib.analysis.pressure.COUNTERS``). ``verdicts``: ``analysis`` (``growth``, ``reconcile``,
``pressure``, ``where``), ``phase`` (NA: the whole capture; growth labels each phase too), ``label``,
``text``, ``figures_json``; an analysis that cannot run on the capture has label ``error`` and the
reason as text, so the fleet shows what each per-host report would.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from tcpmemlib.analysis.growth import growth
from tcpmemlib.analysis.pressure import COUNTERS, pressure
from tcpmemlib.analysis.reconcile import reconcile
from tcpmemlib.analysis.where import where_is_it
from tcpmemlib.fleet.sockets import SocketPass

__all__ = ["ANALYSES", "MEMINFO_FIELDS", "capture_tables", "sysctl_triples"]

MEMINFO_FIELDS = ("MemTotal", "MemAvailable", "Slab", "SUnreclaim")
ANALYSES: dict[str, Callable[[Any], Any]] = {
    "growth": growth,
    "reconcile": reconcile,
    "pressure": pressure,
    "where": where_is_it,
}
_RECONCILE_COLUMNS = ("gap_bytes", "pcpu_reserve_bound_bytes", "unexplained", "persistent")


def _snaps(cap: Any) -> pd.DataFrame:
    m = cap.meta.drop_duplicates("ts").sort_values("ts")
    out = pd.DataFrame({"ts": m["ts"].to_numpy()})
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    for col in ("snapshot", "phase", "kernel"):
        out[col] = m[col].astype("string").to_numpy()
    out["page_size_bytes"] = m["page_size_bytes"].astype("Int64").to_numpy()
    out["cpus"] = m["cpus"].astype("Int64").to_numpy()
    return out


def sysctl_triples(cap: Any, name: str) -> pd.DataFrame:
    """Per ``ts``: the three integers of sysctl ``name`` as columns 0, 1, 2 (NA when the snapshot
    lacks it or it does not hold three integers)."""
    sc = cap.sysctl
    rows = sc[sc["name"].astype("string") == name].drop_duplicates("ts")
    vals = []
    for value in rows["value"].astype("string"):
        parts = str(value).split() if value is not pd.NA else []
        try:
            ints = [int(p) for p in parts]
        except ValueError:
            ints = []
        vals.append(ints if len(ints) == 3 else [pd.NA] * 3)
    out = pd.DataFrame(vals, columns=[0, 1, 2], dtype="Int64")
    out["ts"] = rows["ts"].to_numpy()
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    return out


def _limits(cap: Any, out: pd.DataFrame) -> pd.DataFrame:
    page = out.set_index("ts")["page_size_bytes"]
    tm = sysctl_triples(cap, "net.ipv4.tcp_mem").set_index("ts").reindex(out["ts"])
    for i, col in enumerate(("tcp_mem_min_bytes", "tcp_mem_pressure_bytes", "tcp_mem_max_bytes")):
        out[col] = (tm[i].astype("Int64") * page.reindex(out["ts"])).to_numpy()
    for name in ("tcp_rmem", "tcp_wmem"):
        t = sysctl_triples(cap, f"net.ipv4.{name}").set_index("ts").reindex(out["ts"])
        for i, part in enumerate(("min", "default", "max")):
            out[f"{name}_{part}_bytes"] = t[i].astype("Int64").to_numpy()
    return out


def _sockstat(cap: Any, out: pd.DataFrame) -> pd.DataFrame:
    st = cap.sockstat.drop_duplicates("ts").set_index("ts").reindex(out["ts"])
    out["sockstat_tcp_mem_bytes"] = st["tcp_mem_bytes"].astype("Int64").to_numpy()
    out["sockstat_udp_mem_bytes"] = st["udp_mem_bytes"].astype("Int64").to_numpy()
    for col in ("tcp_inuse", "tcp_orphan", "tcp_tw", "tcp_alloc"):
        out[col] = st[col].astype("Int64").to_numpy()
    return out


def _meminfo(cap: Any, out: pd.DataFrame) -> pd.DataFrame:
    mi = cap.meminfo
    field = mi["field"].astype("string")
    for name in MEMINFO_FIELDS:
        rows = mi[(field == name).fillna(False).to_numpy(dtype=bool)].drop_duplicates("ts")
        vals = rows.set_index("ts")["value"].reindex(out["ts"])
        out[f"meminfo_{name}_bytes"] = vals.astype("Int64").to_numpy()
    return out


def _run(name: str, cap: Any) -> tuple[Any, dict[str, Any]]:
    """An analysis' result and its verdict row; an analysis that fails becomes an ``error`` row
    (a damaged capture must still be ingested and say what could not be computed)."""
    try:
        result = ANALYSES[name](cap)
    except Exception as err:  # any failure of one analysis on one capture is data, not a stop
        text = f"{type(err).__name__}: {err}"
        return None, {"analysis": name, "phase": pd.NA, "label": "error", "text": text}
    v = result.verdict
    figures = {
        k: (None if isinstance(x, float) and math.isnan(x) else x) for k, x in v.figures.items()
    }
    row = {
        "analysis": name,
        "phase": pd.NA,
        "label": v.label,
        "text": v.text,
        "figures_json": json.dumps(figures, default=str, sort_keys=True),
    }
    return result, row


def _verdicts(cap: Any) -> tuple[pd.DataFrame, Any]:
    rows, results = [], {}
    for name in ANALYSES:
        results[name], row = _run(name, cap)
        rows.append(row)
    g = results.get("growth")
    if g is not None:
        for phase, label in zip(g.by_phase["phase"], g.by_phase["label"], strict=True):
            rows.append({"analysis": "growth", "phase": str(phase), "label": str(label)})
    frame = pd.DataFrame(rows, columns=["analysis", "phase", "label", "text", "figures_json"])
    return frame.astype("string"), results.get("reconcile")


def capture_tables(cap: Any, passed: SocketPass) -> dict[str, pd.DataFrame]:
    """The small tables of one capture (module doc), keyed by table name."""
    out = _snaps(cap)
    out = _sockstat(cap, out)
    out = _limits(cap, out)
    out = _meminfo(cap, out)
    sums = passed.snapshot_sums().set_index("ts").reindex(out["ts"])
    for col in sums.columns:
        out[col] = sums[col].astype("Int64").fillna(0).to_numpy()
    verdicts, rec = _verdicts(cap)
    if rec is not None:
        r = rec.by_snapshot.drop_duplicates("ts").set_index("ts").reindex(out["ts"])
        for col in _RECONCILE_COLUMNS:
            out[col] = r[col].to_numpy()
    else:
        for col in _RECONCILE_COLUMNS:
            out[col] = pd.Series(pd.NA, index=out.index, dtype="Int64")
    out = out.astype({"gap_bytes": "Int64", "pcpu_reserve_bound_bytes": "Int64"})
    out = out.astype({"unexplained": "boolean", "persistent": "boolean"})

    ns = cap.netstat
    wanted = (ns["group"].astype("string") == "TcpExt") & ns["counter"].astype("string").isin(
        list(COUNTERS)
    )
    counters = ns[wanted.fillna(False).to_numpy(dtype=bool)][["ts", "counter", "value"]]
    counters = counters.drop_duplicates(["ts", "counter"]).astype(
        {"counter": "string", "value": "Int64"}
    )
    procs = _with_process_facts(cap, passed.process_sums())
    tables = {
        "snapshots": out,
        "processes": procs,
        "counters": counters.reset_index(drop=True),
        "sysctls": cap.sysctl[["ts", "name", "value"]].astype(
            {"name": "string", "value": "string"}
        ),
        "meta": cap.meta.drop(columns=["host"]),
        "verdicts": verdicts,
        "problems": cap.problems.astype({"line": "Int64"}),
    }
    netns = passed.netns_sums()
    frame = getattr(cap, "netns", None)  # Capture.netns: the namespaces netns.txt lists
    known = isinstance(frame, pd.DataFrame) and len(frame) > 0
    if netns is not None:
        if known and {"ts", "netns", "name", "cgroup"} <= set(frame.columns):
            names = frame[["ts", "netns", "name", "cgroup"]].drop_duplicates(["ts", "netns"])
            names = names.astype({"netns": "Int64", "name": "string", "cgroup": "string"})
            netns = netns.merge(names, on=["ts", "netns"], how="left")
        tables["netns"] = netns
    if known:
        tables["namespaces"] = frame.drop(columns=[c for c in ("host",) if c in frame.columns])
    return tables


def _with_process_facts(cap: Any, procs: pd.DataFrame) -> pd.DataFrame:
    """Per-process sums with the process's ``rss_bytes`` (ps) and ``cgroup`` (NA when unknown)."""
    ps = cap.processes[["ts", "pid", "rss_bytes"]].drop_duplicates(["ts", "pid"])
    ps = ps.astype({"pid": "Int64", "rss_bytes": "Int64"})
    out = procs.merge(ps, on=["ts", "pid"], how="left")
    pc = cap.proc_cgroups
    if pc is not None and len(pc):
        cg = pc[["ts", "pid", "cgroup"]].drop_duplicates(["ts", "pid"])
        cg = cg.astype({"pid": "Int64", "cgroup": "string"})
        out = out.merge(cg, on=["ts", "pid"], how="left")
    else:
        out["cgroup"] = pd.Series(pd.NA, index=out.index, dtype="string")
    out["comm"] = out["comm"].astype("string")
    return out
