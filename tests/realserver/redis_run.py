"""The Redis slow-subscriber workload, with collect.sh snapshots and ground truth.

    python -m realserver.redis_run --out DIR [--subscribers 1000] [--slow 200] [--per-sub-mib 6] ...

Runs in the current network namespace (``workloads.run_redis`` starts it inside one of its own with
``net.ipv4.tcp_wmem`` set). It starts Debian's ``redis-server`` on 127.0.0.1 (own config: no
persistence, ``client-output-buffer-limit pubsub 0 0 0`` so no subscriber is dropped), connects the
subscribers (every k-th one never reads after SUBSCRIBE), and goes through four phases, each marked in
``DIR/NAME/phases.tsv`` and captured by ``collect.sh -n 1`` snapshots about ``--interval`` s apart:

- ``connect``: the subscribers are connected and idle;
- ``load``: a publisher pushes ``--per-sub-mib`` MiB to the channel at ``--rate-mib-s`` (per
  subscriber); the slow subscribers' kernel send buffers fill to the tcp_wmem ceiling, then Redis's
  own output buffers (``omem``) hold the rest;
- ``slow``: publishing has stopped and the fast subscribers have read everything; the slow ones
  still hold their data (steady);
- ``drained``: the slow subscribers read everything; every queue is empty again.

Process names (comm): ``redis-server``, ``subscriber`` (every subscriber), ``publisher`` (this
driver: the publisher and the ground-truth connection). Right before and right after each snapshot
it reads the ground truth: ``CLIENT LIST`` (omem per
client), ``INFO memory``, redis-server's VmRSS from /proc, ``ss -tanmp`` for redis-server's sockets and
/proc/net/sockstat. Everything goes to ``DIR/truth.json``. Total lifetime bounded by
``--max-seconds``; every process is stopped by its pid.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from realserver import truth
from realserver.procs import (
    child_env,
    free_port,
    set_comm,
    snapshot,
    start,
    stop,
    term_is_exit,
    utc_now,
    wait_until,
)
from realserver.resp import Resp, encode

MiB = 1 << 20

CONFIG = """\
bind 127.0.0.1
port {port}
protected-mode no
daemonize no
save ""
appendonly no
dir {dir}
logfile {dir}/redis.log
maxclients 10000
client-output-buffer-limit pubsub 0 0 0
"""


def peer_port(addr: str) -> int | None:
    """The port of ``addr`` (``ip:port``); None for a listener's ``*``."""
    port = addr.rsplit(":", 1)[-1]
    return int(port) if port.isdigit() else None


class Publisher(threading.Thread):
    """Publishes ``total_bytes`` in ``msg_bytes`` messages at ``rate_bps`` (each subscriber's share),
    pipelined in batches; records what Redis said (receivers per message)."""

    def __init__(self, port: int, channel: str, total_bytes: int, msg_bytes: int, rate_bps: float):
        super().__init__(daemon=True)
        self.port, self.channel = port, channel
        self.count = max(1, total_bytes // msg_bytes)
        self.msg = b"m" * msg_bytes
        self.rate_bps = rate_bps
        self.receivers: set[int] = set()
        self.sent = 0
        self.error: BaseException | None = None
        self.started_at = self.finished_at = ""

    def run(self) -> None:
        try:
            self.started_at = utc_now()
            batch = 4
            t0 = time.monotonic()
            with Resp(self.port, timeout_s=120) as r:
                while self.sent < self.count:
                    n = min(batch, self.count - self.sent)
                    r.sock.sendall(encode("PUBLISH", self.channel, self.msg) * n)
                    for _ in range(n):
                        self.receivers.add(r.reply())
                    self.sent += n
                    ahead = self.sent * len(self.msg) / self.rate_bps - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            self.finished_at = utc_now()
        except BaseException as err:  # reported by the driver
            self.error = err


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.capture = self.out / args.name
        self.rdir = self.out / "redis"
        self.port = free_port()
        self.redis: subprocess.Popen | None = None
        self.clients: subprocess.Popen | None = None
        self.slow_ports: set[int] = set()
        self.fast_ports: set[int] = set()
        self.snapshots: list[dict[str, Any]] = []
        self.phases: list[dict[str, str]] = []
        self.t_next = 0.0

    def say(self, msg: str) -> None:
        print(f"redis_run: {msg}", file=sys.stderr, flush=True)

    # ---- ground truth
    def truth(self, r: Resp) -> dict[str, Any]:
        assert self.redis is not None and self.clients is not None
        t = utc_now()
        clients = truth.client_list(r)
        mem = truth.info(r, "memory")
        rss = truth.vm_rss_bytes(self.redis.pid)
        rows = truth.ss_tcp()
        mine = truth.owned_by(rows, {self.redis.pid})
        t_end = utc_now()
        omem = {}
        for c in clients:
            name = c.get("name", "")
            if name.startswith("sub-"):
                omem[peer_port(c["addr"])] = int(c["omem"])
        sockets = [
            {
                "state": s["state"],
                "local": s["local"],
                "peer": s["peer"],
                "send_q": s["send_q"],
                "recv_q": s["recv_q"],
                "skmem": s["skmem"],
            }
            for s in mine
        ]
        keep = (
            "used_memory",
            "used_memory_rss",
            "used_memory_peak",
            "mem_clients_normal",
            "mem_fragmentation_ratio",
            "allocator_allocated",
            "allocator_resident",
        )
        return {
            "start": t,
            "end": t_end,
            "redis_vmrss_bytes": rss,
            "clients_vmrss_bytes": truth.vm_rss_bytes(self.clients.pid),
            "info_memory": {k: mem[k] for k in keep if k in mem},
            "omem_by_peer_port": omem,
            "client_count": sum(1 for c in clients if c.get("name", "").startswith("sub-")),
            "redis_sockets": sockets,
            "sockstat_tcp": truth.sockstat_tcp(),
        }

    def snap(
        self, phase: str, r: Resp, bundle: bool = False, interval: float | None = None
    ) -> None:
        delay = self.t_next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.t_next = time.monotonic() + (self.args.interval if interval is None else interval)
        before = self.truth(r)
        name = snapshot(self.capture, bundle=bundle)
        after = self.truth(r)
        self.snapshots.append({"name": name, "phase": phase, "before": before, "after": after})
        slow_w = sum(
            s["skmem"].get("w", 0)
            for s in after["redis_sockets"]
            if peer_port(s["peer"]) in self.slow_ports
        )
        omem = sum(after["omem_by_peer_port"].values())
        self.say(
            f"{phase} {name}: redis RSS {after['redis_vmrss_bytes'] / MiB:.0f} MiB, omem "
            f"{omem / MiB:.0f} MiB, slow sockets w {slow_w / MiB:.0f} MiB"
        )

    def mark(self, label: str) -> None:
        t = utc_now()
        with open(self.capture / "phases.tsv", "a") as f:
            f.write(f"{t}\t{label}\n")
        self.phases.append({"start": t, "phase": label})
        self.say(f"phase {label} at {t}")

    def drained(self, r: Resp, ports: set[int]) -> bool:
        omem = {
            peer_port(c["addr"]): int(c["omem"])
            for c in truth.client_list(r)
            if c.get("name", "").startswith("sub-")
        }
        if any(omem.get(p, 0) for p in ports):
            return False
        assert self.redis is not None
        socks = truth.owned_by(truth.ss_tcp(), {self.redis.pid})
        return not any(s["send_q"] for s in socks if peer_port(s["peer"]) in ports)

    # ---- the run
    def run(self) -> dict[str, Any]:
        a = self.args
        self.rdir.mkdir(parents=True)
        self.capture.mkdir(parents=True)
        conf = self.rdir / "redis.conf"
        conf.write_text(CONFIG.format(port=self.port, dir=self.rdir))
        version = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.redis = start(["redis-server", str(conf)], stdout=subprocess.DEVNULL)
        try:
            wait_until(lambda: self._ping(), 20, "redis-server to answer PING")
            with Resp(self.port) as r:
                self.mark("connect")
                self.clients = start(
                    [
                        sys.executable,
                        "-m",
                        "realserver.clients",
                        "redis",
                        "--port",
                        str(self.port),
                        "--count",
                        str(a.subscribers),
                        "--slow",
                        str(a.slow),
                        "--max-seconds",
                        str(a.max_seconds),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=child_env(),
                )
                assert self.clients.stdout is not None and self.clients.stdin is not None
                ready = json.loads(self.clients.stdout.readline() or "{}")
                if "ports" not in ready:
                    raise RuntimeError("the subscriber process did not start")
                self.slow_ports = set(ready["ports"]["slow"])
                self.fast_ports = set(ready["ports"]["fast"])
                self.say(f"{len(self.fast_ports)} fast + {len(self.slow_ports)} slow subscribers")
                for _ in range(a.snapshots_connect):
                    self.snap("connect", r)

                self.mark("load")
                pub = Publisher(
                    self.port,
                    "tcpmem",
                    a.per_sub_mib * MiB,
                    a.message_kib * 1024,
                    a.rate_mib_s * MiB,
                )
                pub.start()
                load_deadline = time.monotonic() + a.max_seconds / 3
                while True:  # at least one snapshot while publishing
                    self.snap("load", r, interval=a.load_interval)
                    if not pub.is_alive() or time.monotonic() > load_deadline:
                        break
                pub.join(timeout=max(0.0, load_deadline - time.monotonic()))
                if pub.is_alive() or pub.error is not None:
                    raise RuntimeError(f"the publisher did not finish: {pub.error!r}")
                self.say(f"published {pub.sent} messages; receivers {sorted(pub.receivers)}")

                wait_until(lambda: self.drained(r, self.fast_ports), 120, "fast subscribers")
                self.mark("slow")
                for _ in range(a.snapshots_slow):
                    self.snap("slow", r)

                self.mark("drained")
                self.clients.stdin.write("resume\n")
                self.clients.stdin.flush()
                wait_until(
                    lambda: self.drained(r, self.slow_ports | self.fast_ports), 120, "slow ones"
                )
                for i in range(a.snapshots_drained):
                    self.snap("drained", r, bundle=a.bundle and i == a.snapshots_drained - 1)
                self.clients.stdin.write("stats\n")
                self.clients.stdin.flush()
                read = json.loads(self.clients.stdout.readline())
        finally:
            if self.clients is not None:
                with contextlib.suppress(OSError):
                    self.clients.stdin.write("quit\n")  # type: ignore[union-attr]
                    self.clients.stdin.flush()  # type: ignore[union-attr]
                stop(self.clients)
            stop(self.redis)
        return {
            "workload": "redis-pubsub-slow-subscribers",
            "command": " ".join(sys.argv),
            "kernel": platform.release(),
            "redis_version": version,
            "tcp_wmem": Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split(),
            "tcp_rmem": Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split(),
            "params": vars(a),
            "port": self.port,
            "redis_pid": self.redis.pid,
            "clients_pid": self.clients.pid if self.clients else None,
            "slow_ports": sorted(self.slow_ports),
            "fast_ports": sorted(self.fast_ports),
            "published": {
                "messages": pub.sent,
                "message_bytes": len(pub.msg),
                "receivers": sorted(pub.receivers),
                "start": pub.started_at,
                "end": pub.finished_at,
            },
            "clients_read_bytes": read,
            "phases": self.phases,
            "snapshots": self.snapshots,
        }

    def _ping(self) -> bool:
        try:
            with Resp(self.port, timeout_s=2) as r:
                return r.call("PING") == "PONG"
        except OSError:
            return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="realserver.redis_run", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="work directory (created; must not exist)")
    ap.add_argument("--name", default="capture", help="capture directory name under --out")
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=200, help="subscribers that stop reading")
    ap.add_argument("--per-sub-mib", type=int, default=6, help="MiB published (each subscriber)")
    ap.add_argument("--message-kib", type=int, default=16)
    ap.add_argument("--rate-mib-s", type=float, default=0.75, help="publish rate, MiB/s")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between snapshots")
    ap.add_argument(
        "--load-interval", type=float, help="seconds between snapshots while publishing"
    )
    ap.add_argument("--snapshots-connect", type=int, default=3)
    ap.add_argument("--snapshots-slow", type=int, default=6)
    ap.add_argument("--snapshots-drained", type=int, default=3)
    ap.add_argument("--bundle", action="store_true", help="collect.sh -b: OUT/NAME.tar.gz")
    ap.add_argument("--max-seconds", type=float, default=600.0)
    args = ap.parse_args(argv)
    term_is_exit()
    set_comm("publisher")  # it publishes and holds the ground-truth connection
    out = Path(args.out)
    if out.exists():
        ap.error(f"{out} exists")
    result = Run(args).run()
    (out / "truth.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
