"""Helpers for tests that start tcpmemlib's worker processes (a module of helpers, not tests)."""

from __future__ import annotations

from pathlib import Path


def worker_children() -> list[int]:
    """Children of this process that are tcpmemlib workers (none should outlive a run or a load)."""
    found = []
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                if b"tcpmemlib.workers" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
            except OSError:
                continue
    return found
