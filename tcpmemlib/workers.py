"""Worker processes for ``load_capture``: ``python -m tcpmemlib.workers``, fed over pipes.

``multiprocessing``'s spawned workers import the caller's ``__main__`` again, so a plain script
without an ``if __name__ == "__main__":`` guard would run itself in each of them; ``load_capture``
could only use workers from notebooks and ``python -c``. These workers are started as
``python -m tcpmemlib.workers`` instead: they import tcpmemlib and nothing of the caller, from any
script, guarded or not.

Protocol (both directions): an 8-byte little-endian length, then that many bytes of pickle. The
parent sends ``(function name, argument)`` tasks (the function is looked up in
``tcpmemlib.capture``); the worker answers ``("ok", result)`` or ``("error", exception)``. It exits
at the end of its input. Environment ``TCPMEM_WORKER=1`` marks it, so that it never starts
workers of its own.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

__all__ = ["WorkerError", "in_worker", "run_ordered"]

ENV = "TCPMEM_WORKER"
_LEN = struct.Struct("<Q")


class WorkerError(RuntimeError):
    """A worker process died or could not be started."""


def in_worker() -> bool:
    return os.environ.get(ENV) == "1"


def _send(stream: IO[bytes], obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LEN.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError
    (size,) = _LEN.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def run_ordered(function: str, tasks: list[Any], workers: int) -> Iterator[Any]:
    """``tcpmemlib.capture.<function>(task)`` for each task in ``workers`` processes; results are
    yielded in task order. Raises ``WorkerError`` if a worker dies (results already yielded stay
    valid; the caller can do the rest itself); an exception raised by the function is re-raised.
    The processes are stopped (by pid) when the generator ends, however it ends."""
    # The workers import tcpmemlib from where this process did (a source checkout on sys.path too).
    path = os.pathsep.join(p for p in sys.path if p)
    env = dict(os.environ, **{ENV: "1", "PYTHONPATH": path})
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[int, tuple[str, Any]] = {}
    cond = threading.Condition()
    next_task = iter(range(len(tasks)))
    failed: list[BaseException] = []
    yielded = [0]  # results handed to the caller so far
    window = 2 * workers  # results ahead of the caller at most: a slow caller bounds the memory

    def feed(proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            while True:
                with cond:
                    k = next(next_task, None)
                    while k is not None and k >= yielded[0] + window and not failed:
                        cond.wait()
                if k is None or failed:
                    return
                _send(proc.stdin, (function, tasks[k]))
                answer = _receive(proc.stdout)
                with cond:
                    results[k] = answer
                    cond.notify_all()
        except (OSError, EOFError, pickle.UnpicklingError) as err:
            with cond:
                failed.append(err)
                cond.notify_all()

    threads: list[threading.Thread] = []
    try:
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tcpmemlib.workers"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                )
            )
        for proc in procs:
            thread = threading.Thread(target=feed, args=(proc,), daemon=True)
            thread.start()
            threads.append(thread)
        for k in range(len(tasks)):
            with cond:
                while k not in results and not failed:
                    cond.wait()
                if k not in results:
                    raise WorkerError(f"a worker process failed: {failed[0]!r}")
                status, value = results.pop(k)
                yielded[0] = k + 1
                cond.notify_all()
            if status == "error":
                raise value
            yield value
            del value
    except OSError as err:
        raise WorkerError(f"cannot start worker processes: {err}") from err
    finally:
        with cond:
            failed.append(GeneratorExit())  # feeders stop taking tasks
        for proc in procs:  # end of input: an idle worker exits by itself
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # busy with a task nobody will read: stop it
                proc.kill()
                proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
        for thread in threads:
            thread.join(timeout=30)


def _serve(source: IO[bytes], sink: IO[bytes], lookup: Callable[[str], Callable[..., Any]]) -> None:
    while True:
        try:
            name, task = _receive(source)
        except EOFError:
            return
        try:
            answer: tuple[str, Any] = ("ok", lookup(name)(task))
        except Exception as err:  # sent back and re-raised in the parent
            answer = ("error", err)
        _send(sink, answer)


def _capture_function(name: str) -> Callable[..., Any]:
    import importlib

    module, _, attr = name.partition(":")
    if not module.startswith("tcpmemlib."):
        raise ValueError(f"not a worker task: {name!r}")
    return getattr(importlib.import_module(module), attr)


def main(argv: Iterable[str] | None = None) -> int:
    os.environ[ENV] = "1"
    # The protocol owns the original stdout; anything else that writes to fd 1 (a print, a C
    # library) goes to stderr instead of corrupting it.
    sink = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _serve(sys.stdin.buffer, sink, _capture_function)
    return 0


if __name__ == "__main__":
    sys.exit(main())
