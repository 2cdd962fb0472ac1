"""A workload's capture as tcpmemlib loads it, side by side with its ground truth (``truth.json``),
snapshot by snapshot: the i-th snapshot of the capture is the i-th of ``truth["snapshots"]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import tcpmemlib

SKMEM_HELD = ("r", "w", "f")  # tcpmemlib's buffer_bytes: Σ r + w + f (rb/tb are limits)


def _port(addr: str) -> int | None:
    port = addr.rsplit(":", 1)[-1]
    return int(port) if port.isdigit() else None


@dataclass
class Loaded:
    truth: dict[str, Any]
    capture: Any
    _by_process: pd.DataFrame | None = field(default=None, repr=False)

    @classmethod
    def load(cls, capture_dir: Path, truth: dict[str, Any], cache: bool = True) -> Loaded:
        """``truth``: a workload's ``truth.json``, or a bundled sample's ``<name>.truth.json`` (whose
        ``snapshots`` are summary rows: ``readings`` does not apply to it)."""
        loaded = cls(truth, tcpmemlib.load_capture(capture_dir, cache=cache))
        n_cap, n_truth = len(loaded.ts), len(truth["snapshots"])
        if n_cap != n_truth:
            raise AssertionError(
                f"{capture_dir}: {n_cap} snapshots loaded, {n_truth} in truth.json"
            )
        return loaded

    @property
    def ts(self) -> list[pd.Timestamp]:
        return sorted(self.capture.meta["ts"].drop_duplicates())

    def phase_of(self, i: int) -> str:
        return self.truth["snapshots"][i]["phase"]

    def indices(self, *phases: str) -> list[int]:
        return [i for i, s in enumerate(self.truth["snapshots"]) if s["phase"] in phases]

    def readings(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The ground truth read right before and right after snapshot ``i``."""
        s = self.truth["snapshots"][i]
        return s["before"], s["after"]

    @property
    def by_process(self) -> pd.DataFrame:
        if self._by_process is None:
            self._by_process = tcpmemlib.by_process(self.capture)
        return self._by_process

    def process_rows(self, i: int) -> pd.DataFrame:
        bp = self.by_process
        return bp[bp["ts"] == self.ts[i]]

    def process_row(self, i: int, pid: int) -> pd.Series:
        rows = self.process_rows(i)
        rows = rows[rows["pid"] == pid]
        if len(rows) != 1:
            raise AssertionError(f"snapshot {i}: {len(rows)} by_process rows for pid {pid}")
        return rows.iloc[0]

    def rss_bytes(self, i: int, pid: int) -> int:
        p = self.capture.processes
        rows = p[(p["ts"] == self.ts[i]) & (p["pid"] == pid)]
        if len(rows) != 1:
            raise AssertionError(f"snapshot {i}: {len(rows)} ps rows for pid {pid}")
        return int(rows["rss_bytes"].iloc[0])

    def sockets_at(self, i: int) -> pd.DataFrame:
        s = self.capture.sockets
        return s[s["ts"] == self.ts[i]]

    def sysctl(self, name: str) -> str:
        s = self.capture.sysctl
        values = s[s["name"] == name]["value"].astype(str).unique()
        if len(values) != 1:
            raise AssertionError(f"{name}: {list(values)} in the capture")
        return " ".join(values[0].split())


def held_bytes(sockets: list[dict[str, Any]]) -> int:
    """Σ r + w + f over ground-truth ss rows (tcpmemlib's ``buffer_bytes``)."""
    return sum(s["skmem"].get(k, 0) for s in sockets for k in SKMEM_HELD)


def by_peer_port(sockets: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {p: s for s in sockets if (p := _port(s["peer"])) is not None}
