"""The experiment runner: record a real capture of the lab going through every phase.

``python -m tcpmemlib.lab experiment -o data/`` runs collect.sh (one snapshot per call, ``-n 1``)
several times in each phase and writes ``phases.tsv`` (``<UTC ISO-8601>\\t<phase>``) at the capture
root at the start of each phase:

=================  ================================================================================
``baseline``       before the lab starts (the box as it is)
``idle``           N connections open, no traffic
``trickle``        ~0.25 Mbit/s in total over all connections, both directions, both sides reading
``recv_backlog``   the server stops reading; every client writes 64 KiB (``--recv-bytes``)
``send_backlog``   the clients stop reading; the server writes up to ``--send-cap`` per connection
``drained``        everybody reads everything; the queues go back to 0
``tuned``          reconnected with the server's SO_SNDBUF/SO_RCVBUF (``--tuned-buf``) set before
                   ``listen()``, then the same send_backlog: the limits cap what each socket holds
=================  ================================================================================

``--phases`` runs a subset (always in this order), and ``--sndbuf``/``--rcvbuf`` set the server's
buffers from the start: two runs of ``--phases send_backlog``, without and with them, make a
before/after pair of captures for ``compare`` (which averages over whole captures).

The last snapshot call adds ``-b``, so collect.sh itself bundles the capture (members
``phases.tsv`` and ``<snapshot>/...``, relative paths), moved to ``DIR/<name>.tar.gz``, and a description of the run (command, kernel, ss version, N, the
phase start times and what each process measured on its own sockets) is written to
``DIR/<name>.lab.json``.

``--netns`` runs the server and its clients inside a network namespace the runner creates
(``tcpmemlib.lab.netns``, named ``tcpmem-lab-<pid>``, deleted at the end): the container case. ss
on the host no longer lists the lab's sockets; collect.sh (collector_version >= 2, as root) reads
that namespace too (``ss_tcp.ns<inode>.txt.gz``), and ``<name>.lab.json`` records its name and
inode.

``--send-cap`` defaults to 1 MiB per connection: with N=1000 that is ~1 GiB of send queues, below
the default ``tcp_mem`` pressure threshold of a 24 GiB box (tcp_mem[1] = 1.46 GiB there), so the lab
does not push the whole machine into TCP memory pressure (which would change every other socket's
behaviour). The runner lowers the cap (and says so) when ``N × cap × 1.1`` plus what TCP already
holds would exceed 80 % of this box's ``tcp_mem[1]``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcpmemlib.errors import CaptureError
from tcpmemlib.lab.control import LabRun
from tcpmemlib.lab.netns import LabNetns

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_COLLECT = REPO_ROOT / "collect.sh"


def utc_now() -> str:
    """UTC ISO-8601 with microseconds and a ``Z`` suffix."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


PHASES = ("baseline", "idle", "trickle", "recv_backlog", "send_backlog", "drained", "tuned")
"""The phases, in order (``baseline`` is taken before the lab starts)."""


def _tcp_inuse() -> int:
    """TCP sockets in this network namespace, from /proc/net/sockstat{,6}: in use (IPv4 + IPv6)
    plus TIME-WAIT."""
    total = 0
    for name in ("sockstat", "sockstat6"):
        for words in _sockstat_lines(name):
            if words[0] in ("TCP:", "TCP6:"):
                for key in ("inuse", "tw"):  # tw (TIME-WAIT, v4+v6) is on the TCP: line only
                    if key in words:
                        total += int(words[words.index(key) + 1])
    return total


def _tcp_alloc() -> int:
    """TCP sockets allocated on the whole box, every network namespace (sockstat ``alloc``, not
    counting TIME-WAIT): what collect.sh, reading every namespace, captures besides this one's."""
    for words in _sockstat_lines("sockstat"):
        if words[0] == "TCP:" and "alloc" in words:
            return int(words[words.index("alloc") + 1])
    return 0


def _sockstat_lines(name: str) -> list[list[str]]:
    try:
        text = Path(f"/proc/net/{name}").read_text()
    except OSError:
        return []
    return [line.split() for line in text.splitlines() if line.split()]


@dataclass
class Experiment:
    """One run of the phases into ``capture_dir``."""

    out_dir: Path
    name: str = "sample"
    connections: int = 1000
    interval_s: float = 2.0
    snapshots_per_phase: int = 3
    address: str = "127.0.0.1"
    recv_bytes: int = 64 << 10
    send_cap: int = 1 << 20
    tuned_buf: int = 65536
    trickle_bits_per_s: int = 250_000
    timeout_s: float = 120.0
    collect: Path = DEFAULT_COLLECT
    log: list[dict[str, Any]] = field(default_factory=list)
    tcp_sockets_before: int = 0
    quiet_wait_s: float = 0.0
    quiet_max: int = 200
    phases: tuple[str, ...] = PHASES
    sndbuf: int | None = None  # server SO_SNDBUF from the start (None: kernel default)
    rcvbuf: int | None = None  # server SO_RCVBUF from the start
    netns: bool = False  # run the lab in a network namespace of its own (the container case)
    netns_name: str | None = None  # set while it runs
    netns_inode: int | None = None

    def __post_init__(self) -> None:
        unknown = [p for p in self.phases if p not in PHASES]
        if unknown or not self.phases:
            raise ValueError(f"phases must be a non-empty subset of {PHASES}, not {self.phases}")
        self.phases = tuple(p for p in PHASES if p in self.phases)  # always in the lab's order

    @property
    def capture_dir(self) -> Path:
        return self.out_dir / f".work-{self.name}" / self.name

    def _say(self, msg: str) -> None:
        print(f"[{utc_now()}] {msg}", file=sys.stderr, flush=True)

    def snapshot(self, bundle: bool = False) -> None:
        """One collect.sh snapshot into the capture directory (``-b``: then bundle them all)."""
        cmd = ["sh", str(self.collect), "-o", str(self.capture_dir), "-n", "1"]
        if bundle:
            cmd.append("-b")
        before = set(self._snapshots())
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise CaptureError(
                self.capture_dir, f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}"
            )
        new = sorted(set(self._snapshots()) - before)
        if len(new) != 1:
            raise CaptureError(
                self.capture_dir, f"{' '.join(cmd)} made {len(new)} snapshots, not 1"
            )
        snap = self.capture_dir / new[0]
        # The sample must be complete: the socket table and the sockstat counters are the point.
        for wanted in ("ss_tcp.txt", "sockstat.txt", "meminfo.txt", "ps.txt"):
            if not any((snap / f"{wanted}{gz}").is_file() for gz in ("", ".gz")):
                failed = [ln for ln in (snap / "meta.txt").read_text().splitlines() if "=" in ln]
                failed = [ln for ln in failed if ln.startswith(("failed=", "missing="))]
                raise CaptureError(snap, f"collect.sh wrote no {wanted}: {'; '.join(failed)}")

    def _snapshots(self) -> list[str]:
        return [p.name for p in self.capture_dir.iterdir() if p.is_dir() and p.name[:1].isdigit()]

    def phase(
        self,
        label: str,
        lab: LabRun | None,
        scenario: str | None,
        last: bool = False,
        **params: Any,
    ) -> None:
        """Mark the phase start, switch the lab, then take the phase's snapshots."""
        start = utc_now()
        with open(self.capture_dir / "phases.tsv", "a") as f:
            f.write(f"{start}\t{label}\n")
        entry: dict[str, Any] = {"phase": label, "start": start, "scenario": scenario}
        if lab is not None and scenario is not None:
            t0 = time.monotonic()
            result = lab.scenario(scenario, **params)
            entry.update(
                params=params,
                reached_after_s=round(time.monotonic() - t0, 3),
                server=result["server"],
                client=result["client"],
            )
            s = result["server"]
            self._say(
                f"{label}: reached in {entry['reached_after_s']} s; server "
                f"{s['established']} conns, inq {s['inq_sum']} B, outq {s['outq_sum']} B"
            )
        for i in range(self.snapshots_per_phase):
            if i:
                time.sleep(self.interval_s)
            self.snapshot(bundle=last and i == self.snapshots_per_phase - 1)
        entry["end_of_snapshots"] = utc_now()
        self.log.append(entry)

    def wait_quiet(self) -> None:
        """Wait (at most ``quiet_wait_s``) until the box holds at most ``quiet_max`` TCP sockets,
        so that other workloads' sockets do not swamp the capture (a shared test box): in this
        namespace (in use and TIME-WAIT) and box-wide (``alloc``: collect.sh reads every
        namespace)."""
        deadline = time.monotonic() + self.quiet_wait_s
        said = False

        def busy() -> bool:
            return _tcp_inuse() > self.quiet_max or _tcp_alloc() > self.quiet_max

        while busy() and time.monotonic() < deadline:
            if not said:
                self._say(
                    f"waiting up to {self.quiet_wait_s:g} s for the box to hold <= "
                    f"{self.quiet_max} TCP sockets (now {_tcp_inuse()}; {_tcp_alloc()} allocated "
                    "box-wide)"
                )
                said = True
            time.sleep(1.0)

    def effective_send_cap(self) -> int:
        """``send_cap``, lowered so that N × cap × 1.1 (truesize) stays under 80 % of tcp_mem[1]
        minus what TCP already holds: the lab must not push a shared box into memory pressure."""
        try:
            fields = Path("/proc/sys/net/ipv4/tcp_mem").read_text().split()
            page = os.sysconf("SC_PAGE_SIZE")
            pressure_bytes = int(fields[1]) * page
            used_pages = 0
            for line in Path("/proc/net/sockstat").read_text().splitlines():
                if line.startswith("TCP:"):
                    words = line.split()
                    used_pages = int(words[words.index("mem") + 1])
        except (OSError, IndexError, ValueError):
            return self.send_cap
        headroom = int(0.8 * pressure_bytes) - used_pages * page
        limit = max(0, int(headroom / 1.1 / max(1, self.connections)))
        if self.send_cap > limit:
            self._say(
                f"send cap lowered from {self.send_cap} to {limit} B/connection: TCP holds "
                f"{used_pages} pages and tcp_mem[1] is {pressure_bytes} B"
            )
            return limit
        return self.send_cap

    def run(self) -> Path:
        """Run every phase; return the bundle's path. The work directory is removed either way
        (a failed run leaves nothing half-made in ``out_dir``)."""
        if not self.collect.is_file():
            raise CaptureError(self.collect, "collect.sh not found (use --collect PATH)")
        work = self.capture_dir.parent
        if work.exists():
            shutil.rmtree(work)
        self.capture_dir.mkdir(parents=True)
        try:
            return self._run()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _run(self) -> Path:
        self.wait_quiet()
        send_cap = self.effective_send_cap()
        self.tcp_sockets_before = _tcp_inuse()
        if self.tcp_sockets_before > 200:
            self._say(
                f"note: {self.tcp_sockets_before} TCP sockets already exist on this box; they are "
                f"in the capture too (the lab's own are the ones of tcpmem-server/tcpmem-client)"
            )
        started = utc_now()
        lab_phases = [p for p in self.phases if p != "baseline"]
        if "baseline" in self.phases:
            self._say(f"baseline: {self.snapshots_per_phase} snapshots before the lab starts")
            self.phase("baseline", None, None, last=not lab_phases)
        pids: dict[str, int] = {}
        if lab_phases:
            pids = self._lab_phases(lab_phases, send_cap)
        # collect.sh -b wrote <capture_dir>.tar.gz (phases.tsv + the snapshot directories)
        made = self.capture_dir.with_name(f"{self.name}.tar.gz")
        if not made.is_file():
            raise CaptureError(made, "collect.sh -b did not write the bundle")
        bundle = self.out_dir / f"{self.name}.tar.gz"
        shutil.move(made, bundle)
        manifest = {
            "command": " ".join([Path(sys.executable).name, "-m", "tcpmemlib.lab", *sys.argv[1:]]),
            "started": started,
            "finished": utc_now(),
            "kernel": platform.release(),
            "ss_version": subprocess.run(
                ["ss", "-V"], capture_output=True, text=True, check=False
            ).stdout.strip(),
            "collect": str(self.collect),
            "collect_sha256": hashlib.sha256(self.collect.read_bytes()).hexdigest(),
            "tcp_sockets_before": self.tcp_sockets_before,
            "connections": self.connections,
            "address": self.address,
            "interval_s": self.interval_s,
            "snapshots_per_phase": self.snapshots_per_phase,
            "send_cap_bytes": send_cap,
            "recv_bytes_per_conn": self.recv_bytes,
            "tuned_buf_bytes": self.tuned_buf,
            "server_sndbuf_bytes": self.sndbuf,
            "server_rcvbuf_bytes": self.rcvbuf,
            "phase_order": list(self.phases),
            "netns": self.netns_name,
            "netns_inode": self.netns_inode,
            "trickle_bits_per_s": self.trickle_bits_per_s,
            **pids,
            "phases": self.log,
            "bundle": bundle.name,
            "bundle_bytes": bundle.stat().st_size,
        }
        (self.out_dir / f"{self.name}.lab.json").write_text(json.dumps(manifest, indent=1) + "\n")
        self._say(f"wrote {bundle} ({bundle.stat().st_size} bytes)")
        return bundle

    def _lab_phases(self, lab_phases: list[str], send_cap: int) -> dict[str, int]:
        """Start the lab (in a namespace of its own with ``netns``) and run ``lab_phases``; return
        its pids and port."""
        with contextlib.ExitStack() as stack:
            ns = stack.enter_context(LabNetns()) if self.netns else None
            if ns is not None:
                self.netns_name, self.netns_inode = ns.name, ns.inode
            lab = stack.enter_context(
                LabRun(
                    connections=self.connections,
                    address=self.address,
                    timeout_s=self.timeout_s,
                    sndbuf=self.sndbuf,
                    rcvbuf=self.rcvbuf,
                    netns=ns,
                )
            )
            where = f" in network namespace {ns.name} (inode {ns.inode})" if ns else ""
            self._say(
                f"lab up{where}: tcpmem-server pid {lab.server_pid}, tcpmem-client pid "
                f"{lab.client_pid}, port {lab.port}, {self.connections} connections"
            )
            pids = {"server_pid": lab.server_pid, "client_pid": lab.client_pid, "port": lab.port}
            steps: dict[str, tuple[str, dict[str, Any]]] = {
                "idle": ("idle", {}),
                "trickle": ("trickle", {"bits_per_s": self.trickle_bits_per_s}),
                "recv_backlog": ("recv_backlog", {"bytes_per_conn": self.recv_bytes}),
                "send_backlog": ("send_backlog", {"max_bytes_per_conn": send_cap}),
                "drained": ("drained", {}),
                "tuned": (
                    "tuned",
                    {
                        "sndbuf": self.tuned_buf,
                        "rcvbuf": self.tuned_buf,
                        "then": "send_backlog",
                        "max_bytes_per_conn": send_cap,
                    },
                ),
            }
            for i, label in enumerate(lab_phases):
                scenario, params = steps[label]
                self.phase(label, lab, scenario, last=i == len(lab_phases) - 1, **params)
        return pids
