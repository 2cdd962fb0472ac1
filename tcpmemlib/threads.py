"""A few calls at once in threads, never waiting on a thread that could not start.

Used where the work is copies, decoding and first touches of new memory, which numpy and Arrow do
without the GIL (the ss parser's columns, joining a load's frames, reading and writing the cache).
Under a tight address-space limit a new thread can die of a ``MemoryError`` before it runs
anything; ``threading.Thread.start`` then waits forever for it to say it started (and
``concurrent.futures`` for its results). So helpers are started with ``_thread.start_new_thread``,
which does not wait, and the caller's thread works through the same list: every call is made even
if no helper ever runs, and the caller waits only for calls a helper has taken. A thread that
starts can still kill the process: glibc aborts it ("cannot allocate memory for thread-local
data") when the thread's first use of a library's thread-local storage finds no memory. So under
an address-space limit (``RLIMIT_AS``) with less than ``THREAD_ROOM_BYTES`` left, no thread is
started at all (``room_for_threads``): the calls run one after the other.
"""

from __future__ import annotations

import _thread
import resource
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["THREAD_ROOM_BYTES", "map_threads", "room_for_threads"]

POLL_S = 0.001  # how often the caller looks whether the helpers' calls are done
# Address space a process must have left under its RLIMIT_AS to start threads (each maps an 8 MiB
# stack, and its first calls into numpy or Arrow allocate their per-thread state).
THREAD_ROOM_BYTES = 256 * 2**20


def room_for_threads() -> bool:
    """False when this process runs under an address-space limit with less than
    ``THREAD_ROOM_BYTES`` left (or cannot tell how much is left)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return True
    try:
        with open("/proc/self/statm", "rb") as f:
            size_bytes = int(f.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return False
    return soft - size_bytes >= THREAD_ROOM_BYTES


def map_threads(
    function: Callable[[Any], Any], items: Sequence[Any], threads: int = 2
) -> list[Any]:
    """``[function(item) for item in items]``, made by this thread and up to ``threads - 1`` more,
    each taking the next item left. Every call runs; then the first exception, in item order, is
    raised."""
    n = len(items)
    results: list[Any] = [None] * n  # (filled by index: storing a result allocates nothing)
    errors: list[BaseException | None] = [None] * n
    finished = [False] * n
    taken = [0]
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = taken[0]
                if i >= n:
                    return
                taken[0] = i + 1
            try:
                results[i] = function(items[i])
            except BaseException as err:  # handed to the caller
                errors[i] = err
            finished[i] = True

    for _ in range(min(threads, n) - 1 if room_for_threads() else 0):
        try:
            _thread.start_new_thread(work, ())
        except (RuntimeError, MemoryError):  # "can't start new thread": this thread does it all
            break
    work()
    while not all(finished[: taken[0]]):  # (calls a helper took; one that died took none)
        time.sleep(POLL_S)
    for error in errors:
        if error is not None:
            raise error
    return results
