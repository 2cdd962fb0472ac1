"""The verdicts on real server software (issue 11): Redis 7 pub/sub with 200 of 1000 subscribers
that stop reading, captured before and after lowering tcp_wmem max 4 MiB -> 256 KiB, and nginx 1.22
with 1000 idle keep-alive clients on 2 workers.

The captures are made by collect.sh around the real servers (tests/realserver, each with a
``truth.json`` read right before and after every snapshot: CLIENT LIST omem, INFO memory, /proc RSS,
ss per pid). They are looked up as ``data/real/<name>.tar.gz``, then
``$TCPMEM_REAL_CAPTURES/<name>/<name>.tar.gz``; the figures asserted here are those ground truths
(slow phase: 200 slow sockets, w 3,971,200 B at tb 4,194,304 B before, w 270,915 B at tb 262,144 B
after; redis-server's RSS ~0.6 -> ~1.4 GiB; nginx workers 496 and 504 established connections).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

import tcpmemlib as tm
from tcpmemlib.capture import Capture

ROOT = Path(__file__).resolve().parents[1]
MIB = float(1 << 20)
KIB = 1024.0
NAMES = ("redis-before", "redis-after", "nginx-idle")


def _find(name: str) -> Path | None:
    candidates = [ROOT / "data" / "real" / f"{name}.tar.gz"]
    env = os.environ.get("TCPMEM_REAL_CAPTURES")
    if env:
        candidates.append(Path(env) / name / f"{name}.tar.gz")
    return next((p for p in candidates if p.is_file()), None)


def _truth(path: Path) -> dict[str, Any] | None:
    truth = path.parent / "truth.json"
    return json.loads(truth.read_text()) if truth.is_file() else None


@pytest.fixture(scope="module")
def real() -> dict[str, Capture]:
    found = {n: _find(n) for n in NAMES}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        pytest.skip(
            f"real-server captures {missing} not found in data/real/ or $TCPMEM_REAL_CAPTURES"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {n: tm.load_capture(p) for n, p in found.items() if p is not None}


@pytest.fixture(scope="module")
def redis_compare(real: dict[str, Capture]) -> tm.compare:
    return tm.compare(real["redis-before"], real["redis-after"])


# ------------------------------------------------------------------------------------ compare
def test_compare_sees_the_cut_in_the_slow_phase(redis_compare) -> None:
    c = redis_compare
    assert c.matched.startswith("phase slow")
    k = c.system.set_index("metric").loc["kernel_socket_bytes"]
    assert bool(k["significant"])
    assert float(k["ratio"]) < 0.2  # 7x and more
    s = c.sockets.set_index("metric")
    # every slow socket from ~3.8 MiB (at the 4 MiB tcp_wmem ceiling) to ~265 KiB
    assert float(s.at["sending_connections", "before"]) == pytest.approx(200, abs=2)
    assert float(s.at["sending_connections", "after"]) == pytest.approx(200, abs=2)
    assert float(s.at["sending_w_p50_bytes", "before"]) == pytest.approx(3_971_200, rel=0.05)
    assert float(s.at["sending_w_p50_bytes", "after"]) == pytest.approx(270_915, rel=0.05)
    assert float(s.at["sending_tb_p50_bytes", "before"]) == 4_194_304
    assert float(s.at["sending_tb_p50_bytes", "after"]) == 262_144
    assert float(s.at["at_sndbuf_limit", "before"]) == pytest.approx(200, abs=2)
    # "max per connection" is the largest socket, not a per-snapshot average
    assert float(s.at["socket_buffer_max_bytes", "before_peak"]) >= 3_971_200
    text = c.verdict.text
    assert "200 connections held ~3.8 MiB each" in text
    assert "the tcp_wmem ceiling" in text
    each = re.search(r"200 held ~(\d+\.\d) KiB each \(200 at their send limit", text)
    assert each is not None and float(each[1]) * 1024 == pytest.approx(270_915, rel=0.05)


def test_compare_says_the_memory_moved_into_redis(redis_compare) -> None:
    c = redis_compare
    assert c.verdict.label == "moved into the application"
    p = c.by_process.set_index(["comm", "metric"])
    rss = p.loc[("redis-server", "rss_bytes")]
    assert 500 * MIB < float(rss["before"]) < 700 * MIB  # truth: 619 -> 562 MiB
    assert 1300 * MIB < float(rss["after"]) < 1550 * MIB  # truth: 1458 -> 1396 MiB
    kernel = p.loc[("redis-server", "buffer_bytes")]
    assert float(kernel["before"]) == pytest.approx(757.8 * MIB, rel=0.03)
    assert float(kernel["after"]) == pytest.approx(52.3 * MIB, rel=0.05)
    sysm = c.system.set_index("metric")
    assert float(sysm.at["total_cost_bytes", "delta"]) > 0  # no saving
    assert "redis-server's RSS rose" in c.verdict.text
    assert "no saving" in c.verdict.text
    # the per-process table leads with what changed most: redis-server
    assert c.by_process["comm"].iloc[0] == "redis-server"


# ------------------------------------------------------------------------------------ where
def test_where_says_redis_buffers_in_user_space(real: dict[str, Capture]) -> None:
    w = tm.where_is_it(real["redis-before"])
    assert w.verdict.label == "outside RSS and buff/cache"
    assert w.verdict.figures["owner_rss_follows_socket_load"] == 1.0
    assert "The socket owners' RSS rose with the socket load" in w.verdict.text
    why = w.places.set_index("place").at["RSS of socket owners", "why"]
    assert "rose with the socket load" in why and "does not grow" not in why
    # after the cut the kernel memory stays small while Redis' RSS grows ~0.9 GB: still said
    w = tm.where_is_it(real["redis-after"])
    assert w.verdict.figures["owner_rss_growth_bytes"] > 700 * MIB
    text = w.verdict.text
    assert "RSS rose with the socket load" in text or "RSS grew by" in text
    assert "user space" in text and "The operator pays for both" in text


def test_where_on_idle_nginx_holds_no_buffers(real: dict[str, Capture]) -> None:
    w = tm.where_is_it(real["nginx-idle"])
    assert w.verdict.label == "no socket buffers"
    assert w.verdict.figures["max_skmem_buffer_bytes"] == 0
    assert "Socket buffers held up to" not in w.verdict.text


# ------------------------------------------------------------------------------------ false alarms
def test_no_false_alarms_on_the_real_captures(real: dict[str, Capture]) -> None:
    for name, cap in real.items():
        r = tm.reconcile(cap)
        # sockstat and ss are read at different moments under ~500 MiB/s: never "unexplained"
        assert r.verdict.label != "unexplained gap", (name, r.verdict.text)
        p = tm.pressure(cap)
        assert p.verdict.label in ("no pressure", "queues compacted"), (name, p.verdict.text)
        g = tm.growth(cap)
        labels = dict(zip(g.by_phase["phase"], g.by_phase["label"], strict=True))
        for phase in ("connect", "drained", "baseline", "idle", "closed"):
            assert labels.get(phase, "no connections") in ("not held while idle", "no connections")
    g = tm.growth(real["redis-before"]).by_phase.set_index("phase")
    assert g.at["slow", "label"] == "grows with queued data"
    assert float(g.at["slow", "connections_with_buffer"]) == pytest.approx(400, abs=4)
