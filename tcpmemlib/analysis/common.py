"""Helpers every analysis shares: formatting, the snapshot index and phases, meminfo/sysctl/netstat
pivots, SLUB alias resolution, slab sums and the per-CPU reserve.

Everything here takes a ``Capture`` (docs/design.md §2) or its frames and returns frames or numbers;
nothing here reads socket rows (that is ``socket_rows`` for one batch and ``summary`` for the
capture's one pass), prints or decides.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from tcpmemlib.capture import Capture

__all__ = [
    "KIB",
    "MIB",
    "SKB_CACHES",
    "SOCKET_OBJECT_CACHES",
    "as_output",
    "corr",
    "fmt_bytes",
    "fmt_rate",
    "meminfo_wide",
    "netstat_wide",
    "number",
    "page_size_bytes",
    "pcpu_reserve_pages",
    "resolve_cache",
    "slab_frame",
    "slab_sum",
    "snapshots",
    "sysctl_ints",
    "sysctl_last",
]

MIB = float(1 << 20)
KIB = 1024.0
GIB = float(1 << 30)
SOCKET_OBJECT_CACHES = (
    "TCP",
    "TCPv6",
    "sock_inode_cache",
    "tw_sock_TCP",
    "tw_sock_TCPv6",
    "request_sock_TCP",
    "request_sock_TCPv6",
)
SKB_CACHES = ("skbuff_head_cache", "skbuff_fclone_cache", "skbuff_small_head")


# --------------------------------------------------------------------------------------- formatting
def fmt_bytes(value: object) -> str:
    """Human bytes for verdict text: ``12.3 MiB``, ``3.8 KiB``, ``512 B``; NA -> ``n/a``."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    v = float(value)
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v >= 10 * GIB:
        return f"{sign}{v / GIB:.1f} GiB"
    if v >= MIB:
        return f"{sign}{v / MIB:.1f} MiB"
    if v >= KIB:
        return f"{sign}{v / KIB:.1f} KiB"
    return f"{sign}{v:.0f} B"


def fmt_rate(value: object) -> str:
    """Human bytes per second: ``12.3 MiB/s``, ``3.8 KiB/s``, ``512 B/s``; NA -> ``n/a``."""
    text = fmt_bytes(value)
    return text if text == "n/a" else text + "/s"


def as_output(frame: pd.DataFrame, categories: Iterable[str] = ("host", "phase")) -> pd.DataFrame:
    """Final touch for result frames: repeated labels as ``category``, fresh index."""
    out = frame.reset_index(drop=True)
    for col in categories:
        if col in out.columns:
            out[col] = out[col].astype("string").astype("category")
    return out


def number(x: object) -> float:
    """A scalar as float, NA/None -> nan."""
    if x is None or x is pd.NA:
        return float("nan")
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def corr(a: pd.Series, b: pd.Series) -> float:
    """Pearson correlation of two aligned series, NaN when undefined (constant or < 3 points)."""
    x = pd.to_numeric(a, errors="coerce").astype("float64")
    y = pd.to_numeric(b, errors="coerce").astype("float64")
    ok = x.notna() & y.notna()
    x, y = x[ok].to_numpy(), y[ok].to_numpy()
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


# --------------------------------------------------------------------------------------- snapshots
def snapshots(cap: Capture) -> pd.DataFrame:
    """One row per snapshot, sorted by time: ``ts``, ``host``, ``phase`` (string, NA without phases)."""
    meta = cap.meta
    if meta is not None and len(meta):
        out = meta[["ts", "host"]].copy()
        out["phase"] = (
            meta["phase"].astype("string")
            if "phase" in meta.columns
            else pd.Series(pd.NA, index=meta.index, dtype="string")
        )
    else:  # fall back to the snapshots sockstat saw
        st = cap.sockstat
        out = st[["ts", "host"]].copy()
        out["phase"] = pd.Series(pd.NA, index=st.index, dtype="string")
    out["host"] = out["host"].astype("string")
    return out.drop_duplicates("ts").sort_values("ts").reset_index(drop=True)


def page_size_bytes(cap: Capture) -> int:
    """The capture's page size (from meta; never assumed)."""
    return int(cap.page_size_bytes)


# --------------------------------------------------------------------------------------- pivots
def meminfo_wide(cap: Capture) -> pd.DataFrame:
    """``ts`` + one Int64 column per meminfo field (bytes when the source said kB)."""
    m = cap.meminfo
    snaps = snapshots(cap)[["ts"]]
    if m is None or not len(m):
        return snaps
    w = m.assign(field=m["field"].astype("string")).pivot_table(
        index="ts", columns="field", values="value", aggfunc="first", observed=True
    )
    w.columns = [str(c) for c in w.columns]
    w = w.astype("Int64").reset_index()
    return snaps.merge(w, on="ts", how="left")


def sysctl_ints(cap: Capture, name: str) -> pd.Series:
    """Per ``ts``: the integers of sysctl ``name`` (a list; empty when the snapshot lacks it)."""
    sc = cap.sysctl
    snaps = snapshots(cap)
    vals: dict[Any, list[int]] = {ts: [] for ts in snaps["ts"]}
    if sc is not None and len(sc):
        rows = sc[sc["name"].astype("string") == name]
        for ts, value in zip(rows["ts"], rows["value"], strict=True):
            try:
                vals[ts] = [int(v) for v in str(value).split()]
            except ValueError:
                vals[ts] = []
    return pd.Series(vals, name=name)


def netstat_wide(cap: Capture, counters: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """``ts`` + one Int64 column ``<group><counter>`` per requested (group, counter) pair (NA when the
    kernel does not print it)."""
    ns = cap.netstat
    out = snapshots(cap)[["ts"]].copy()
    wanted = list(counters)
    if ns is None or not len(ns):
        for grp, ctr in wanted:
            out[grp + ctr] = pd.Series(pd.NA, index=out.index, dtype="Int64")
        return out
    key = ns["group"].astype("string") + ns["counter"].astype("string")
    for grp, ctr in wanted:
        rows = ns[key == grp + ctr].drop_duplicates("ts")
        out = out.merge(
            rows[["ts", "value"]].rename(columns={"value": grp + ctr}), on="ts", how="left"
        )
        out[grp + ctr] = out[grp + ctr].astype("Int64")
    return out


# --------------------------------------------------------------------------------------- slab
def slab_frame(cap: Capture) -> pd.DataFrame | None:
    """The slab frame, or None when the capture has no slabinfo (collected as non-root)."""
    sl = getattr(cap, "slab", None)
    if sl is None or not len(sl):
        return None
    out = sl.copy()
    out["name"] = out["name"].astype("string")
    return out


def resolve_cache(cap: Capture, cache: str, slab_names: set[str]) -> tuple[str | None, list[str]]:
    """Where ``cache``'s objects are counted in slabinfo, with SLUB merging.

    Returns ``(shown_as, merged_with)``: ``shown_as`` is the slabinfo row name holding the cache's
    objects (None when no row holds them), ``merged_with`` the other cache names sharing that merged
    cache (empty when the cache is not merged).
    """
    al = getattr(cap, "slab_aliases", None)
    if al is None or not len(al):
        return (cache if cache in slab_names else None), []
    al = al.drop_duplicates(["cache"])
    row = al[al["cache"].astype("string") == cache]
    if not len(row):
        if cache not in slab_names:
            return None, []
        # not a symlink: a cache of its own, unless other caches are merged into it
        merged = al[al["shown_as"].astype("string") == cache]["cache"].astype("string").tolist()
        return cache, sorted(c for c in merged if c != cache)
    target = str(row["target"].iloc[0])
    shown = row["shown_as"].iloc[0]
    same = al[al["target"].astype("string") == target]["cache"].astype("string").tolist()
    merged = sorted(c for c in same if c != cache)
    if shown is pd.NA or shown is None or str(shown) not in slab_names:
        shown = next((c for c in sorted(same) if c in slab_names), None)
    return (None if shown is None else str(shown)), merged


def slab_sum(cap: Capture, caches: tuple[str, ...]) -> tuple[pd.Series, list[str]]:
    """Per ts: Σ slab_bytes of the slabinfo rows holding ``caches`` (each row once), and notes on
    merged caches. NA per ts when slabinfo is missing."""
    snaps = snapshots(cap)
    sl = slab_frame(cap)
    if sl is None:
        return pd.Series(pd.NA, index=snaps["ts"], dtype="Int64"), []
    names = set(sl["name"].dropna())
    rows: set[str] = set()
    notes: list[str] = []
    for cache in caches:
        shown, merged = resolve_cache(cap, cache, names)
        if shown is None:
            continue
        rows.add(shown)
        if merged:
            notes.append(f"{cache} is counted in slabinfo row {shown!r} with {', '.join(merged)}")
    part = sl[sl["name"].isin(sorted(rows))]
    s = part.groupby("ts")["slab_bytes"].sum().astype("Int64")
    return s.reindex(snaps["ts"]).fillna(0).astype("Int64"), notes


# --------------------------------------------------------------------------------------- sysctls
def sysctl_last(cap: Capture) -> dict[str, str]:
    """Every sysctl of the capture's last snapshot: name -> value (whitespace collapsed)."""
    sc = cap.sysctl
    if sc is None or not len(sc):
        return {}
    last = sc[sc["ts"] == sc["ts"].max()]
    return {
        str(n): " ".join(str(v).split()) for n, v in zip(last["name"], last["value"], strict=True)
    }


def _kernel_major_minor(kernel: object) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", str(kernel)) if kernel is not None else None
    return (int(m.group(1)), int(m.group(2))) if m else None


def pcpu_reserve_pages(cap: Capture) -> tuple[pd.Series, str]:
    """Per ts: the per-CPU reserve in pages (``net.core.mem_pcpu_rsv``: each CPU caches up to that
    many pages of TCP memory charges before folding them into the global counter), and where it came
    from: ``sysctl``, ``default`` (1 MiB per CPU, the kernel default since 6.0) or ``none``
    (kernels before 6.0 have no reserve)."""
    page = page_size_bytes(cap)
    rsv = sysctl_ints(cap, "net.core.mem_pcpu_rsv")
    kernels = (
        cap.meta.drop_duplicates("ts").set_index("ts")["kernel"]
        if len(cap.meta)
        else pd.Series(dtype=object)
    )
    default = max(1, (1 << 20) // page)
    vals: dict[Any, int] = {}
    source = "sysctl"
    for ts, v in rsv.items():
        if v:
            vals[ts] = v[0]
            continue
        ver = _kernel_major_minor(kernels.get(ts))
        if ver is not None and ver < (6, 0):
            vals[ts] = 0
            source = "none"
        else:
            vals[ts] = default
            source = "default"
    return pd.Series(vals, dtype="Int64"), source
