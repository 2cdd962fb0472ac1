"""``Capture``: every frame of a loaded capture (docs/design.md §2). ``load_capture`` builds it.

The socket rows (``sockets``, ``owners``) live in a ``tcpmemlib.sockstore`` source, in memory or
on disk; every other frame is a pandas DataFrame held in memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd

from tcpmemlib import sockstore
from tcpmemlib.errors import CaptureError
from tcpmemlib.schema import FRAMES, SOCKET_ROW_FRAMES

__all__ = ["FRAMES", "LARGE_READ_ROWS", "Capture"]

# Reading this many socket rows whole from disk (Capture.sockets) warns once per capture.
LARGE_READ_ROWS = 1_000_000
_ROW_NAMES = (*SOCKET_ROW_FRAMES, "_rows")


def _utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


@dataclass(repr=False)
class Capture:
    """Every frame of a capture (docs/design.md §2). Build it with ``load_capture``.

    ``sockets`` and ``owners`` of a large capture stay on disk (``tcpmemlib.sockstore``): reading
    either attribute reads the whole frame from disk each time; ``socket_batches`` reads a batch of
    whole snapshots at a time, which is what the analyses do.
    """

    sockets: pd.DataFrame
    owners: pd.DataFrame
    sockstat: pd.DataFrame
    meminfo: pd.DataFrame
    processes: pd.DataFrame
    slab: pd.DataFrame
    slab_aliases: pd.DataFrame
    protocols: pd.DataFrame
    netstat: pd.DataFrame
    zoneinfo: pd.DataFrame
    sysctl: pd.DataFrame
    cgroups: pd.DataFrame
    proc_cgroups: pd.DataFrame
    netns: pd.DataFrame
    meta: pd.DataFrame
    phases: pd.DataFrame
    problems: pd.DataFrame
    path: str | None = None

    def frames(self) -> dict[str, pd.DataFrame]:
        """Every frame by attribute name (``sockets`` and ``owners`` read whole, see the class doc)."""
        return {name: getattr(self, name) for name in FRAMES}

    def __repr__(self) -> str:
        rows = self._socket_rows()
        where = "on disk" if rows.on_disk else "in memory"
        return (
            f"Capture(path={self.path!r}, snapshots={len(self.meta)}, "
            f"socket rows={rows.rows} ({where}), problems={len(self.problems)})"
        )

    # --- socket rows: in memory or on disk (tcpmemlib.sockstore)
    def _socket_rows(self) -> Any:
        return self.__dict__["_rows"]

    @property
    def socket_rows(self) -> int:
        """Number of socket rows (every snapshot), without reading them."""
        return int(self._socket_rows().rows)

    @property
    def sockets_on_disk(self) -> bool:
        """True when ``sockets``/``owners`` are read from disk on access (a large capture)."""
        return bool(self._socket_rows().on_disk)

    def socket_batches(
        self,
        columns: Sequence[str] | None = None,
        *,
        owners: bool = False,
        batch_rows: int | None = None,
    ) -> Any:
        """Iterate ``(sockets, owners)`` over batches of consecutive whole snapshots, in time order.

        ``columns``: the socket columns wanted (``ts``, ``host``, ``sock_id`` always come);
        ``owners``: also the ``owners`` rows of the batch's sockets (else ``None``);
        ``batch_rows``: rows per batch for in-memory sockets (default ``sockstore.BATCH_ROWS``; a
        capture on disk gives one Parquet row group per batch). Categorical columns carry each
        batch's own categories.
        """
        return self._socket_rows().batches(columns, owners, batch_rows)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per capture for ``key`` (forgotten when sockets/owners change):
        the analyses share one pass over the socket rows this way."""
        memo = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    def _replace(self, **changes: Any) -> Capture:
        """A copy with some frames replaced; socket rows stay where they are (not read)."""
        values = {
            f.name: self.__dict__.get(f.name) for f in fields(self) if f.name not in _ROW_NAMES
        }
        values.update({k: v for k, v in changes.items() if k not in _ROW_NAMES})
        rows = changes.get("_rows", self._socket_rows())
        return Capture(sockets=rows, owners=rows, **values)

    def _one(self, column: str, what: str) -> Any:
        values = self.meta[column].dropna().unique()
        if len(values) == 0:
            raise CaptureError(self.path, f"no snapshot records its {what}")
        if len(values) > 1:
            shown = ", ".join(str(v) for v in sorted(values, key=str))
            raise CaptureError(self.path, f"snapshots disagree on {what}: {shown}")
        return values[0]

    @property
    def page_size_bytes(self) -> int:
        """The capture's page size (from meta.txt; an error if snapshots disagree)."""
        return int(self._one("page_size_bytes", "page size"))

    @property
    def cpus(self) -> int:
        """The capture's online CPU count (from meta.txt; an error if snapshots disagree)."""
        return int(self._one("cpus", "CPU count"))

    @property
    def host(self) -> str:
        """The capture's host name (an error if the capture mixes hosts)."""
        return str(self._one("host", "host"))

    def select(
        self,
        phase: str | Sequence[str] | None = None,
        start: Any = None,
        end: Any = None,
    ) -> Capture:
        """The snapshots of ``phase`` (a label or labels) with ``start <= ts < end``, every frame cut.

        ``start``/``end`` take anything ``pd.Timestamp`` takes; naive times are UTC.
        """
        keep = pd.Series(True, index=self.meta.index)
        if phase is not None:
            labels = [phase] if isinstance(phase, str) else list(phase)
            keep &= self.meta["phase"].isin(labels).fillna(False).astype(bool)
        if start is not None:
            keep &= self.meta["ts"] >= _utc(start)
        if end is not None:
            keep &= self.meta["ts"] < _utc(end)
        chosen = self.meta[keep]
        one_host = self.meta["host"].nunique(dropna=False) <= 1
        pairs = pd.MultiIndex.from_frame(chosen[["ts", "host"]].astype({"host": "string"}))
        snapshots = set(chosen["snapshot"].dropna())
        out: dict[str, Any] = {}
        rows = self._socket_rows()
        if rows.on_disk:
            out["_rows"] = rows.restrict(None if one_host else pairs, chosen["ts"])
        for name in FRAMES:
            if rows.on_disk and name in _ROW_NAMES:
                continue
            frame = getattr(self, name)
            if name == "phases":
                out[name] = (
                    frame
                    if phase is None
                    else frame[frame["phase"].isin(labels)].reset_index(drop=True)
                )
            elif name == "problems":
                mask = frame["snapshot"].isna() | frame["snapshot"].isin(snapshots)
                out[name] = frame[mask.astype(bool)].reset_index(drop=True)
            elif one_host:  # the common case: the start time alone names the snapshot
                out[name] = frame[frame["ts"].isin(chosen["ts"])].reset_index(drop=True)
            else:
                key = pd.MultiIndex.from_frame(frame[["ts", "host"]].astype({"host": "string"}))
                out[name] = frame[key.isin(pairs)].reset_index(drop=True)
        if not rows.on_disk:
            out["_rows"] = rows.restrict(out.pop("sockets"), out.pop("owners"))
        return self._replace(**out)


class _SocketFrame:
    """``Capture.sockets`` / ``Capture.owners``: the frame, read from the socket rows' source.

    Setting a DataFrame keeps the rows in memory; setting a ``sockstore`` source (as ``load`` does)
    sets both attributes. Either way the capture's memo is forgotten."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        rows = obj.__dict__["_rows"]
        if rows.on_disk and rows.rows >= LARGE_READ_ROWS and not obj.__dict__.get("_warned"):
            obj.__dict__["_warned"] = True
            warnings.warn(
                f"tcpmem: Capture.{self.name} reads all {rows.rows:,} socket rows from disk into "
                f"memory (~{rows.rows * 250 / 1e9:.1f} GB) on every access; "
                "Capture.socket_batches(columns) reads them a batch of snapshots at a time",
                stacklevel=2,
            )
        sockets, owners = rows.frames()
        return sockets if self.name == "sockets" else owners

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__.pop("_memo", None)
        if isinstance(value, sockstore.MemoryRows | sockstore.DiskRows):
            obj.__dict__["_rows"] = value
            return
        old = obj.__dict__.get("_rows")
        if isinstance(old, sockstore.MemoryRows):
            sockets, owners = old.sockets, old.owners
        elif old is not None and self.name == "sockets":
            sockets, owners = None, old.frames()[1]
        else:
            sockets, owners = (old.frames()[0] if old is not None else None), None
        if self.name == "sockets":
            sockets = value
        else:
            owners = value
        obj.__dict__["_rows"] = sockstore.MemoryRows(sockets, owners)


Capture.sockets = _SocketFrame("sockets")  # type: ignore[assignment]
Capture.owners = _SocketFrame("owners")  # type: ignore[assignment]


# Capture's fields are schema.FRAMES (tests/test_model.py checks it).
