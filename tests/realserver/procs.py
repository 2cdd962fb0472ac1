"""Processes with bounded lifetimes, stopped by their pid (never by name); UTC timestamps."""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO = TESTS_DIR.parent
COLLECT = REPO / "collect.sh"


def utc_now() -> str:
    """The time now as collect.sh's phases.tsv wants it: UTC ISO-8601 with microseconds."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (in the current network namespace)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict[str, str]:
    """The environment for a child ``python -m realserver.X``: tests/ on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(TESTS_DIR), str(REPO), env.get("PYTHONPATH", "")) if p
    )
    return env


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the process that started it dies (Linux
    PR_SET_PDEATHSIG), so a killed driver leaves no server behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def set_comm(name: str) -> None:
    """Name this process (``/proc/PID/comm``, what ps and ``ss -p`` print; at most 15 bytes) so
    that a capture tells the workload's own processes from every other ``python``. Call it from
    the main thread."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_name = 15
    if libc.prctl(pr_set_name, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl(PR_SET_NAME, {name!r})")


def start(argv: Sequence[str], **kw) -> subprocess.Popen:
    """Start ``argv`` so that it dies with us (see ``die_with_parent``)."""
    return subprocess.Popen(list(argv), preexec_fn=die_with_parent, **kw)


def term_is_exit() -> None:
    """Make SIGTERM raise SystemExit, so that ``finally`` blocks stop our children."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> int | None:
    """Stop ``proc`` by its pid: SIGTERM, wait up to ``timeout_s``, then SIGKILL. Returns the exit
    status (None if it could not be reaped)."""
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None


def wait_until(check, timeout_s: float, what: str, step_s: float = 0.05):
    """Call ``check()`` until it returns something truthy; RuntimeError naming ``what`` after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(step_s)


def snapshot(capture_dir: Path, bundle: bool = False, timeout_s: float = 60.0) -> str:
    """One collect.sh snapshot into ``capture_dir`` (``-n 1``; ``-b`` bundles the directory into
    ``capture_dir.tar.gz``; ``-N``: the workload's namespace only). Returns the new snapshot's name."""
    before = {p.name for p in capture_dir.iterdir()} if capture_dir.is_dir() else set()
    argv: Sequence[str] = ["sh", str(COLLECT), "-N", "-o", str(capture_dir), "-n", "1", "-i", "0"]
    if bundle:
        argv = [*argv, "-b"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"collect.sh exited {run.returncode}: {run.stderr.strip()}")
    new = sorted(
        p.name for p in capture_dir.iterdir() if p.name[:1].isdigit() and p.name not in before
    )
    if len(new) != 1:
        raise RuntimeError(f"collect.sh -n 1 made {len(new)} snapshots in {capture_dir}")
    return new[0]
