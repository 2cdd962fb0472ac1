"""Hand-written captures for the analysis tests: real snapshot directories (the files collect.sh
writes, with made-up but well-formed content) whose every number is known.

The two-snapshot capture (phases ``idle`` then ``backlog``), per snapshot:

| socket | owners | idle | backlog |
|---|---|---|---|
| LISTEN 127.0.0.1:5000 | srv pid 100 and srv pid 101 (shared) | 0 | 0 |
| ESTAB :5000 <- :40000 | srv pid 101 | 0 | Recv-Q 65536, r68032 f1600 |
| ESTAB :40000 -> :5000 | hostile name, pid 200 | 0 | 0 |
| ESTAB :5000 <- :40002 (orphan) | none | (absent) | Send-Q 8000, w8192 |
| TIME-WAIT :40004 -> :5000 | none | no skmem | no skmem |

sockstat TCP mem: 0 pages (idle) and 19 pages (backlog) = Σ(r+w+f) exactly; alloc 3 and 4.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from tcpmemlib import load_capture
from tcpmemlib.capture import Capture

HOSTILE = "<img src=x onerror=alert(1)>"
PAGE = 4096

META = """collector_version=1
hostname=synth
kernel=6.18.0-synthetic
ss_version=ss utility, iproute2-6.1.0
page_size=4096
cpus=2
start={start}
end={start}
user=root
uid=0
ss_oneline=1
args=0
interval_s=10
cgroup_version=2
"""
SOCKSTAT = """sockets: used 5
TCP: inuse {alloc} orphan 0 tw 1 alloc {alloc} mem {pages}
UDP: inuse 0 mem 0
UDPLITE: inuse 0
RAW: inuse 0
FRAG: inuse 0 memory 0
"""
SOCKSTAT6 = (
    "TCP6: inuse 0\nUDP6: inuse 0\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n"
)
MEMINFO = """MemTotal:       {total} kB
MemFree:        {free} kB
MemAvailable:   {avail} kB
Buffers:            1000 kB
Cached:            50000 kB
SwapCached:            0 kB
AnonPages:         40000 kB
Slab:              30000 kB
SReclaimable:      12000 kB
SUnreclaim:        18000 kB
KernelStack:        2000 kB
PageTables:         1000 kB
SecPageTables:         0 kB
Percpu:             1000 kB
VmallocUsed:        5000 kB
"""
PS = """  PID  PPID   RSS    VSZ   UID COMMAND
    1     0  1000   2000     0 init
  100     1 10000  20000     0 srv
  101   100 12000  20000     0 srv
  200     1  5000  10000     0 {hostile}
"""
SYSCTL = """net.ipv4.tcp_mem = 1000\t2000\t3000
net.ipv4.tcp_rmem = 4096\t131072\t33554432
net.ipv4.tcp_wmem = 4096\t16384\t4194304
net.core.mem_pcpu_rsv = 256
net.core.rmem_max = {rmem_max}
"""
NETSTAT = """TcpExt: PruneCalled RcvPruned TCPMemoryPressures TCPMemoryPressuresChrono TCPRcvQDrop
TcpExt: {prune} 0 0 0 0
IpExt: InOctets OutOctets
IpExt: {octets} {octets}
"""
PROTOCOLS = """protocol  size sockets  memory press maxhdr  slab module     cl co di ac io in de sh ss gs se re bi br ha uh gp em
TCPv6     2432      0   13358   no     192   yes  kernel      y  y  y  y  y  y  y  y  y  y  y  y  n  y  y  y  y  y
TCP       2304      4   {pages}   no     192   yes  kernel      y  y  y  y  y  y  y  y  y  y  y  y  n  y  y  y  y  y
"""
SLABINFO = """slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
TCP                   13     13   2368   13    8 : tunables    0    0    0 : slabdata      1      1      0
sock_inode_cache      19     19    832   19    4 : tunables    0    0    0 : slabdata      1      1      0
dentry                21     21    192   21    1 : tunables    0    0    0 : slabdata      1      1      0
filp                  21     21    192   21    1 : tunables    0    0    0 : slabdata      1      1      0
eventpoll_epi         32     32    128   32    1 : tunables    0    0    0 : slabdata      1      1      0
"""
SLAB_ALIASES = "tcp_bind_bucket :A-0000128\ntcp_bind2_bucket :A-0000128\neventpoll_epi :A-0000128\n"
ZONEINFO = """Node 0, zone   Normal
  pages free     1000
  pagesets
    cpu: 0
              count:    {pcp}
              high:     500
              batch:    63
    cpu: 1
              count:    {pcp}
              high:     500
              batch:    63
"""
CGROUPS = "pid\t100\t/app.slice\npid\t101\t/app.slice\npid\t200\t/cli.slice\nstat\t/app.slice\tsock\t{sock}\n"


def _skmem(r: int = 0, f: int = 0, w: int = 0, rb: int = 131072, tb: int = 16384) -> str:
    return f"skmem:(r{r},rb{rb},t0,tb{tb},f{f},w{w},o0,bl0,d0)"


def _ss(backlog: bool, rb_srv: int = 131072) -> str:
    srv = '(("srv",pid=100,fd=3),("srv",pid=101,fd=3))'
    rq, r, f = (65536, 68032, 1600) if backlog else (0, 0, 0)
    lines = [
        f"LISTEN 0 128 127.0.0.1:5000 0.0.0.0:* users:{srv} ino:10 sk:1 cgroup:/app.slice <-> "
        + _skmem(rb=rb_srv),
        f'ESTAB {rq} 0 127.0.0.1:5000 127.0.0.1:40000 users:(("srv",pid=101,fd=5)) ino:11 sk:2 '
        f"cgroup:/app.slice <-> {_skmem(r=r, f=f, rb=rb_srv)} bytes_acked:1 bytes_received:{rq}",
        f'ESTAB 0 0 127.0.0.1:40000 127.0.0.1:5000 users:(("{HOSTILE}",pid=200,fd=4)) ino:12 sk:3 '
        f"cgroup:/cli.slice <-> {_skmem()} bytes_acked:{rq + 1} bytes_received:0",
        "TIME-WAIT 0 0 127.0.0.1:40004 127.0.0.1:5000 timer:(timewait,59sec,0) ino:0 sk:5",
    ]
    if backlog:  # an orphan with unsent data: no owner
        lines.append(
            "ESTAB 0 8000 127.0.0.1:5000 127.0.0.1:40002 ino:0 sk:4 cgroup:/app.slice <-> "
            + _skmem(w=8192, rb=rb_srv)
        )
    return "\n".join(lines) + "\n"


def write_snapshot(
    root: Path,
    start: str,
    *,
    backlog: bool,
    sockets: bool = True,
    slabinfo: bool = True,
    rb_srv: int = 131072,
) -> None:
    """One snapshot directory under ``root`` (named by ``start``, an ISO time ending in Z)."""
    name = start.replace("-", "").replace(":", "")
    d = root / name
    d.mkdir(parents=True)
    pages = 19 if backlog else 0
    alloc = (4 if backlog else 3) if sockets else 0
    octets = 200_000 if backlog else 100_000
    files = {
        "meta.txt": META.format(start=start),
        "sockstat.txt": SOCKSTAT.format(pages=pages, alloc=alloc),
        "sockstat6.txt": SOCKSTAT6,
        "meminfo.txt": MEMINFO.format(
            total=1_000_000, free=800_000 - (68 if backlog else 0), avail=850_000
        ),
        "ps.txt": PS.format(hostile=HOSTILE),
        "sysctl.txt": SYSCTL.format(rmem_max=4194304 if rb_srv == 131072 else 32768),
        "netstat.txt": NETSTAT.format(prune=1 if backlog else 0, octets=octets),
        "snmp.txt": "Tcp: CurrEstab\nTcp: 3\n",
        "protocols.txt": PROTOCOLS.format(pages=pages),
        "slab_aliases.txt": SLAB_ALIASES,
        "zoneinfo.txt": ZONEINFO.format(pcp=10),
        "ss_tcp.txt": _ss(backlog, rb_srv) if sockets else "",
        "ss_udp.txt": "",
        "cgroups.txt": CGROUPS.format(sock=69632 if backlog else 0),
    }
    if slabinfo:
        files["slabinfo.txt"] = SLABINFO
    for fname, text in files.items():
        (d / fname).write_text(text)


T0 = "2026-11-25T10:00:00.000000000Z"
T1 = "2026-11-25T10:00:10.000000000Z"


def load(path: Path, **kw: object) -> Capture:
    """``load_capture`` without the cache, quiet about the files a test leaves out on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # files deliberately absent in some captures
        return load_capture(path, cache=False, **kw)  # type: ignore[arg-type]


def traffic_workload() -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    """Socket rows of three snapshots 10 s apart whose traffic is known: +200 B at the second,
    +40 B at the third (also used by tests/test_analysis_batches.py)."""
    ts = pd.to_datetime(
        ["2026-01-01 00:00:00", "2026-01-01 00:00:10", "2026-01-01 00:00:20"], utc=True
    )
    rows = [  # (snapshot, sk, bytes_received, bytes_acked)
        (0, "a", 100, None), (1, "a", 200, 100), (2, "a", 250, None),  # +200, then back: 0
        (0, "b", 5, 5), (2, "b", 1000, 0),  # absent at 1: no pair
        (1, "c", None, None), (2, "c", 40, 0),  # +40
    ]  # fmt: skip
    rows.sort(key=lambda r: r[0])
    s = pd.DataFrame(
        {
            "ts": [ts[i] for i, *_ in rows],
            "sk": pd.Categorical([k for _, k, *_ in rows]),
            "local_address": "127.0.0.1",
            "local_port": "80",
            "peer_address": "127.0.0.1",
            "peer_port": [k for _, k, *_ in rows],
            "bytes_received": pd.array([r for *_, r, _ in rows], dtype="Int64"),
            "bytes_acked": pd.array([a for *_, a in rows], dtype="Int64"),
        }
    )
    return s, ts
