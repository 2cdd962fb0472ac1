"""The README quotes what the bundled sample shows; those figures must be what the library computes."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import pytest

import tcpmemlib as t
from tcpmemlib.analysis.process import busiest_snapshot

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


def _real(name: str) -> Path:
    """A real-server capture (tests/test_analysis_realserver.py says where they come from)."""
    for p in (ROOT / "data" / "real" / f"{name}.tar.gz",):
        if p.is_file():
            return p
    env = os.environ.get("TCPMEM_REAL_CAPTURES")
    if env and (Path(env) / name / f"{name}.tar.gz").is_file():
        return Path(env) / name / f"{name}.tar.gz"
    pytest.skip(f"real-server capture {name} not in data/real/ or $TCPMEM_REAL_CAPTURES")


def test_real_server_figures():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before, after = (t.load_capture(_real(n)) for n in ("redis-before", "redis-after"))
        nginx = t.load_capture(_real("nginx-idle"))
    c = t.compare(before, after)
    f = c.verdict.figures
    assert c.matched.startswith("phase slow")
    _quoted("in the `slow` phase of both, kernel socket memory fell{}", "")
    _quoted("fell {:.1f} MiB ->", f["kernel_socket_bytes_before"] / MIB)
    _quoted("-> {:.1f} MiB, 200 connections", f["kernel_socket_bytes_after"] / MIB)
    _quoted("held ~{:.1f} MiB each", f["sending_w_p50_before_bytes"] / MIB)
    _quoted("~{:.1f} KiB each after", f["sending_w_p50_after_bytes"] / 1024)
    rss = c.by_process.set_index(["comm", "metric"]).loc[("redis-server", "rss_bytes")]
    _quoted("RSS rose {:.1f} MiB ->", float(rss["before"]) / MIB)
    _quoted("-> {:.1f} MiB (its client", float(rss["after"]) / MIB)
    _quoted("owners' RSS {:.1f} MiB ->", f["total_cost_bytes_before"] / MIB)
    _quoted("-> {:.1f} MiB, no saving", f["total_cost_bytes_after"] / MIB)
    assert c.verdict.label == "moved into the application"
    procs = t.by_process(nginx)
    moment, why = busiest_snapshot(procs)
    assert "most connections" in why
    rows = procs[(procs["ts"] == moment) & (procs["comm"] == "nginx")]
    for pid, conns in zip(rows["pid"], rows["connections"], strict=True):
        if int(conns):
            _quoted("{}", f"nginx (pid {int(pid)}) {int(conns)}")
