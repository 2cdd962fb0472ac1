"""tcpmemlib.workers: real `python -m tcpmemlib.workers` processes, each way a worker can fail.

The task functions below run in the workers, which import this module by its name (`allow=ALLOW`);
every test is bounded in time and checks that no worker outlives it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from worker_helpers import worker_children

from tcpmemlib.errors import CaptureError, ParseError, WorkerError
from tcpmemlib.workers import GRACE_S, Started, run_ordered

ALLOW = (__name__,)
REPO = Path(__file__).resolve().parent.parent


def _fn(name: str) -> str:
    return f"{__name__}:{name}"


# --- tasks (they run in the worker processes) ---


def task_square(x: float) -> tuple[float, str | None, int]:
    time.sleep(0.2 if x == 0 else 0.0)  # the first task ends last
    return x * x, os.environ.get("TCPMEM_WORKER"), os.getpid()


def task_mark_start(arg: tuple[str, int]) -> int:
    Path(arg[0], str(arg[1])).touch()
    return arg[1]


def task_raise(kind: str) -> None:
    if kind == "parse":
        raise ParseError("/cap/s1/meminfo.txt", 7, "MemTotal: lots kB", "value is not an integer")
    if kind == "capture":
        raise CaptureError("/cap", "no snapshot directories")
    if kind == "exit":
        sys.exit(4)
    raise KeyError(kind)


def task_die(how: str) -> None:
    if how == "live":
        return
    if how == "abort":
        os.abort()
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(3)


def task_noisy(x: int) -> int:
    print("a print in a task")
    os.write(1, b"bytes written to fd 1 in a task\n")
    return x


def task_unpicklable(_: Any) -> Any:
    return lambda: None


def _out_of_memory() -> None:
    raise MemoryError


class _Bomb:
    """Pickles fine; unpickling it in the caller raises MemoryError, as a huge result would."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_out_of_memory, ())


def task_bomb(_: Any) -> _Bomb:
    return _Bomb()


def task_orphan_then_die(pidfile: str) -> None:
    """Leave a child that holds the worker's output pipe open, then die: no EOF reaches the caller."""
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    Path(pidfile).write_text(str(pid))
    os.kill(os.getpid(), signal.SIGKILL)


def task_sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def task_pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def task_mark_then_sleep(arg: tuple[str, int]) -> int:
    task_mark_start(arg)
    time.sleep(30)
    return arg[1]


def task_frame(mib: int) -> pd.DataFrame:
    """A frame of ``mib`` MiB, as a chunk of a large capture's socket rows."""
    rows = mib * 2**20 // 16
    return pd.DataFrame({"rx_bytes": np.arange(rows), "tx_bytes": np.arange(rows)})


# --- helpers ---


def _in_session(sid: int) -> list[int]:
    """The processes of session ``sid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # the 6th field of stat: session id
            found.append(int(stat.parent.name))
    return found


def _fails(function: str, tasks: list[Any], match: str, workers: int = 1) -> WorkerError:
    start = time.monotonic()
    with pytest.raises(WorkerError, match=match) as info:
        list(run_ordered(_fn(function), tasks, workers, allow=ALLOW))
    assert time.monotonic() - start < 4 * GRACE_S + 10
    assert worker_children() == []
    return info.value


_HARNESS = """
import os, resource, sys, threading
from pathlib import Path
from tcpmemlib.workers import run_ordered
{setup}
kept = []  # as a loader keeps every chunk's frames
try:
    for result in run_ordered({function!r}, {tasks!r}, 2, allow=("test_workers",)):
        kept.append(result)
    print("finished")
except Exception as err:
    print(type(err).__name__, err, repr(err.__cause__))
left = [p for c in Path("/proc/self/task").glob("*/children") for p in c.read_text().split()]
print("left:", left)
"""


def _harness(setup: str, function: str, tasks: list[Any], timeout: float = 120) -> str:
    """Run ``run_ordered`` in a fresh Python after ``setup``; its output (it must end in time)."""
    code = _HARNESS.format(setup=textwrap.dedent(setup), function=_fn(function), tasks=tasks)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.rstrip().endswith("left: []"), run.stdout  # no worker outlives the run
    return run.stdout


# --- tests ---


@pytest.mark.timeout(60)
def test_workers_keep_freed_memory_unless_the_caller_tunes_malloc(monkeypatch):
    """Workers get MALLOC_TUNABLES (fewer page faults), unless GLIBC_TUNABLES is already set."""
    from tcpmemlib.workers import MALLOC_TUNABLES

    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    got = list(run_ordered("os:getenv", ["GLIBC_TUNABLES"], 1, allow=("os",)))
    assert got == [MALLOC_TUNABLES]
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=1")
    got = list(run_ordered("os:getenv", ["GLIBC_TUNABLES"], 1, allow=("os",)))
    assert got == ["glibc.malloc.arena_max=1"]


def test_results_come_in_task_order_from_worker_processes():
    results = list(run_ordered(_fn("task_square"), [0, 1, 2, 3, 4], 2, allow=ALLOW))
    assert [r[0] for r in results] == [0, 1, 4, 9, 16]
    assert {r[1] for r in results} == {"1"}  # TCPMEM_WORKER is set in the workers
    assert len({r[2] for r in results}) == 2 and os.getpid() not in {r[2] for r in results}
    assert worker_children() == []


@pytest.mark.timeout(60)
def test_at_most_two_tasks_run_ahead_of_the_caller(tmp_path: Path):
    results = run_ordered(
        _fn("task_mark_start"), [(str(tmp_path), k) for k in range(8)], 2, allow=ALLOW
    )
    assert next(results) == 0
    time.sleep(1.5)  # a slow caller: the workers start tasks 1 and 2, no more
    assert sorted(int(p.name) for p in tmp_path.iterdir()) == [0, 1, 2]
    assert list(results) == list(range(1, 8))
    assert worker_children() == []


@pytest.mark.timeout(60)
def test_a_real_tcpmemlib_function_and_its_parse_error_with_every_field():
    function = "tcpmemlib.parsers.meminfo:parse"
    good, bad = "MemTotal: 1000 kB\nMemFree: 10 kB\n", "MemTotal: 1000 kB\nMemFree: x kB\n"
    results = run_ordered(function, [good, bad, good], 2)  # tcpmemlib is allowed by default
    assert list(next(results)["field"]) == ["MemTotal", "MemFree"]  # results before the error
    with pytest.raises(ParseError) as info:
        next(results)
    err = info.value
    assert (err.path, err.line_no, err.line, err.reason) == (
        None,
        2,
        "MemFree: x kB",
        "value is not an integer",
    )
    assert worker_children() == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["parse", "capture"])
def test_a_tcpmem_error_in_a_task_is_raised_again_with_its_type_and_fields(kind: str):
    with pytest.raises((ParseError, CaptureError)) as info:
        list(run_ordered(_fn("task_raise"), [kind], 1, allow=ALLOW))
    want = {
        "parse": ParseError(
            "/cap/s1/meminfo.txt", 7, "MemTotal: lots kB", "value is not an integer"
        ),
        "capture": CaptureError("/cap", "no snapshot directories"),
    }[kind]
    assert type(info.value) is type(want) and info.value.__dict__ == want.__dict__
    assert str(info.value) == str(want)
    assert worker_children() == []


@pytest.mark.timeout(60)
def test_any_other_exception_in_a_task_is_a_worker_error_with_its_traceback():
    err = _fails(
        "task_raise", ["fine", "other"], r"task 0 .*task_raise.* worker pid \d+: KeyError: 'fine'"
    )
    assert err.task == 0 and err.pid is not None and err.pid != os.getpid()
    assert err.remote_traceback is not None and "in task_raise" in err.remote_traceback
    _fails("task_raise", ["exit"], r"SystemExit: 4")
    _fails("task_unpicklable", [0], r"task 0 .*(pickle|Pickl)")
    _fails("no_such_task", [0], r"AttributeError: .*no_such_task")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("how", "match"),
    [
        ("abort", r"worker pid \d+ was killed by SIGABRT while running task 1 \(.*task_die\)"),
        (
            "kill",
            r"worker pid \d+ was killed by SIGKILL while running task 1 .*out-of-memory killer",
        ),
        ("exit", r"worker pid \d+ exited with status 3 while running task 1"),
    ],
)
def test_a_worker_that_dies_ends_the_run_with_what_happened(how: str, match: str):
    err = _fails("task_die", ["live", how, "live"], match, workers=1)
    assert err.task == 1 and err.pid is not None


@pytest.mark.timeout(60)
def test_a_worker_killed_between_tasks_is_noticed_while_the_caller_waits_for_another():
    results = run_ordered(_fn("task_pid_after"), [0, 15, 0, 0], 2, allow=ALLOW)
    idle = next(results)  # the other worker is in task 1 for 15 s; this one does task 2, then waits
    time.sleep(2)
    os.kill(idle, signal.SIGKILL)  # as the out-of-memory killer would
    start = time.monotonic()
    with pytest.raises(WorkerError, match=rf"worker pid {idle} was killed by SIGKILL after task 2"):
        next(results)  # waits for task 1, in the other worker
    assert time.monotonic() - start < GRACE_S + 5
    assert worker_children() == []


@pytest.mark.timeout(60)
def test_memory_error_while_reading_a_result_is_a_worker_error():
    err = _fails(
        "task_bomb", [0, 1], r"out of memory \(MemoryError\) reading the .* MiB result of task"
    )
    assert isinstance(err.__cause__, MemoryError)


@pytest.mark.timeout(60)
def test_a_task_that_cannot_be_sent_or_read_is_a_worker_error():
    _fails("task_square", [1, lambda: 2], r"thread talking to worker pid \d+ failed sending task 1")
    _fails("task_square", [_Bomb()], r"task 0 .* failed in worker pid \d+: MemoryError")


@pytest.mark.timeout(60)
def test_prints_in_a_task_do_not_corrupt_the_answers():
    assert list(run_ordered(_fn("task_noisy"), [1, 2, 3], 2, allow=ALLOW)) == [1, 2, 3]


@pytest.mark.timeout(60)
def test_a_dead_worker_whose_pipe_stays_open_does_not_hang_the_caller(tmp_path: Path):
    pidfile = tmp_path / "orphan.pid"
    try:
        _fails("task_orphan_then_die", [str(pidfile)], r"killed by SIGKILL", workers=1)
    finally:
        if pidfile.exists():  # the orphan is ours to stop (by pid)
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


@pytest.mark.timeout(60)
def test_stopping_early_stops_busy_workers():
    results = run_ordered(_fn("task_sleep"), [0.0, 30.0, 30.0, 30.0], 2, allow=ALLOW)
    assert next(results) == 0.0
    start = time.monotonic()
    results.close()
    assert time.monotonic() - start < 10
    assert worker_children() == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "function",
    [
        "tcpmemlib.parsers.meminfo",
        "tcpmemlib.capture:_load_chunk",
        "os:getcwd",
        "__main__:main",
        ":x",
    ],
)
def test_the_function_is_a_public_one_in_an_allowed_package(function: str):
    with pytest.raises(ValueError, match="package"):
        run_ordered(function, [1], 2)  # refused before anything starts
    assert worker_children() == []
    with pytest.raises(ValueError, match="workers must be"):
        run_ordered("tcpmemlib.parsers.meminfo:parse", [1], 0)


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    ("room_mib", "said"),
    [
        # room for threads, but not for a 512 MiB stack: `RuntimeError: can't start new thread`
        (384, "WorkerError cannot start a thread to talk to worker pid"),
        # under THREAD_ROOM_BYTES left: no thread is tried (glibc may abort a starting thread)
        (200, "WorkerError too little address space left (RLIMIT_AS) for the threads"),
    ],
)
def test_a_thread_that_cannot_start_is_a_worker_error(room_mib: int, said: str):
    setup = f"""
    vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1])
    resource.setrlimit(resource.RLIMIT_AS, (vm * 1024 + {room_mib} * 2**20, resource.RLIM_INFINITY))
    threading.stack_size(512 * 2**20)
    """
    out = _harness(setup, "task_square", [1, 2, 3])
    assert said in out, out
    if room_mib > 256:
        assert "can't start new thread" in out, out


@pytest.mark.timeout(150)
def test_a_load_under_a_tight_address_space_limit_ends_with_a_clear_error():
    """The caller keeps every 64 MiB result, as a loader keeps its chunks' frames, under a limit of
    its own size + 512 MiB (about 0.9 GB here): reading a result runs out of memory after a few.
    Before, the MemoryError killed the thread silently and the caller waited forever."""
    setup = """
    import pandas
    vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1])
    resource.setrlimit(resource.RLIMIT_AS, (vm * 1024 + 512 * 2**20, resource.RLIM_INFINITY))
    """
    out = _harness(setup, "task_frame", [64] * 30)
    assert "WorkerError out of memory (MemoryError) reading the 64.0 MiB result of task" in out, out


@pytest.mark.timeout(120)
def test_ctrl_c_stops_the_caller_and_its_workers_with_one_traceback(tmp_path: Path):
    """Ctrl-C reaches the whole process group: the workers ignore it and the caller stops them."""
    tasks = [(str(tmp_path), k) for k in range(4)]
    code = (
        "from tcpmemlib.workers import run_ordered\n"
        f"list(run_ordered({_fn('task_mark_then_sleep')!r}, {tasks!r}, 2, allow={ALLOW!r}))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(list(tmp_path.iterdir())) == 2  # both workers are in a task
        os.killpg(proc.pid, signal.SIGINT)
        start = time.monotonic()
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - start < 10
        assert proc.returncode != 0 and err.count("Traceback") == 1, err
        assert err.rstrip().endswith("KeyboardInterrupt"), err
        assert _in_session(proc.pid) == []  # no worker left
    finally:
        for pid in _in_session(proc.pid):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def task_modules(_: int) -> tuple[int, bool]:
    return os.getpid(), "tcpmemlib.chunks" in sys.modules


@pytest.mark.timeout(60)
def test_workers_started_ahead_import_their_module_and_serve_the_run():
    started = Started(__name__, 2, allow=ALLOW)
    pids = {p.pid for p in started.procs}
    assert len(pids) == 2
    results = list(run_ordered(_fn("task_modules"), [0, 1, 2, 3], 2, allow=ALLOW, started=started))
    assert {pid for pid, _ in results} == pids  # the started processes ran the tasks
    assert started.procs == []  # handed over, and stopped with the run
    assert worker_children() == []


@pytest.mark.timeout(60)
def test_workers_started_ahead_and_not_used_are_stopped_by_close():
    with Started("tcpmemlib.chunks", 2) as started:
        pids = [p.pid for p in started.procs]
        deadline = time.monotonic() + 30  # each imports tcpmemlib.chunks (pandas) at once
        while time.monotonic() < deadline:
            maps = [Path(f"/proc/{pid}/maps").read_text() for pid in pids]
            if all("pandas" in m for m in maps):
                break
            time.sleep(0.1)
        assert all("pandas" in m for m in maps)
    assert started.procs == [] and worker_children() == []


def test_workers_started_for_another_module_are_refused():
    with Started(__name__, 1, allow=ALLOW) as started, pytest.raises(ValueError, match="started"):
        run_ordered("tcpmemlib.parsers.meminfo:parse", ["x"], 1, started=started)
    with pytest.raises(ValueError, match="only run functions"):
        Started("os", 1)


@pytest.mark.timeout(60)
def test_a_thread_that_dies_as_it_starts_is_a_worker_error_not_a_hang(monkeypatch):
    """Under a tight address-space limit a new thread can die of a MemoryError before it runs
    (``threading.Thread.start`` then waited forever): the caller gives up after ``GRACE_S``."""
    import tcpmemlib.workers as workers_mod

    real = workers_mod._thread.start_new_thread

    def dying(function: object, args: tuple[object, ...]) -> int:
        def die() -> None:
            raise MemoryError

        return real(die, ())

    monkeypatch.setattr(workers_mod._thread, "start_new_thread", dying)
    start = time.monotonic()
    with pytest.raises(WorkerError, match="did not start"):
        list(run_ordered(_fn("task_square"), [1, 2], 2, allow=ALLOW))
    assert time.monotonic() - start < GRACE_S + 10
    assert worker_children() == []
