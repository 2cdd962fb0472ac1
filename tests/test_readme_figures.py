"""The README quotes what the bundled sample shows; those figures must be what the library computes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tcpmemlib as t

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20


@pytest.fixture(scope="module")
def sample():
    return t.load_capture(ROOT / "data" / "sample.tar.gz")


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## What the bundled sample shows", 1)[1].split("\n## ", 1)[0]


def _quoted(fmt: str, value: float) -> None:
    block = re.sub(r"\s+", " ", _readme_block())
    assert fmt.format(value) in block, f"README says something else than {fmt.format(value)!r}"


def test_q1_figures(sample):
    f = t.where_is_it(sample).verdict.figures
    _quoted("{:.1f} MiB in sockstat", f["peak_sockstat_tcp_mem_bytes"] / MIB)
    _quoted("r+w+f: {:.1f} MiB", f["peak_skmem_buffer_bytes"] / MIB)
    _quoted("RSS moved by {:.0f} B", f["delta_owner_rss_bytes"])
    _quoted("rose by {:.0f} MiB", f["delta_unlisted_bytes"] / MIB)


def test_q2_figures(sample):
    bp = t.by_process(sample)
    top = bp.loc[bp["buffer_bytes"].astype("int64").idxmax()]
    assert top["comm"] == "tcpmem-server"
    _quoted("held {:.1f} MiB", int(top["buffer_bytes"]) / MIB)
    _quoted("in {} sockets", int(top["sockets"]))
    f = t.compare(sample.select(phase="send_backlog"), sample.select(phase="tuned")).verdict.figures
    _quoted("from {:.1f} MiB", f["kernel_socket_bytes_before"] / MIB)
    _quoted("to {:.1f} MiB under", f["kernel_socket_bytes_after"] / MIB)


def test_q3_figures(sample):
    g = t.growth(sample).by_phase.set_index("phase")
    for phase in ("idle", "trickle"):
        assert g.at[phase, "label"] == "not held while idle"
    assert g.at["send_backlog", "label"] == "grows with queued data"
    _quoted("about {:.1f} KiB of slab", t.idle_cost(sample).per_socket_bytes / 1024)
