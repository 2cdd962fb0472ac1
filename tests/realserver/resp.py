"""A minimal Redis protocol (RESP2) client: enough for PING, CONFIG, CLIENT LIST, INFO, PUBLISH and
SUBSCRIBE, without a dependency."""

from __future__ import annotations

import socket


def encode(*args: str | bytes | int) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        parts += [f"${len(b)}\r\n".encode(), b, b"\r\n"]
    return b"".join(parts)


class Resp:
    """One connection. ``call(*args)`` sends a command and returns its reply (str for bulk/simple
    strings, int, list; RuntimeError for a Redis error reply)."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout_s: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Resp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line, self.buf = self.buf[:i], self.buf[i + 2 :]
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(f"redis: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError(f"redis: unexpected reply line {line!r}")

    def send(self, *args: str | bytes | int) -> None:
        self.sock.sendall(encode(*args))

    def call(self, *args: str | bytes | int):
        self.send(*args)
        return self.reply()
