"""The client process: Redis pub/sub subscribers (some of which stop reading) or idle HTTP/1.1
keep-alive clients, all on loopback, in one process with a bounded lifetime.

    python -m realserver.clients redis --port P --count N --slow K --channel C [--max-seconds S]
    python -m realserver.clients http --port P --count N [--max-seconds S]

The process names itself ``subscriber`` or ``http-client`` (comm). It prints one JSON line on stdout once every client is connected (``pid``, and per group the local
ports: the peers' ports as the server sees them), then obeys stdin lines: ``resume`` (the slow
subscribers start reading), ``stats`` (prints bytes read per group as one JSON line), ``quit`` (or
end of input, or ``--max-seconds``): close everything and exit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import sys
import time

from realserver.procs import set_comm
from realserver.resp import encode

RECV_BYTES = 1 << 20
COMM = {"redis": "subscriber", "http": "http-client"}  # the process name captures show


def raise_nofile(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n + 64)) if hard != resource.RLIM_INFINITY else max(soft, n + 64)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def read_until(sock: socket.socket, done, what: str, timeout_s: float = 30.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout_s
    while not done(buf):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out reading {what}: {buf[:200]!r}")
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"connection closed while reading {what}: {buf[:200]!r}")
        buf += chunk
    return buf


def redis_subscriber(port: int, channel: str, name: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(encode("CLIENT", "SETNAME", name) + encode("SUBSCRIBE", channel))
    # +OK, then the subscribe confirmation: *3 $9 subscribe $len channel :1
    read_until(s, lambda b: b.startswith(b"+OK\r\n") and b.endswith(b":1\r\n"), "SUBSCRIBE reply")
    s.setblocking(False)
    return s


def http_client(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")

    def complete(b: bytes) -> bool:
        head, sep, body = b.partition(b"\r\n\r\n")
        if not sep:
            return False
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                return len(body) >= int(line.split(b":")[1])
        return True

    reply = read_until(s, complete, "HTTP response")
    if not reply.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected HTTP response {reply[:200]!r}")
    s.setblocking(False)
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="realserver.clients")
    ap.add_argument("kind", choices=("redis", "http"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--slow", type=int, default=0, help="redis: subscribers that stop reading")
    ap.add_argument("--channel", default="tcpmem")
    ap.add_argument("--max-seconds", type=float, default=600.0)
    args = ap.parse_args(argv)
    set_comm(COMM[args.kind])
    deadline = time.monotonic() + args.max_seconds
    raise_nofile(args.count)

    groups: dict[str, list[socket.socket]] = {"fast": [], "slow": []}
    if args.kind == "redis":
        n_slow = min(args.slow, args.count)
        # spread the slow ones through the connection order (every k-th), as in a real fleet
        step = args.count / n_slow if n_slow else 0
        slow_at = {int(i * step) for i in range(n_slow)}
        for i in range(args.count):
            group = "slow" if i in slow_at else "fast"
            groups[group].append(redis_subscriber(args.port, args.channel, f"sub-{group}-{i}"))
    else:
        groups["fast"] = [http_client(args.port) for _ in range(args.count)]
    ports = {g: [s.getsockname()[1] for s in socks] for g, socks in groups.items()}
    print(json.dumps({"pid": os.getpid(), "ports": ports}), flush=True)

    sel = selectors.DefaultSelector()
    read_bytes = {"fast": 0, "slow": 0}
    if args.kind == "redis":
        for s in groups["fast"]:
            sel.register(s, selectors.EVENT_READ, "fast")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    try:
        while time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                if key.data == "stdin":
                    cmd = sys.stdin.readline().strip()
                    if cmd in ("", "quit"):
                        return 0
                    if cmd == "resume":
                        for s in groups["slow"]:
                            sel.register(s, selectors.EVENT_READ, "slow")
                    elif cmd == "stats":
                        print(json.dumps(read_bytes), flush=True)
                    continue
                try:
                    chunk = key.fileobj.recv(RECV_BYTES)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise RuntimeError("the server closed a client connection")
                read_bytes[key.data] += len(chunk)
        return 0
    finally:
        for socks in groups.values():
            for s in socks:
                s.close()


if __name__ == "__main__":
    sys.exit(main())
