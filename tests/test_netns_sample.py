"""data/sample-netns.tar.gz (the container case, #12): what data/README.md says it holds is what the
library computes from it. A real capture (see data/README.md); no root needed to read it."""

from __future__ import annotations

import re
import shutil
import tarfile
from pathlib import Path

import pytest

import tcpmemlib
from tcpmemlib.analysis import namespaces as N

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample-netns.tar.gz"
MIB = 1 << 20
LAB_NETNS, LAB_NAME, SERVER, CLIENT = 4026532174, "tcpmem-lab-26931", 27041, 27042
SEND_BACKLOG_SNAPSHOT = "20261204T221748.520603614Z"


@pytest.fixture(scope="module")
def cap() -> tcpmemlib.Capture:
    return tcpmemlib.load_capture(SAMPLE, cache=False)


def _section() -> str:
    text = (ROOT / "data" / "README.md").read_text()
    block = text.split("## The container case: `sample-netns.tar.gz`", 1)[1].split("\n## ", 1)[0]
    return re.sub(r"\s+", " ", block)


def _quoted(text: str) -> None:
    assert text in _section(), f"data/README.md says something else than {text!r}"


def test_namespaces_and_their_sockets(cap: tcpmemlib.Capture) -> None:
    per_snapshot = cap.netns.groupby("ts").size()
    phases = cap.meta.set_index("ts")["phase"]
    assert list(per_snapshot) == [1 if phases[ts] == "baseline" else 2 for ts in per_snapshot.index]
    lab = cap.netns[cap.netns["netns"] == LAB_NETNS]
    assert set(lab["name"]) == {LAB_NAME} and set(lab["pid"]) == {SERVER}
    assert not lab["own"].any() and lab["read"].all() and set(lab["tcp_inuse"]) == {601}
    own = cap.netns[cap.netns["own"].astype(bool)]
    assert set(own["netns"]) == {4026531833} and set(own["tcp_inuse"]) == {1}
    assert set(own["tcp_tw"]) == {328}
    _quoted("inode 4026531833: 1 TCP socket in use and 328 TIME-WAIT sockets")
    sockets = cap.sockets
    mine = sockets[sockets["netns"] == LAB_NETNS]
    assert set(mine.groupby("ts").size()) == {601}
    owners = cap.owners[cap.owners["sock_id"].isin(mine["sock_id"])]
    assert set(owners["pid"]) == {SERVER, CLIENT} and owners["sock_id"].nunique() == len(mine)
    _quoted(f"`{LAB_NAME}` (inode {LAB_NETNS}): `tcpmem-server` pid {SERVER}")


def test_nothing_unseen(cap: tcpmemlib.Capture) -> None:
    u = N.unseen(cap)
    assert (u["unseen_sockets"] == 0).all() and (u["namespaces_not_read"] == 0).all()
    lab = u[u["phase"] != "baseline"]
    assert set(lab["tcp_alloc"]) == {602} and set(lab["listed_full_sockets"]) == {602}
    bn = N.by_namespace(cap)
    own = bn[bn["own"].astype(bool) & (bn["phase"] != "baseline")]
    assert set(own["full_sockets"]) == {1}
    _quoted("(602 from `idle` on); the host's own ss listed 1 of them")


def test_attribution_across_the_namespace_boundary(cap: tcpmemlib.Capture) -> None:
    bp = tcpmemlib.by_process(cap)
    server = bp[bp["pid"] == SERVER].set_index("ts")
    recv = server[server["phase"] == "recv_backlog"]["buffer_bytes"]
    assert set(recv) == {300 * 69632}
    _quoted(f"`tcpmem-server` holds {300 * 69632 / MIB:.1f} MiB (300 × 69632 bytes")
    bn = N.by_namespace(cap)
    lab = bn[(bn["netns"] == LAB_NETNS) & (bn["phase"] == "send_backlog")]
    peak = lab.loc[lab["buffer_bytes"].astype("int64").idxmax()]
    at = bp[bp["ts"] == peak["ts"]].set_index("pid")
    _quoted(f"the lab's namespace holds {peak['buffer_bytes'] / MIB:.1f} MiB")
    _quoted(f"{at.loc[SERVER, 'buffer_bytes'] / MIB:.1f} MiB of it in the server's send queues")
    _quoted(f"{at.loc[CLIENT, 'buffer_bytes'] / MIB:.1f} MiB in the clients' receive queues")
    assert at.loc[SERVER, "buffer_bytes"] + at.loc[CLIENT, "buffer_bytes"] == peak["buffer_bytes"]
    v = N.verdict(cap)
    assert v.label == "all namespaces read"
    assert f"{peak['buffer_bytes'] / MIB:.1f} MiB of it in {LAB_NAME} (pid {SERVER})" in v.text


def test_container_and_reconcile(cap: tcpmemlib.Capture) -> None:
    bc = N.by_container(cap)
    lab = bc[bc["netns_names"] == LAB_NAME]
    assert set(lab["container"]) == {"/process_api/fbe321332b27c28888593ec2969cb119"}
    assert set(lab["cgroup_sock_key"]) == {"kmem.tcp.usage_in_bytes"}
    assert set(lab["cgroup_sock_bytes"]) == {0}
    _quoted("`/process_api/fbe321332b27c28888593ec2969cb119`")
    r = tcpmemlib.reconcile(cap)
    assert r.verdict.label == "transient gaps"
    out = r.by_snapshot
    worst = out.loc[out["gap_bytes"].abs().idxmax()]
    assert worst["phase"] == "send_backlog"
    _quoted(f"Σ skmem ({worst['skmem_sum_bytes'] / MIB:.1f} MiB) is")
    _quoted(f"{worst['gap_bytes'] / MIB:.1f} MiB below the sockstat read before ss")
    _quoted(f"({worst['sockstat_mem_bytes'] / MIB:.1f} MiB)")
    _quoted(f"({worst['sockstat_after_bytes'] / MIB:.1f} MiB right after the host's ss")
    # the lab namespace's own sockstat, read right before ss ran there (its mem is box-wide)
    snap = cap.meta.set_index("ts").at[worst["ts"], "snapshot"]
    with tarfile.open(SAMPLE) as tar:
        member = tar.extractfile(f"{snap}/sockstat.ns{LAB_NETNS}.txt")
        assert member is not None
        line = next(ln for ln in member.read().decode().splitlines() if ln.startswith("TCP:"))
    words = line.split()
    pages = int(words[words.index("mem") + 1])
    _quoted(f"{pages * 4096 / MIB:.1f} MiB when the lab's namespace was read")


def test_a_capture_mixing_collector_versions(small: Path, tmp_path: Path) -> None:
    """Snapshots of collector 1 (one namespace, no netns.txt) and of collector 3 (every namespace)
    in one capture: each collector-1 snapshot is its own namespace, the others list theirs."""
    mixed = tmp_path / "mixed"
    shutil.copytree(small, mixed)
    with tarfile.open(SAMPLE) as tar:
        names = [m for m in tar.getmembers() if m.name.startswith(SEND_BACKLOG_SNAPSHOT + "/")]
        tar.extractall(mixed, members=names, filter="data")
    cap = tcpmemlib.load_capture(mixed, cache=False)
    assert len(cap.meta) == 3
    bn = N.by_namespace(cap)
    per_snapshot = bn.groupby("ts", observed=True).size()
    assert list(per_snapshot) == [1, 1, 2]
    old = bn[bn["netns"].isna()]
    assert len(old) == 2 and old["own"].all() and old["read"].all()
    assert set(bn["netns"].dropna()) == {4026531833, LAB_NETNS}
    bp = tcpmemlib.by_process(cap)
    per_ts = bn.groupby("ts", observed=True)["tcp_sockets"].sum()
    assert list(per_ts) == list(bp.groupby("ts", observed=True)["sockets"].sum())
    u = N.unseen(cap)
    assert list(u["namespaces"]) == [1, 1, 2]
