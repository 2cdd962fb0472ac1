"""The exception family pickles whole: a worker process sends it back to the caller (tcpmemlib.workers)."""

from __future__ import annotations

import importlib
import pickle
import pkgutil

import pytest

import tcpmemlib
from tcpmemlib.errors import (
    CaptureError,
    ParseError,
    ResourceError,
    ScratchError,
    TcpmemError,
    WorkerError,
)


class _KeywordOnly(TcpmemError):
    """A subclass whose constructor takes no message at all: the base class's pickling covers it."""

    def __init__(self, *, count: int) -> None:
        self.count = count
        super().__init__(f"{count} things went wrong")


def _examples() -> list[TcpmemError]:
    from tcpmemlib.fleet.layout import FleetError
    from tcpmemlib.lab.control import LabError
    from tcpmemlib.lab.netns import NetnsError

    noted = CaptureError(None, "no snapshot directories")
    noted.add_note("seen while loading")
    return [
        ParseError("/cap/s1/ss_tcp.txt.gz", 12, "ESTAB 0 0 x" * 30, "no peer address"),
        ParseError(None, None, None, "empty text"),
        CaptureError("/cap", "not a directory"),
        noted,
        ScratchError("/cap/.tcpmem-cache/.tmp-1-x", 28, "socket rows not written here: No space"),
        WorkerError("worker pid 7 was killed by SIGKILL", pid=7, task=3, remote_traceback="tb"),
        WorkerError("cannot start worker processes"),
        LabError("tcpmem-server (pid 9): no answer to 'ping'"),
        ResourceError("collect.sh not found in /nowhere"),
        FleetError("/fleet: no catalog (run tcpmem ingest first)"),
        NetnsError("ip netns add tcpmem-lab-1: File exists"),
        TcpmemError("plain"),
        _KeywordOnly(count=3),
    ]


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_error_pickles_with_its_type_fields_and_message(protocol: int):
    for err in _examples():
        back = pickle.loads(pickle.dumps(err, protocol=protocol))
        assert type(back) is type(err)
        assert back.__dict__ == err.__dict__  # every field, notes included
        assert str(back) == str(err) and back.args == err.args


def test_fields_come_back_by_name():
    err = ParseError("/cap/s1/meminfo.txt", 4, "MemTotal: x kB", "not a number")
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.line_no, back.line, back.reason) == (
        err.path,
        4,
        "MemTotal: x kB",
        "not a number",
    )
    back = pickle.loads(pickle.dumps(_KeywordOnly(count=3)))
    assert back.count == 3 and str(back) == "3 things went wrong"


def test_the_examples_cover_every_subclass_in_tcpmemlib():
    """A new TcpmemError subclass anywhere in tcpmemlib must be added to the examples above."""
    for info in pkgutil.walk_packages(tcpmemlib.__path__, "tcpmemlib."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    covered = {type(e) for e in _examples()}
    missing = {c for c in _subclasses(TcpmemError) if c.__module__.startswith("tcpmemlib.")}
    assert missing - covered == set()
