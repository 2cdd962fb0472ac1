"""Fixtures shared by the test modules, and the ``serial`` marker's lock.

``make test`` runs the suite on two pytest-xdist workers, one test file per worker at a time
(``--dist loadfile``: a module's fixtures are built once). A test marked ``serial`` reads box-wide
counters (``/proc/net/sockstat``'s TCP ``mem``, slabinfo, every network namespace on the box) that
another test's sockets would move: it runs while no other test of this run does. The lock is a
readers-writer pair of ``flock`` files in the run's shared base temp directory: every test holds
``serial-room.lock`` shared, a serial one holds it exclusive, and ``serial-turn.lock`` keeps a
waiting serial test from being overtaken by the other worker's next tests. Without xdist there is nothing to lock.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from damage_helpers import PRISTINE_SNAPSHOTS, make_capture, snapshot_dirs, world_dir

SMALL = Path(__file__).resolve().parent / "fixtures" / "captures" / "small"
LOCK_WAIT_S = 1800.0  # a serial test waits for the other worker's current test, never this long


# The longest files, longest first (``--durations``, summed per file, on the 2-core box): under xdist
# each worker takes the next file when it is done with one, so a long file started last would
# leave the other worker idle at the end. Any other file follows, in the usual order.
LONGEST_FIRST = (
    "test_notebooks.py",
    "test_analysis_batches.py",
    "test_real_redis.py",
    "test_sockstore.py",
    "test_workers.py",
    "test_damage.py",
    "test_fleet.py",
    "test_load_hostile.py",
    "test_packaging.py",
    "test_collect.py",
    "test_report_cli.py",
    "test_cli.py",
    "test_netns.py",
    "test_capture.py",
    "test_analysis_lab.py",
    "test_real_nginx.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the files in ``LONGEST_FIRST`` order (a test's order within its file is kept)."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A copy of the real small capture (tests/fixtures/captures/small, see its SOURCE.md): loading
    writes a cache beside the capture, so every test gets its own."""
    dest = tmp_path / "capture"
    shutil.copytree(SMALL, dest)
    return dest


@pytest.fixture(scope="session")
def pristine() -> Iterator[Path]:
    """One real capture by collect.sh (``damage_helpers.make_capture``: 4 snapshots of 15 loopback
    pairs in a network namespace of its own) for the damage and hostile-load tests, made once per
    run. Read-only: every test copies it before it damages or loads it. In a directory user nobody
    can traverse (the damage test loads as nobody)."""
    base = world_dir("tcpmem-pristine-")
    try:
        cap = make_capture(base / "capture", n_snapshots=PRISTINE_SNAPSHOTS)
        assert len(snapshot_dirs(cap)) == PRISTINE_SNAPSHOTS
        yield cap
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _flock(fd: int, op: int, what: str) -> None:
    """``flock(fd, op)``, polled (bounded): a RuntimeError after ``LOCK_WAIT_S``."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"waited {LOCK_WAIT_S:g} s for the {what} lock") from None
            time.sleep(0.02)


@contextmanager
def _turn(lock_dir: Path, serial: bool) -> Iterator[None]:
    turn = os.open(lock_dir / "serial-turn.lock", os.O_RDWR | os.O_CREAT, 0o600)
    room = os.open(lock_dir / "serial-room.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _flock(turn, fcntl.LOCK_EX, "turn")
        if serial:  # keep the turn: the other worker's next test waits behind this one
            _flock(room, fcntl.LOCK_EX, "serial")
        else:
            fcntl.flock(turn, fcntl.LOCK_UN)
            _flock(room, fcntl.LOCK_SH, "shared")
        yield
    finally:
        os.close(room)  # closing the last descriptor releases its locks
        os.close(turn)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """Setup, call and teardown of each test (so also its module's fixtures) under the lock. Outside
    pytest-timeout's timer: waiting for the other worker is not the test's time."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return (yield)
    # xdist gives each worker the base temp directory <the run's>/<worker id>: the parent is shared
    lock_dir = Path(item.config.option.basetemp).parent
    with _turn(lock_dir, item.get_closest_marker("serial") is not None):
        return (yield)
