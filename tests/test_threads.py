"""tcpmemlib.threads: calls spread over threads, never a wait on a thread that did not start."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from tcpmemlib import threads
from tcpmemlib.threads import map_threads


def test_results_in_item_order_from_more_than_one_thread():
    seen: set[int] = set()

    def call(x: int) -> int:
        seen.add(threading.get_ident())
        time.sleep(0.05)
        return x * x

    assert map_threads(call, range(8), 2) == [x * x for x in range(8)]
    assert len(seen) == 2


def test_the_first_exception_in_item_order_is_raised_after_every_call():
    done: list[int] = []

    def call(x: int) -> int:
        done.append(x)
        if x in (2, 5):
            raise ValueError(f"bad {x}")
        return x

    with pytest.raises(ValueError, match="bad 2"):
        map_threads(call, range(7), 2)
    assert sorted(done) == list(range(7))


@pytest.mark.timeout(30)
def test_a_thread_that_cannot_start_leaves_the_work_to_the_caller(monkeypatch):
    def refuse(function: object, args: tuple[object, ...]) -> int:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threads._thread, "start_new_thread", refuse)
    assert map_threads(lambda x: x + 1, [1, 2, 3], 4) == [2, 3, 4]


@pytest.mark.timeout(30)
def test_a_thread_that_dies_as_it_starts_is_not_waited_for(monkeypatch):
    """What a MemoryError in a new thread's bootstrap does under a tight address-space limit
    (``threading.Thread.start`` waited forever for it): the caller makes every call itself."""
    real = threads._thread.start_new_thread

    def dying(function: object, args: tuple[object, ...]) -> int:
        def die() -> None:
            raise MemoryError

        return real(die, ())

    monkeypatch.setattr(threads._thread, "start_new_thread", dying)
    me = threading.get_ident()
    callers: set[int] = set()

    def call(x: int) -> int:
        callers.add(threading.get_ident())
        return -x

    assert map_threads(call, range(5), 2) == [0, -1, -2, -3, -4]
    assert callers == {me}


@pytest.mark.timeout(60)
def test_no_thread_is_started_with_too_little_address_space_left():
    """Under RLIMIT_AS with less than THREAD_ROOM_BYTES left, a starting thread could make glibc
    abort the process (thread-local data it cannot allocate): the calls run in the caller."""
    code = textwrap.dedent(
        """
        import resource, threading
        from tcpmemlib.threads import THREAD_ROOM_BYTES, map_threads, room_for_threads
        assert room_for_threads()
        vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1])
        room = THREAD_ROOM_BYTES // 2
        resource.setrlimit(resource.RLIMIT_AS, (vm * 1024 + room, resource.RLIM_INFINITY))
        assert not room_for_threads()
        print(len(set(map_threads(lambda x: threading.get_ident(), range(6), 2))))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1"
