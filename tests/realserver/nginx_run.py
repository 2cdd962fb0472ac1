"""The nginx idle keep-alive workload, with collect.sh snapshots and ground truth.

    python -m realserver.nginx_run --out DIR [--clients 1000] [--workers 2] ...

Starts Debian's ``nginx`` with its own config and prefix under ``DIR/nginx`` (``--workers`` worker
processes, 127.0.0.1 and a free port, ``keepalive_timeout 3600s``, ``stub_status`` at
``/nginx_status``), then three phases, each marked in ``DIR/NAME/phases.tsv`` and captured by
``collect.sh -n 1`` snapshots about ``--interval`` s apart:

- ``baseline``: nginx alone (the master and workers share the listening socket);
- ``idle``: ``--clients`` HTTP/1.1 clients (one process, comm ``http-client``) have each made one
  request and stay connected, idle;
- ``closed``: the clients are gone.

Right before and right after each snapshot it reads the ground truth: the workers' pids (children
of the master in /proc), ``ss -tanmp`` (the established connections each worker holds; every buffer
is ~0), ``stub_status`` (read after ss: its own connection is counted in ``active``) and VmRSS.
Everything goes to ``DIR/truth.json``. Total lifetime bounded by ``--max-seconds``; every process is
stopped by its pid.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from realserver import truth
from realserver.procs import (
    child_env,
    free_port,
    snapshot,
    start,
    stop,
    term_is_exit,
    utc_now,
    wait_until,
)

CONFIG = """\
worker_processes {workers};
worker_rlimit_nofile 8192;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    keepalive_timeout 3600s;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location = / {{
            return 200 "ok\\n";
        }}
        location = /nginx_status {{
            stub_status;
        }}
    }}
}}
"""


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc/*/stat)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[-1].split()
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return sorted(kids)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.capture = self.out / args.name
        self.ndir = self.out / "nginx"
        self.port = free_port()
        self.master: subprocess.Popen | None = None
        self.clients: subprocess.Popen | None = None
        self.workers: list[int] = []
        self.snapshots: list[dict[str, Any]] = []
        self.phases: list[dict[str, str]] = []
        self.t_next = 0.0

    def say(self, msg: str) -> None:
        print(f"nginx_run: {msg}", file=sys.stderr, flush=True)

    def truth(self) -> dict[str, Any]:
        assert self.master is not None
        t = utc_now()
        rows = truth.ss_tcp()
        procs = {self.master.pid: "master", **{w: "worker" for w in self.workers}}
        per_pid: dict[str, dict[str, Any]] = {}
        for pid, role in procs.items():
            mine = truth.owned_by(rows, {pid})
            estab = [r for r in mine if r["state"] == "ESTAB"]
            per_pid[str(pid)] = {
                "role": role,
                "sockets": len(mine),
                "established": len(estab),
                "listening": sum(1 for r in mine if r["state"] == "LISTEN"),
                "skmem_r_t_f_w_bytes": truth.skmem_sum(mine),
                "vmrss_bytes": truth.vm_rss_bytes(pid),
                "comm": Path(f"/proc/{pid}/comm").read_text().strip(),
            }
        status = truth.stub_status(self.port)
        return {
            "start": t,
            "end": utc_now(),
            "processes": per_pid,
            "stub_status": status,
            "sockstat_tcp": truth.sockstat_tcp(),
        }

    def snap(self, phase: str, bundle: bool = False) -> None:
        delay = self.t_next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.t_next = time.monotonic() + self.args.interval
        before = self.truth()
        name = snapshot(self.capture, bundle=bundle)
        after = self.truth()
        self.snapshots.append({"name": name, "phase": phase, "before": before, "after": after})
        counts = {p: v["established"] for p, v in after["processes"].items()}
        self.say(f"{phase} {name}: established per pid {counts}, stub {after['stub_status']}")

    def mark(self, label: str) -> None:
        t = utc_now()
        with open(self.capture / "phases.tsv", "a") as f:
            f.write(f"{t}\t{label}\n")
        self.phases.append({"start": t, "phase": label})
        self.say(f"phase {label} at {t}")

    def run(self) -> dict[str, Any]:
        a = self.args
        (self.ndir / "tmp").mkdir(parents=True)
        self.capture.mkdir(parents=True)
        conf = self.ndir / "nginx.conf"
        conf.write_text(CONFIG.format(workers=a.workers, dir=self.ndir, port=self.port))
        version = subprocess.run(
            ["nginx", "-v"], capture_output=True, text=True, check=True
        ).stderr.strip()
        self.master = start(
            ["nginx", "-p", str(self.ndir), "-c", str(conf), "-e", str(self.ndir / "error.log")],
            stdout=subprocess.DEVNULL,
        )
        try:
            self.workers = wait_until(
                lambda: (k := children(self.master.pid)) and len(k) == a.workers and k,
                20,
                "nginx workers",
            )
            wait_until(lambda: self._up(), 20, "nginx to answer")
            self.mark("baseline")
            for _ in range(a.snapshots_baseline):
                self.snap("baseline")
            self.mark("idle")
            self.clients = start(
                [
                    sys.executable,
                    "-m",
                    "realserver.clients",
                    "http",
                    "--port",
                    str(self.port),
                    "--count",
                    str(a.clients),
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
                raise RuntimeError("the client process did not start")
            for _ in range(a.snapshots_idle):
                self.snap("idle")
            self.mark("closed")
            self.clients.stdin.write("quit\n")
            self.clients.stdin.flush()
            stop(self.clients)
            for i in range(a.snapshots_closed):
                self.snap("closed", bundle=a.bundle and i == a.snapshots_closed - 1)
        finally:
            if self.clients is not None:
                stop(self.clients)
            stop(self.master)
        return {
            "workload": "nginx-idle-keepalive",
            "command": " ".join(sys.argv),
            "kernel": platform.release(),
            "nginx_version": version,
            "params": vars(a),
            "port": self.port,
            "master_pid": self.master.pid,
            "worker_pids": self.workers,
            "clients_pid": self.clients.pid if self.clients else None,
            "client_ports": ready["ports"]["fast"],
            "phases": self.phases,
            "snapshots": self.snapshots,
        }

    def _up(self) -> bool:
        try:
            return truth.stub_status(self.port)["active"] >= 1
        except OSError:
            return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="realserver.nginx_run", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="work directory (created; must not exist)")
    ap.add_argument("--name", default="capture", help="capture directory name under --out")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between snapshots")
    ap.add_argument("--snapshots-baseline", type=int, default=2)
    ap.add_argument("--snapshots-idle", type=int, default=5)
    ap.add_argument("--snapshots-closed", type=int, default=2)
    ap.add_argument("--bundle", action="store_true", help="collect.sh -b: OUT/NAME.tar.gz")
    ap.add_argument("--max-seconds", type=float, default=300.0)
    args = ap.parse_args(argv)
    term_is_exit()
    out = Path(args.out)
    if out.exists():
        ap.error(f"{out} exists")
    result = Run(args).run()
    (out / "truth.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
