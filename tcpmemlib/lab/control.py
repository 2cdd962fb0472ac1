"""``LabRun``: start the lab's server and client processes and drive them through scenarios.

```python
from tcpmemlib.lab import LabRun
with LabRun(connections=200, address="127.0.0.1", timeout_s=60) as lab:
    lab.server_pid, lab.client_pid, lab.port
    lab.scenario("idle")                                # all N established, queues empty
    lab.scenario("recv_backlog", bytes_per_conn=65536)  # each server socket holds K unread bytes
    lab.scenario("send_backlog", max_bytes_per_conn=4 << 20)  # clients stop reading, server fills
    lab.scenario("trickle", bits_per_s=250_000)
    lab.scenario("drained")                             # everybody reads; queues back to 0
    lab.scenario("tuned", sndbuf=65536, rcvbuf=65536)   # reconnect with SO_*BUF, then send_backlog
```

Each ``scenario`` call returns only when the state is reached, measured by the processes on their
own sockets (SIOCINQ / SIOCOUTQ), and raises ``LabError`` otherwise (timeout, process died, fewer
than N connections). On exit both processes are gone (waited for by pid) and every socket is closed
abortively (SO_LINGER 0: no TIME-WAIT, no orphan left on the port).

Scenarios (the server is the "front-end" whose memory we look at):

=================  ==================================================================================
``idle``           connections open, no traffic; every queue empty
``trickle``        ``bits_per_s`` (default 250 000) in total over all connections and both directions
                   (half each way), in ``chunk``-byte sends (default 128); both sides read
``recv_backlog``   the server stops reading; each client writes ``bytes_per_conn`` (default 64 KiB);
                   returns when SIOCINQ == K on every server socket and the clients' SIOCOUTQ is 0
                   (all of it acked: nothing left in their send queues)
``send_backlog``   the clients stop reading; the server writes until ``max_bytes_per_conn`` (default
                   4 MiB) or until every socket's send queue stops growing (``settle_s``, 0.5)
``drained``        no sending, everybody reads everything; returns when every queue is 0
``tuned``          reconnects every connection with the server's SO_SNDBUF=``sndbuf`` /
                   SO_RCVBUF=``rcvbuf`` (default 65536 each; ``0`` = kernel default) set on the
                   listener BEFORE ``listen()`` (accepted sockets inherit them, and the window scale is
                   fixed at the handshake, so a running connection cannot be re-tuned), then runs the
                   ``then`` scenario (default ``send_backlog``) with the remaining parameters
=================  ==================================================================================
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, BinaryIO

from tcpmemlib.errors import TcpmemError
from tcpmemlib.lab.netns import LabNetns

SCENARIOS = ("idle", "trickle", "recv_backlog", "send_backlog", "drained", "tuned")


class LabError(TcpmemError):
    """The lab could not reach a state (timeout, a process died, N connections not reachable)."""


class _Proc:
    """One child process and its line-protocol channel (stdin commands, stdout replies)."""

    def __init__(
        self, role: str, args: list[str], timeout_s: float, prefix: Sequence[str] = ()
    ) -> None:
        self.role = role
        self.timeout_s = timeout_s
        self._stderr: BinaryIO = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        # prefix: e.g. nsenter --net=PATH, which execs the program (the pid is the lab process's)
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", f"tcpmemlib.lab.{role}", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=False,
        )
        self.pid = self.proc.pid
        self._buf = b""
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)

    def stderr_tail(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return text[-2000:]

    def recv(self, what: str, timeout_s: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (self.timeout_s + 10 if timeout_s is None else timeout_s)
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LabError(f"tcpmem-{self.role} (pid {self.pid}): no answer to {what!r}")
            if self._sel.select(timeout=min(left, 1.0)):
                data = os.read(fd, 65536)
                if not data:
                    rc = self.proc.wait(timeout=5)
                    raise LabError(
                        f"tcpmem-{self.role} (pid {self.pid}) exited (status {rc}) during {what!r}"
                        + (f": {self.stderr_tail()}" if self.stderr_tail() else "")
                    )
                self._buf += data
        raw, self._buf = self._buf.split(b"\n", 1)
        line = raw.decode()
        if line.startswith("ok "):
            return dict(json.loads(line[3:]))
        raise LabError(f"tcpmem-{self.role} (pid {self.pid}): {what}: {line.removeprefix('err ')}")

    def call(self, command: str, timeout_s: float | None = None) -> dict[str, Any]:
        t = self.timeout_s if timeout_s is None else timeout_s
        line = f"{command} timeout_s={t}\n"
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise LabError(f"tcpmem-{self.role} (pid {self.pid}) is gone: {e}") from e
        return self.recv(command.split()[0], timeout_s=t + 10)

    def close(self, grace_s: float = 5.0) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                try:
                    self.proc.stdin.write(b"quit\n")
                    self.proc.stdin.flush()
                    self.proc.stdin.close()
                except OSError:
                    pass
                try:
                    self.proc.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    self.proc.send_signal(signal.SIGTERM)
                    try:
                        self.proc.wait(timeout=grace_s)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait(timeout=grace_s)
            else:
                self.proc.wait(timeout=grace_s)
        finally:
            for f in (self.proc.stdin, self.proc.stdout):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
            self._sel.close()
            self._stderr.close()


class LabRun:
    """A server process and a client process holding ``connections`` TCP connections on loopback.

    ``address`` is ``127.0.0.1`` or ``::1``; ``timeout_s`` bounds every wait; ``sndbuf`` / ``rcvbuf``
    (bytes, or None for the kernel defaults) are set with SO_SNDBUF / SO_RCVBUF on the server's
    listener before ``listen()``, so every server socket has them (the kernel doubles them).
    ``netns``: a ``LabNetns`` (created already) to run both processes in, on its own loopback:
    the container case (None: this process's namespace).
    Entering the context starts both processes and returns once all connections are established.
    """

    def __init__(
        self,
        connections: int = 1000,
        address: str = "127.0.0.1",
        timeout_s: float = 60,
        sndbuf: int | None = None,
        rcvbuf: int | None = None,
        netns: LabNetns | None = None,
    ) -> None:
        if address not in ("127.0.0.1", "::1"):
            raise ValueError(f"the lab runs on loopback only (127.0.0.1 or ::1), not {address!r}")
        if connections < 1:
            raise ValueError(f"connections must be >= 1, not {connections}")
        self.connections = connections
        self.address = address
        self.timeout_s = float(timeout_s)
        self.sndbuf = sndbuf
        self.rcvbuf = rcvbuf
        self.netns = netns
        self.server_pid = 0
        self.client_pid = 0
        self.port = 0
        self.current: str | None = None
        self._server: _Proc | None = None
        self._client: _Proc | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LabRun:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start both processes and wait until all connections are established."""
        common = ["--connections", str(self.connections), "--timeout", str(self.timeout_s)]
        common += ["--address", self.address]
        srv = [*common, "--sndbuf", str(self.sndbuf or 0), "--rcvbuf", str(self.rcvbuf or 0)]
        prefix = self.netns.prefix() if self.netns is not None else []
        self._server = _Proc("server", srv, self.timeout_s, prefix)
        self.server_pid = self._server.pid
        self.port = int(self._server.recv("start")["port"])
        self._client = _Proc("client", [*common, "--port", str(self.port)], self.timeout_s, prefix)
        self.client_pid = self._client.pid
        self._client.recv("start")
        self._wait_established()
        self.current = "idle"

    def close(self) -> None:
        """Stop both processes (quit, then SIGTERM, then SIGKILL) and wait for them by pid."""
        for p in (self._client, self._server):
            if p is not None:
                p.close()
        self._client = self._server = None

    @property
    def server(self) -> _Proc:
        if self._server is None:
            raise LabError("the lab is not running")
        return self._server

    @property
    def client(self) -> _Proc:
        if self._client is None:
            raise LabError("the lab is not running")
        return self._client

    # ---- helpers -----------------------------------------------------------------------------
    def _wait_established(self) -> None:
        try:
            self.server.call("wait_established")
            self.client.call("wait_established")
        except LabError as e:
            raise LabError(
                f"could not establish {self.connections} connections on {self.address}: {e}"
            ) from e

    def _quiet(self) -> None:
        """No sending, both sides reading, every queue empty."""
        for p in (self.server, self.client):
            p.call("trickle bytes_per_s=0")
            p.call("read on")
        for p in (self.server, self.client):
            p.call("wait_queues inq=0 outq=0")

    def stats(self) -> dict[str, dict[str, Any]]:
        """Both processes' counters: connections, SIOCINQ/SIOCOUTQ sums, min and max."""
        return {"server": self.server.call("stats"), "client": self.client.call("stats")}

    # ---- scenarios ---------------------------------------------------------------------------
    def scenario(self, name: str, **params: Any) -> dict[str, Any]:
        """Switch to scenario ``name`` and return once it is reached (see the module docstring).

        Returns ``{"scenario": name, "params": params, "server": stats, "client": stats}``.
        """
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")
        getattr(self, f"_s_{name}")(**params)
        self.current = name
        return {"scenario": name, "params": params, **self.stats()}

    def _s_idle(self) -> None:
        self._wait_established()
        self._quiet()

    def _s_drained(self) -> None:
        self._quiet()

    def _s_trickle(
        self, bits_per_s: int = 250_000, chunk: int = 128, warmup_s: float = 1.0
    ) -> None:
        per_side = max(1, int(bits_per_s) // 16)  # bytes/s each way: half of the total each
        for p in (self.server, self.client):
            p.call("read on")
            p.call(f"trickle bytes_per_s={per_side} chunk={int(chunk)}")
        before = {role: s["trickled_sum"] for role, s in self.stats().items()}
        time.sleep(warmup_s)
        for role, s in self.stats().items():
            if s["trickled_sum"] <= before[role]:
                raise LabError(f"trickle: tcpmem-{role} wrote nothing in {warmup_s} s: {s}")

    def _s_recv_backlog(self, bytes_per_conn: int = 65536) -> None:
        k = int(bytes_per_conn)
        self._quiet()
        self.server.call("read off")
        self.client.call(f"push bytes_per_conn={k}")
        self.server.call(f"wait_queues inq={k}")
        # and acked: a delayed ACK leaves the bytes in the clients' send queues (SIOCOUTQ) too
        self.client.call("wait_queues outq=0")

    def _s_send_backlog(self, max_bytes_per_conn: int = 4 << 20, settle_s: float = 0.5) -> None:
        self._quiet()
        self.client.call("read off")
        self.server.call(f"fill max_bytes_per_conn={int(max_bytes_per_conn)} settle_s={settle_s}")

    def _s_tuned(
        self,
        sndbuf: int | None = 65536,
        rcvbuf: int | None = 65536,
        then: str = "send_backlog",
        **params: Any,
    ) -> None:
        if then not in ("idle", "trickle", "recv_backlog", "send_backlog", "drained"):
            raise ValueError(f"tuned: cannot run {then!r} after reconnecting")
        self.sndbuf, self.rcvbuf = sndbuf, rcvbuf
        for p in (self.server, self.client):
            p.call("trickle bytes_per_s=0")
        self.server.call(f"reconnect sndbuf={sndbuf or 0} rcvbuf={rcvbuf or 0}")
        self.client.call("read on")
        self.client.call("reconnect")
        self.server.call("read on")
        self._wait_established()
        getattr(self, f"_s_{then}")(**params)
