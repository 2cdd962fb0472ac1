"""``python -m tcpmemlib.lab``: hold a scenario, or record the sample capture.

python -m tcpmemlib.lab run --connections 1000 --scenario send_backlog --seconds 120
python -m tcpmemlib.lab experiment -o data/ --connections 1000 --interval 2
python -m tcpmemlib.lab experiment -o data/ --name sample-netns --netns   # the container case
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tcpmemlib.errors import TcpmemError
from tcpmemlib.lab.control import SCENARIOS, LabRun
from tcpmemlib.lab.experiment import DEFAULT_COLLECT, PHASES, Experiment
from tcpmemlib.lab.netns import LabNetns


def _value(text: str) -> Any:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _params(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise SystemExit(f"--set expects key=value, not {p!r}")
        k, v = p.split("=", 1)
        out[k] = _value(v)
    return out


def _on_signal(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def cmd_run(a: argparse.Namespace) -> int:
    params = _params(a.set)
    with contextlib.ExitStack() as stack:
        ns = stack.enter_context(LabNetns()) if a.netns else None
        lab = stack.enter_context(
            LabRun(connections=a.connections, address=a.address, timeout_s=a.timeout, netns=ns)
        )
        where = f" in network namespace {ns.name} (inode {ns.inode})" if ns else ""
        print(
            f"tcpmem-server pid {lab.server_pid}, tcpmem-client pid {lab.client_pid}, "
            f"{a.address} port {lab.port}, {a.connections} connections{where}",
            flush=True,
        )
        result = lab.scenario(a.scenario, **params)
        s = result["server"]
        print(
            f"{a.scenario} reached: server sockets hold inq {s['inq_sum']} B "
            f"(max {s['inq_max']}), outq {s['outq_sum']} B (max {s['outq_max']})",
            flush=True,
        )
        look = f"nsenter --net={ns.path} " if ns else ""
        print(f"look:  {look}ss -tnmp '( sport = :{lab.port} )' | head", flush=True)
        print(f"holding for {a.seconds:g} s (Ctrl-C stops earlier)", flush=True)
        try:
            time.sleep(a.seconds)
        except KeyboardInterrupt:
            print("stopping", flush=True)
    print("stopped: both processes gone, sockets closed", flush=True)
    return 0


def cmd_experiment(a: argparse.Namespace) -> int:
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    try:
        exp = _experiment(a, out)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from e
    exp.run()
    return 0


def _experiment(a: argparse.Namespace, out: Path) -> Experiment:
    return Experiment(
        out_dir=out,
        name=a.name,
        connections=a.connections,
        interval_s=a.interval,
        snapshots_per_phase=a.snapshots,
        address=a.address,
        send_cap=a.send_cap,
        tuned_buf=a.tuned_buf,
        timeout_s=a.timeout,
        collect=Path(a.collect),
        quiet_wait_s=a.quiet_wait,
        quiet_max=a.quiet_max,
        phases=tuple(p.strip() for p in a.phases.split(",") if p.strip()),
        sndbuf=a.sndbuf,
        rcvbuf=a.rcvbuf,
        netns=a.netns,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tcpmemlib.lab", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="start the lab and hold one scenario")
    r.add_argument("--connections", "-N", type=int, default=1000)
    r.add_argument("--scenario", "-s", choices=SCENARIOS, default="idle")
    r.add_argument("--seconds", "-t", type=float, default=60.0, help="how long to hold it")
    r.add_argument("--address", default="127.0.0.1", choices=["127.0.0.1", "::1"])
    r.add_argument("--timeout", type=float, default=120.0, help="bound on every wait (s)")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="scenario parameter, e.g. bytes_per_conn=65536, max_bytes_per_conn=4194304, "
        "bits_per_s=250000, sndbuf=65536 (repeatable)",
    )
    r.add_argument(
        "--netns",
        action="store_true",
        help="run the server and clients in a network namespace the lab creates (root): "
        "the container case",
    )
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("experiment", help="record a capture through every phase with collect.sh")
    e.add_argument("-o", "--output", required=True, help="directory for <name>.tar.gz")
    e.add_argument("--name", default="sample")
    e.add_argument("--connections", "-N", type=int, default=1000)
    e.add_argument("--interval", "-i", type=float, default=2.0, help="seconds between snapshots")
    e.add_argument("--snapshots", type=int, default=3, help="snapshots per phase")
    e.add_argument("--address", default="127.0.0.1", choices=["127.0.0.1", "::1"])
    e.add_argument("--send-cap", type=int, default=1 << 20, help="bytes per connection")
    e.add_argument("--tuned-buf", type=int, default=65536, help="SO_SNDBUF/SO_RCVBUF (tuned)")
    e.add_argument("--timeout", type=float, default=120.0)
    e.add_argument("--collect", default=str(DEFAULT_COLLECT), help="path of collect.sh")
    e.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="S",
        help="first wait up to S seconds for the box to hold <= --quiet-max TCP sockets",
    )
    e.add_argument("--quiet-max", type=int, default=200)
    e.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (run in that order)",
    )
    e.add_argument("--sndbuf", type=int, default=None, help="server SO_SNDBUF from the start")
    e.add_argument("--rcvbuf", type=int, default=None, help="server SO_RCVBUF from the start")
    e.add_argument(
        "--netns",
        action="store_true",
        help="run the server and clients in a network namespace the lab creates (root): "
        "the container case",
    )
    e.set_defaults(func=cmd_experiment)

    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        return int(a.func(a))
    except TcpmemError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
