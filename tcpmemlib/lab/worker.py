"""One lab process (server or client): N persistent TCP connections driven by a line protocol.

The process runs a single-threaded ``selectors`` (epoll) loop over non-blocking sockets and its own
stdin, where the parent (``tcpmemlib.lab.control.LabRun``) writes one command per line. Every command
gets exactly one reply line on stdout: ``ok <json>`` or ``err <message>``. A command that waits for a
state (``wait_established``, ``wait_queues``, ``fill``, ``push``) is answered only when the state is
reached, or with ``err`` when its deadline passes; the loop keeps serving sockets meanwhile.

Commands (arguments are ``key=value``):

=====================  ==================================================================================
``stats``              counters and per-socket queue sums (SIOCINQ/SIOCOUTQ over all connections)
``wait_established``   reply when all N connections are established
``read on|off``        read (and discard) everything that arrives, or stop reading entirely
``trickle bytes_per_s=B chunk=C``  send B bytes/s in total, C bytes per send, round-robin (0 stops)
``push bytes_per_conn=K``  write K more bytes on every connection; reply when all are written
``fill max_bytes_per_conn=M settle_s=S``  write on every connection until M bytes were written or the
                       socket stays full (SIOCOUTQ unchanged, EAGAIN) for S seconds; reply then
``wait_queues inq=X outq=Y``  reply when every connection's SIOCINQ == X and SIOCOUTQ == Y (either
                       may be omitted)
``reconnect``          close every connection (abortive: no TIME-WAIT) and reply; the server then
                       re-creates its listener on the same port, applying ``sndbuf=``/``rcvbuf=``
                       (``0`` = kernel default, autotuning on) BEFORE ``listen()``; the client starts
                       opening N new connections (follow with ``wait_established``)
``quit``               close everything and exit
=====================  ==================================================================================

Every wait is bounded by ``timeout_s=`` (default: the process's ``--timeout``). The process exits by
itself when its parent dies (PR_SET_PDEATHSIG plus a parent-pid check), on stdin EOF, and on
SIGTERM/SIGINT; all sockets are closed with SO_LINGER 0, so nothing is left in TIME-WAIT or orphaned.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SIOCINQ = termios.FIONREAD
SIOCOUTQ = termios.TIOCOUTQ
PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1
_LINGER_ABORT = struct.pack("ii", 1, 0)
_PAYLOAD = memoryview(b"\x00" * (256 << 10))
_SINK = bytearray(256 << 10)
_CONNECT_IN_FLIGHT = 256


def set_process_name(name: str) -> None:
    """Set this process's comm (what ps, ss -p and /proc/PID/comm show) via prctl(PR_SET_NAME)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent exits (PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def raise_nofile(needed: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; error if ``needed`` fds cannot fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    elif hard == resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    if soft < needed:
        raise OSError(
            errno.EMFILE,
            f"cannot hold {needed} file descriptors: RLIMIT_NOFILE hard limit is {hard} "
            f"(raise it with `ulimit -Hn` as root, or use fewer connections)",
        )
    return soft, hard


def _ioctl_int(fd: int, request: int) -> int:
    buf = fcntl.ioctl(fd, request, b"\x00\x00\x00\x00")
    return int(struct.unpack("i", buf)[0])


@dataclass
class Conn:
    """One connection and its counters."""

    sock: socket.socket
    established: bool = False
    to_write: int = 0  # bytes still to write (push / fill)
    written: int = 0  # bytes written since the last push/fill began
    read_total: int = 0
    trickled: int = 0  # bytes sent by trickle
    last_outq: int = -1
    last_change: float = 0.0
    blocked: bool = False  # last write hit EAGAIN


@dataclass
class Pending:
    """A command waiting for a state; ``check`` returns a reply dict when done, None otherwise."""

    name: str
    deadline: float
    check: Callable[[], dict[str, Any] | None]


@dataclass
class Worker:
    role: str
    family: int
    address: str
    port: int
    connections: int
    timeout_s: float
    sndbuf: int = 0
    rcvbuf: int = 0
    sel: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    conns: dict[int, Conn] = field(default_factory=dict)
    listener: socket.socket | None = None
    reading: bool = True
    trickle_bytes_per_s: int = 0
    trickle_chunk: int = 128
    trickle_credit: float = 0.0
    trickle_next: int = 0
    trickle_last: float = 0.0
    to_connect: int = 0
    pending: Pending | None = None
    lost: int = 0
    stop: bool = False
    parent_pid: int = 0
    _inbuf: bytes = b""

    # ---- setup -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.role == "server":
            self._listen()
        else:
            self.to_connect = self.connections
        os.set_blocking(sys.stdin.fileno(), False)
        self.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, "ctl")

    def _listen(self) -> None:
        ls = socket.socket(self.family, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Set before listen(): accepted sockets inherit the values and the locks, and the window
        # scale chosen at the handshake follows the receive buffer.
        if self.sndbuf:
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        if self.rcvbuf:
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        ls.bind((self.address, self.port))
        ls.listen(min(max(self.connections, 128), 4096))
        ls.setblocking(False)
        self.port = ls.getsockname()[1]
        self.listener = ls
        self.sel.register(ls, selectors.EVENT_READ, "listen")

    # ---- sockets -----------------------------------------------------------------------------
    def _events_for(self, c: Conn) -> int:
        ev = 0
        if not c.established or c.to_write > 0:
            ev |= selectors.EVENT_WRITE
        if self.reading and c.established:
            ev |= selectors.EVENT_READ
        return ev

    def _update(self, c: Conn) -> None:
        ev = self._events_for(c)
        fd = c.sock.fileno()
        try:
            key = self.sel.get_key(fd)
        except KeyError:
            if ev:
                self.sel.register(fd, ev, "conn")
            return
        if ev == 0:
            self.sel.unregister(fd)
        elif key.events != ev:
            self.sel.modify(fd, ev, "conn")

    def _add(self, s: socket.socket, established: bool) -> None:
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
        c = Conn(sock=s, established=established, last_change=time.monotonic())
        self.conns[s.fileno()] = c
        self._update(c)

    def _connect_some(self) -> None:
        in_flight = sum(1 for c in self.conns.values() if not c.established)
        while self.to_connect > 0 and in_flight < _CONNECT_IN_FLIGHT:
            s = socket.socket(self.family, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((self.address, self.port))
            if err not in (0, errno.EINPROGRESS):
                s.close()
                raise OSError(err, f"connect to {self.address}:{self.port}: {os.strerror(err)}")
            self.to_connect -= 1
            in_flight += 1
            self._add(s, established=(err == 0))

    def _accept(self) -> None:
        assert self.listener is not None
        for _ in range(512):
            try:
                s, _addr = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    raise OSError(
                        e.errno, f"accept: out of file descriptors at {len(self.conns)} connections"
                    ) from e
                raise
            self._add(s, established=True)

    def _drop(self, c: Conn) -> None:
        fd = c.sock.fileno()
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(fd)
        self.conns.pop(fd, None)
        c.sock.close()

    def _on_conn(self, c: Conn, mask: int) -> None:
        if not c.established and mask & selectors.EVENT_WRITE:
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._drop(c)
                raise OSError(err, f"connect to {self.address}:{self.port}: {os.strerror(err)}")
            c.established = True
            self._update(c)
            return
        if mask & selectors.EVENT_READ and self.reading:
            self._read(c)
        if mask & selectors.EVENT_WRITE and c.to_write > 0 and c.sock.fileno() >= 0:
            self._write(c, c.to_write)

    def _read(self, c: Conn) -> None:
        for _ in range(16):
            try:
                n = c.sock.recv_into(_SINK)
            except BlockingIOError:
                return
            except ConnectionError:
                n = 0
            if n == 0:
                # The peer closed (e.g. it is reconnecting): count it; waits then see < N.
                self._drop(c)
                self.lost += 1
                return
            c.read_total += n
            if n < len(_SINK):
                return

    def _write(self, c: Conn, budget: int) -> int:
        """Write up to ``budget`` bytes of ``c.to_write``; return the bytes written."""
        done = 0
        while done < budget:
            n_try = min(budget - done, len(_PAYLOAD))
            try:
                n = c.sock.send(_PAYLOAD[:n_try])
            except BlockingIOError:
                c.blocked = True
                break
            except ConnectionError:  # reset by the peer: count it, waits then see < N
                self._drop(c)
                self.lost += 1
                return done
            c.blocked = False
            done += n
            if n < n_try:
                c.blocked = True
                break
        if done:
            c.written += done
            c.to_write = max(0, c.to_write - done)
            if c.to_write == 0:
                self._update(c)
        return done

    def _trickle_tick(self, now: float) -> None:
        if self.trickle_bytes_per_s <= 0 or not self.conns:
            return
        self.trickle_credit += (now - self.trickle_last) * self.trickle_bytes_per_s
        self.trickle_last = now
        fds = list(self.conns)
        budget = min(int(self.trickle_credit), self.trickle_bytes_per_s)  # never burst > 1 s
        sends = budget // self.trickle_chunk
        for _ in range(sends):
            c = self.conns.get(fds[self.trickle_next % len(fds)])
            self.trickle_next += 1
            if c is None or not c.established:
                continue
            try:
                n = c.sock.send(_PAYLOAD[: self.trickle_chunk])
            except BlockingIOError:
                n = 0
            except ConnectionError:
                self._drop(c)
                self.lost += 1
                continue
            c.trickled += n
            self.trickle_credit -= n if n else self.trickle_chunk
        if sends == 0 and self.trickle_credit > self.trickle_bytes_per_s:
            self.trickle_credit = float(self.trickle_bytes_per_s)

    # ---- measurements ------------------------------------------------------------------------
    def queues(self) -> tuple[list[int], list[int]]:
        inq, outq = [], []
        for c in self.conns.values():
            if not c.established:
                continue
            fd = c.sock.fileno()
            inq.append(_ioctl_int(fd, SIOCINQ))
            outq.append(_ioctl_int(fd, SIOCOUTQ))
        return inq, outq

    def stats(self) -> dict[str, Any]:
        inq, outq = self.queues()
        est = sum(1 for c in self.conns.values() if c.established)
        return {
            "role": self.role,
            "pid": os.getpid(),
            "port": self.port,
            "connections": len(self.conns),
            "established": est,
            "lost": self.lost,
            "reading": self.reading,
            "trickle_bytes_per_s": self.trickle_bytes_per_s,
            "inq_sum": sum(inq),
            "inq_min": min(inq, default=0),
            "inq_max": max(inq, default=0),
            "outq_sum": sum(outq),
            "outq_min": min(outq, default=0),
            "outq_max": max(outq, default=0),
            "written_sum": sum(c.written for c in self.conns.values()),
            "read_sum": sum(c.read_total for c in self.conns.values()),
            "trickled_sum": sum(c.trickled for c in self.conns.values()),
        }

    # ---- commands ----------------------------------------------------------------------------
    def _reply(self, ok: bool, payload: Any) -> None:
        line = ("ok " + json.dumps(payload)) if ok else ("err " + str(payload).replace("\n", " "))
        try:
            os.write(sys.stdout.fileno(), (line + "\n").encode())
        except BrokenPipeError:  # the parent is gone: nobody to answer, so stop
            self.stop = True

    def _handle(self, line: str) -> None:
        parts = line.split()
        if not parts:
            return
        cmd, args = parts[0], parts[1:]
        kv = dict(a.split("=", 1) for a in args if "=" in a)
        flags = [a for a in args if "=" not in a]
        timeout = float(kv.get("timeout_s", self.timeout_s))
        deadline = time.monotonic() + timeout
        if self.pending is not None:
            self._reply(False, f"busy with {self.pending.name}")
            return
        if cmd == "stats":
            self._reply(True, self.stats())
        elif cmd == "wait_established":
            self.pending = Pending(cmd, deadline, self._check_established)
        elif cmd == "read":
            self.reading = flags == ["on"]
            for c in list(self.conns.values()):
                self._update(c)
            self._reply(True, {"reading": self.reading})
        elif cmd == "trickle":
            self.trickle_bytes_per_s = int(kv.get("bytes_per_s", 0))
            self.trickle_chunk = max(1, int(kv.get("chunk", 128)))
            self.trickle_last = time.monotonic()
            self.trickle_credit = 0.0
            self._reply(True, {"trickle_bytes_per_s": self.trickle_bytes_per_s})
        elif cmd in ("push", "fill"):
            per_conn = int(kv.get("bytes_per_conn", kv.get("max_bytes_per_conn", 0)))
            settle = float(kv.get("settle_s", 0.5))
            now = time.monotonic()
            for c in self.conns.values():
                c.to_write, c.written, c.blocked = per_conn, 0, False
                c.last_outq, c.last_change = -1, now
                self._update(c)
            check = self._check_pushed if cmd == "push" else self._make_fill_check(settle)
            self.pending = Pending(cmd, deadline, check)
        elif cmd == "wait_queues":
            inq = int(kv["inq"]) if "inq" in kv else None
            outq = int(kv["outq"]) if "outq" in kv else None
            self.pending = Pending(cmd, deadline, self._make_queue_check(inq, outq))
        elif cmd == "reconnect":
            self.sndbuf = int(kv.get("sndbuf", self.sndbuf))
            self.rcvbuf = int(kv.get("rcvbuf", self.rcvbuf))
            self._reconnect()
            self._reply(True, {"port": self.port})
        elif cmd == "quit":
            self._reply(True, {"bye": os.getpid()})
            self.stop = True
        else:
            self._reply(False, f"unknown command {cmd!r}")

    def _reconnect(self) -> None:
        for c in list(self.conns.values()):
            self._drop(c)
        self.lost = 0
        self.trickle_bytes_per_s = 0
        if self.role == "server":
            assert self.listener is not None
            self.sel.unregister(self.listener)
            self.listener.close()
            self._listen()
        else:
            self.to_connect = self.connections

    def _check_established(self) -> dict[str, Any] | None:
        est = sum(1 for c in self.conns.values() if c.established)
        if est == self.connections and self.to_connect == 0:
            return self.stats()
        return None

    def _check_pushed(self) -> dict[str, Any] | None:
        if any(c.to_write for c in self.conns.values()):
            return None
        return self.stats()

    def _make_fill_check(self, settle_s: float) -> Callable[[], dict[str, Any] | None]:
        def check() -> dict[str, Any] | None:
            now = time.monotonic()
            done = True
            for c in self.conns.values():
                if c.to_write == 0:
                    continue
                outq = _ioctl_int(c.sock.fileno(), SIOCOUTQ)
                if outq != c.last_outq:
                    c.last_outq, c.last_change = outq, now
                if not (c.blocked and now - c.last_change >= settle_s):
                    done = False
            if not done:
                return None
            # Stop writing: the state is reached (capped or full); keep it as it is.
            for c in self.conns.values():
                c.to_write = 0
                self._update(c)
            return self.stats()

        return check

    def _make_queue_check(
        self, inq: int | None, outq: int | None
    ) -> Callable[[], dict[str, Any] | None]:
        def check() -> dict[str, Any] | None:
            if sum(1 for c in self.conns.values() if c.established) != self.connections:
                return None
            ins, outs = self.queues()
            if inq is not None and any(q != inq for q in ins):
                return None
            if outq is not None and any(q != outq for q in outs):
                return None
            return self.stats()

        return check

    def _on_ctl(self) -> None:
        try:
            data = os.read(sys.stdin.fileno(), 65536)
        except BlockingIOError:
            return
        if not data:  # the parent closed our stdin: it is gone or done with us
            self.stop = True
            return
        self._inbuf += data
        while b"\n" in self._inbuf:
            raw, self._inbuf = self._inbuf.split(b"\n", 1)
            try:
                self._handle(raw.decode().strip())
            except (ValueError, KeyError) as e:
                self._reply(False, f"bad command {raw!r}: {e}")

    # ---- loop --------------------------------------------------------------------------------
    def run(self) -> None:
        last_parent_check = 0.0
        while not self.stop:
            if self.role == "client" and self.to_connect:
                self._connect_some()
            for key, mask in self.sel.select(timeout=0.05):
                if key.data == "ctl":
                    self._on_ctl()
                elif key.data == "listen":
                    self._accept()
                else:
                    c = self.conns.get(key.fd)
                    if c is not None:
                        self._on_conn(c, mask)
            now = time.monotonic()
            self._trickle_tick(now)
            if self.pending is not None:
                try:
                    result = self.pending.check()
                except OSError as e:
                    result = None
                    self.pending.deadline = 0.0
                    self._reply(False, f"{self.pending.name}: {e}")
                    self.pending = None
                if self.pending is not None:
                    if result is not None:
                        self.pending = None
                        self._reply(True, result)
                    elif now > self.pending.deadline:
                        name = self.pending.name
                        self.pending = None
                        self._reply(False, f"{name}: timed out; state: {json.dumps(self.stats())}")
            if now - last_parent_check > 1.0:
                last_parent_check = now
                if os.getppid() != self.parent_pid:
                    self.stop = True

    def close(self) -> None:
        for c in list(self.conns.values()):
            self._drop(c)
        if self.listener is not None:
            self.listener.close()
        self.sel.close()


def main(role: str, argv: list[str] | None = None) -> int:
    """Entry point of ``python -m tcpmemlib.lab.server`` / ``python -m tcpmemlib.lab.client``."""
    p = argparse.ArgumentParser(prog=f"tcpmem-{role}")
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--sndbuf", type=int, default=0)
    p.add_argument("--rcvbuf", type=int, default=0)
    p.add_argument("--name", default=f"tcpmem-{role}")
    a = p.parse_args(argv)
    parent = os.getppid()
    die_with_parent()
    set_process_name(a.name)

    def on_signal(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    family = socket.AF_INET6 if ":" in a.address else socket.AF_INET
    w = Worker(
        role=role,
        family=family,
        address=a.address,
        port=a.port,
        connections=a.connections,
        timeout_s=a.timeout,
        sndbuf=a.sndbuf,
        rcvbuf=a.rcvbuf,
        parent_pid=parent,
    )
    try:
        try:
            raise_nofile(a.connections + 64)
            w.start()
        except OSError as e:
            w._reply(False, f"{role} setup: {e}")
            return 1
        w._reply(True, {"role": role, "pid": os.getpid(), "port": w.port})
        try:
            w.run()
        except OSError as e:
            w._reply(False, f"{role} failed: {e}")
            return 1
        return 0
    finally:
        w.close()
