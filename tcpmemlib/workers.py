"""Worker processes (``python -m tcpmemlib.workers``, fed over pipes) that never hang their caller.

``run_ordered("tcpmemlib.x.y:function", tasks, workers)`` yields ``function(task)`` for each task,
in task order, computed in ``workers`` processes. Each worker imports the function's module and
nothing of the caller (``multiprocessing`` would import the caller's ``__main__`` again in each:
an unguarded script would run itself there). This module imports only tcpmemlib.errors and
tcpmemlib.threads.

``Started(module, workers)`` starts the processes ahead of their tasks (each imports ``module`` at
once: ``python -m tcpmemlib.workers MODULE``); ``run_ordered(..., started=...)`` uses them first.

- A ``TcpmemError`` raised by the function is raised again with its type and fields, in its place
  in the order (the results before it are yielded first).
- Anything else is a ``WorkerError`` saying what happened: another exception in the function (its
  traceback text in ``remote_traceback``), a worker that exited or was killed (by which signal), a
  result that ran out of memory being read back, a process or thread that could not be started, an
  exception in the thread that talks to a worker.
- The caller waits in ``POLL_S`` steps and checks each worker: never forever. At most ``max(2,
  workers)`` tasks run or wait ahead of it, which bounds the memory held in results. However the
  generator ends, every worker is killed by its pid and reaped.

Protocol, both ways: an 8-byte little-endian length, then that many bytes of pickle. The caller
sends ``(module, attribute, task)``; the worker answers ``("ok", result)`` or ``("error", exception
or None, summary, traceback text)`` (the exception only if it is a ``TcpmemError``). A worker exits
at the end of its input (its caller gone); ``TCPMEM_WORKER=1`` (``in_worker()``) marks it.
"""

from __future__ import annotations

import _thread
import contextlib
import importlib
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from subprocess import PIPE, Popen
from typing import IO, Any

from tcpmemlib.errors import TcpmemError, WorkerError
from tcpmemlib.threads import room_for_threads

__all__ = ["ENV", "Started", "WorkerError", "in_worker", "run_ordered"]

ENV = "TCPMEM_WORKER"
POLL_S = 0.2  # the caller checks the workers this often while it waits for a result
_POLL_START_S = 0.001  # how often the caller looks whether a worker's thread started or ended
GRACE_S = 2.0  # a dead worker's thread has this long to report before the caller stops waiting
_LEN = struct.Struct("<Q")
# glibc malloc in a worker: blocks up to 32 MiB from the heap, and freed memory kept (up to 256 MiB)
# for the next task instead of returned to the kernel: each new page costs a fault (on the 2-vCPU
# VM of bench/README.md, ~20-50 us). An hour's load: 62k faults in its workers instead of 104-147k.
# Not set if the caller's environment sets GLIBC_TUNABLES; ignored by other C libraries.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456"
_FUNCTION = re.compile(r"(?P<module>\w+(?:\.\w+)*):(?P<attribute>[A-Za-z]\w*)")


def in_worker() -> bool:
    return os.environ.get(ENV) == "1"


def _send(stream: IO[bytes], data: bytes) -> None:
    stream.writelines((_LEN.pack(len(data)), data))
    stream.flush()


def _read(stream: IO[bytes], w: _Worker | None = None) -> bytes:
    """The next message's pickle; ``EOFError`` if the stream ends first. ``w`` is told it began."""
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError
    (size,) = _LEN.unpack(head)
    if w is not None:
        w.doing, w.size = "reading", size
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return data


def run_ordered(
    function: str,
    tasks: Sequence[Any],
    workers: int,
    *,
    allow: Sequence[str] = ("tcpmemlib",),
    started: Started | None = None,
) -> Iterator[Any]:
    """``function(task)`` for each task in ``workers`` processes; the results in task order.
    ``started``: processes already started for ``function``'s module, used first (and stopped at
    the end like the others).

    ``function``: ``"module:attribute"``, a public function in one of the packages ``allow`` names
    (a worker's ``__main__`` is this module, never the caller's script); else ``ValueError`` before
    anything starts. Results yielded before a ``WorkerError`` stay valid: the caller can do the rest."""
    match = _FUNCTION.fullmatch(function)
    if match is None or match["attribute"].startswith("_"):
        raise ValueError(f"not 'package.module:public_function': {function!r}")
    module = match["module"]
    _check(module, allow)
    if workers < 1:
        raise ValueError(f"workers must be 1 or more, not {workers}")
    if started is not None and started.module != module:
        raise ValueError(f"workers started for {started.module!r}, not for {function!r}")
    return _Run(function, list(tasks), workers, started).results() if tasks else iter(())


def _check(module: str, allow: Sequence[str]) -> None:
    packages = [allow] if isinstance(allow, str) else list(allow)
    if module == "__main__" or not any(module == p or module.startswith(p + ".") for p in packages):
        raise ValueError(f"{module!r}: workers only run functions in the packages {packages}")


def _spawn(module: str | None = None) -> Popen[bytes]:
    """One worker process (importing ``module`` as it starts, if given)."""
    # The workers import tcpmemlib from where this process did (a source checkout on sys.path too).
    path = os.pathsep.join(p for p in sys.path if p)
    env = dict(os.environ, **{ENV: "1", "PYTHONPATH": path})
    env.setdefault("GLIBC_TUNABLES", MALLOC_TUNABLES)
    command = [sys.executable, "-m", "tcpmemlib.workers", *([module] if module else [])]
    try:
        return Popen(command, stdin=PIPE, stdout=PIPE, env=env)
    except (OSError, MemoryError) as err:
        raise WorkerError(f"cannot start a worker process: {_summary(err)}") from err


def _kill(proc: Popen[bytes]) -> None:
    """Stop a worker by its pid and reap it (idle or busy: it holds no state worth a clean exit)."""
    if proc.poll() is None:
        proc.kill()  # by pid (Popen never signals a pid it has reaped)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)


class Started:
    """Worker processes started ahead of their tasks: each imports ``module`` (a few tenths of a
    second for pandas) while the caller is still preparing the tasks. Hand them to
    ``run_ordered(..., started=...)``, which stops them when it ends; ``close()`` stops those not
    handed over (a ``with`` block does). ``WorkerError`` if one cannot start."""

    def __init__(self, module: str, workers: int, *, allow: Sequence[str] = ("tcpmemlib",)) -> None:
        _check(module, allow)
        self.module = module
        self.procs: list[Popen[bytes]] = []
        try:
            for _ in range(workers):
                self.procs.append(_spawn(module))
        except WorkerError:
            self.close()
            raise

    def take(self) -> Popen[bytes] | None:
        return self.procs.pop(0) if self.procs else None

    def close(self) -> None:
        while self.procs:
            proc = self.procs.pop()
            _kill(proc)
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()  # type: ignore[union-attr]

    def __enter__(self) -> Started:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(eq=False)
class _Worker:
    """One worker process and what the thread that feeds it tasks and reads its answers is doing."""

    proc: Popen[bytes]
    started: bool = False  # its thread began to run (one can die of a MemoryError before that)
    running: bool = False  # its thread has not ended
    task: int | None = None  # the task it was last given
    doing: str = "starting"  # "sending", "waiting for", "reading" or "idle after" that task
    size: int = 0  # bytes of the answer being read
    done: bool = False  # its thread ran out of tasks
    dead_since: float | None = None  # when the caller first saw the process gone


class _Run:
    """One call of ``run_ordered``: the state its caller and its workers' threads share."""

    def __init__(
        self, function: str, tasks: list[Any], workers: int, started: Started | None = None
    ) -> None:
        self.function, self.tasks, self.n_workers = function, tasks, workers
        self.started = started
        self.module, self.attribute = function.split(":")
        self.window = max(2, workers)
        self.workers: list[_Worker] = []
        self.cond = threading.Condition()
        self.answers: dict[int, tuple[int, tuple[Any, ...]]] = {}  # task -> (pid, answer)
        self.next = 0  # the next task to hand out
        self.yielded = 0  # results handed to the caller
        self.failure: tuple[_Worker, BaseException] | None = None
        self.stopping = False

    def results(self) -> Iterator[Any]:
        try:
            self._start()
            for k in range(len(self.tasks)):
                pid, answer = self._wait_for(k)
                if answer[0] != "ok":
                    _, exc, summary, text = answer  # exc: a TcpmemError of the task, or None
                    why = f"task {k} ({self.function}) failed in worker pid {pid}: {summary}"
                    raise exc or WorkerError(why, pid=pid, task=k, remote_traceback=text)
                yield answer[1]
                del answer
        finally:
            self._stop()

    def _start(self) -> None:
        if not room_for_threads():  # (a thread started now could abort the process: threads.py)
            left = "too little address space left (RLIMIT_AS) for the threads that talk to workers"
            raise WorkerError(left)
        for _ in range(self.n_workers):
            proc = self.started.take() if self.started is not None else None
            self.workers.append(_Worker(proc or _spawn()))
        for w in self.workers:
            try:  # (not threading.Thread: its start() waits forever for a thread that died)
                _thread.start_new_thread(self._feed, (w,))
            except (RuntimeError, MemoryError) as err:  # "can't start new thread"
                why = f"cannot start a thread to talk to worker pid {w.proc.pid}: {_summary(err)}"
                raise WorkerError(why, pid=w.proc.pid) from err
        deadline = time.monotonic() + GRACE_S
        for w in self.workers:
            while not w.started and time.monotonic() < deadline:
                time.sleep(_POLL_START_S)
            if not w.started:  # it died before it ran (a MemoryError as it started)
                why = f"the thread to talk to worker pid {w.proc.pid} did not start"
                raise WorkerError(why, pid=w.proc.pid)

    def _take(self) -> int | None:
        """The next task to run, once it is at most ``window`` ahead of the caller; None at the end."""
        with self.cond:
            while not self.stopping and self.yielded + self.window <= self.next < len(self.tasks):
                self.cond.wait()
            if self.stopping or self.next >= len(self.tasks):
                return None
            self.next += 1
            return self.next - 1

    def _feed(self, w: _Worker) -> None:
        """A worker's thread: send it a task, read its answer, again. Whatever it meets is reported."""
        w.started = w.running = True
        try:
            while (k := self._take()) is not None:
                w.task, w.doing = k, "sending"
                _send(w.proc.stdin, pickle.dumps((self.module, self.attribute, self.tasks[k]), -1))
                w.doing = "waiting for"
                answer = pickle.loads(_read(w.proc.stdout, w))
                with self.cond:
                    self.answers[k] = (w.proc.pid, answer)
                    self.cond.notify_all()
                w.doing = "idle after"
                del answer
            w.done = True
        except BaseException as err:  # everything, handed to the caller
            with self.cond:
                if self.failure is None:
                    self.failure = (w, err)
                self.cond.notify_all()
        finally:
            w.running = False

    def _wait_for(self, k: int) -> tuple[int, tuple[Any, ...]]:
        with self.cond:
            while k not in self.answers:
                if self.failure is not None:
                    w, err = self.failure
                    raise self._describe(w, err) from err
                self._check_workers()
                self.cond.wait(POLL_S)
            self.yielded = k + 1
            self.cond.notify_all()
            return self.answers.pop(k)

    def _check_workers(self) -> None:
        """Raise if a worker is gone and its thread has not said so within ``GRACE_S``."""
        for w in self.workers:
            if w.done or self.failure is not None or w.proc.poll() is None:
                continue
            w.dead_since = w.dead_since or time.monotonic()
            if time.monotonic() - w.dead_since > GRACE_S:  # its pipe is held open elsewhere
                raise self._describe(w)

    def _describe(self, w: _Worker, err: BaseException | None = None) -> WorkerError:
        """What happened to worker ``w`` (dead, or ``err`` in its thread), in words."""
        pid, task = w.proc.pid, w.task
        what = f"task {task} ({self.function})"
        if err is not None and not isinstance(err, EOFError | BrokenPipeError):
            if isinstance(err, MemoryError) and w.doing == "reading":
                reason = f"out of memory (MemoryError) reading the {w.size / 2**20:.1f} MiB result"
                return WorkerError(f"{reason} of {what} from worker pid {pid}", pid=pid, task=task)
            reason = f"the thread talking to worker pid {pid} failed {w.doing} {what}"
            return WorkerError(f"{reason}: {_summary(err)}", pid=pid, task=task)
        try:  # the worker is gone, or its output ended
            code = w.proc.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            return WorkerError(f"worker pid {pid} stopped answering {what}", pid=pid, task=task)
        sig = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        how = f"exited with status {code}" if code >= 0 else f"was killed by {sig}"
        hint = " (which the out-of-memory killer sends)" if code == -signal.SIGKILL else ""
        when = "after" if w.doing == "idle after" else "while running"
        return WorkerError(f"worker pid {pid} {how} {when} {what}{hint}", pid=pid, task=task)

    def _stop(self) -> None:
        """Stop every worker by its pid and reap it, however the run ended."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        deadline = time.monotonic() + GRACE_S
        for w in self.workers:
            _kill(w.proc)
            while w.running and time.monotonic() < deadline:  # (its reads end with the process)
                time.sleep(_POLL_START_S)
            if not w.running:  # never close a stream in use
                for stream in (w.proc.stdin, w.proc.stdout):
                    with contextlib.suppress(OSError):
                        stream.close()  # type: ignore[union-attr]


def _summary(err: BaseException) -> str:
    return "".join(traceback.format_exception_only(err)).strip()


def _serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """A worker's loop: each task's answer, until the end of the input."""
    functions: dict[tuple[str, str], Callable[[Any], Any]] = {}
    while True:
        try:
            data = _read(source)
        except EOFError:
            return
        task = None
        try:  # even a task that cannot be unpickled here is answered
            module, attribute, task = pickle.loads(data)
            if (module, attribute) not in functions:
                functions[module, attribute] = getattr(importlib.import_module(module), attribute)
            data = pickle.dumps(("ok", functions[module, attribute](task)), -1)
        except BaseException as err:  # sent back: the caller decides
            summary, text = _summary(err), "".join(traceback.format_exception(err))
            try:  # the exception itself only if it is a TcpmemError (a type the caller knows)
                data = pickle.dumps(
                    ("error", err if isinstance(err, TcpmemError) else None, summary, text), -1
                )
            except Exception:  # a field that cannot be pickled: as text only
                data = pickle.dumps(("error", None, summary, text), -1)
        _send(sink, data)
        del data, task  # not held while the next task runs


def main() -> int:
    os.environ[ENV] = "1"
    if len(sys.argv) > 1:  # started ahead of its tasks: their module imported now
        with contextlib.suppress(Exception):  # (an import that fails is reported by its task)
            importlib.import_module(sys.argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the caller, which stops us
    # The protocol owns the original stdout; anything else that writes to fd 1 (a print, a C
    # library) goes to stderr instead of corrupting it.
    sink = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with contextlib.suppress(BrokenPipeError):  # the caller is gone: nobody wants the answer
        _serve(sys.stdin.buffer, sink)
    return 0


if __name__ == "__main__":
    sys.exit(main())
