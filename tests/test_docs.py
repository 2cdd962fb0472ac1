"""The repository stands alone: it cites no document outside it (kernel facts: docs/kernel.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_repository_cites_no_outside_document():
    out = subprocess.run(
        ["git", "-C", str(ROOT), "grep", "-n", "-I", "-e", "kernel-" + "accounting", "-e",
         "reference " + "§", "-e", "reference " + "doc", "-e", "shared/" + "reference", "-e",
         "steering " + "repo", "--", "."],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.stdout == "", out.stdout
