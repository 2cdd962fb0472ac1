"""The one registry of snapshot file kinds: which file feeds which frame, parsed by what.

Discovery (which files a snapshot should have), parsing (``tcpmemlib.chunks``), assembly
(``tcpmemlib.assemble``), the cache and ``Capture`` all read this table, so a new kind of file is
one parser module plus one ``FileKind`` entry (and, for a new frame, one ``FrameKind`` entry and
its name in ``schema.FRAMES``).

Every entry has the same parser signature, ``records(text, path, earlier) -> column lists``:
``earlier`` maps the file names parsed before it in the same snapshot to their column lists (the
slab aliases resolve names against that snapshot's slabinfo). Files are parsed in the order of
``FILES``.

Not in this table, because they are not one-file-one-frame: ``meta.txt`` (read first: it places
the snapshot in time and says how to read the rest), the ``ss`` files (parsed many files per call,
``socket_file``), ``netns.txt`` with each namespace's own files (one ``netns`` row per namespace
from several files, ``tcpmemlib.chunks``) and ``phases.tsv`` (one per capture, not per snapshot).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from tcpmemlib.parsers import (
    cgroups,
    meminfo,
    netns,
    netstat,
    protocols,
    ps,
    slab_aliases,
    slabinfo,
    sockstat,
    sysctl,
    zoneinfo,
)
from tcpmemlib.units import pages_to_bytes

__all__ = [
    "FILES",
    "FRAME_KINDS",
    "META_FILE",
    "NAMESPACE_COLUMNS",
    "NETNS_FILE",
    "SOCKET_FILES",
    "Columns",
    "FileKind",
    "FrameKind",
    "namespace_files",
    "socket_file",
]

Columns = dict[str, list[object]]
Earlier = Mapping[str, Columns]

META_FILE = "meta.txt"
# The ss files of the collector's own network namespace and the netid their rows get where ss did
# not print one; other namespaces' files are ``ss_tcp.ns<inode>.txt`` (``socket_file``).
SOCKET_FILES: dict[str, str] = {"ss_tcp.txt": "tcp", "ss_udp.txt": "udp"}
NETNS_FILE = "netns.txt"
_SOCKET_FILE = re.compile(r"^ss_(tcp|udp)(?:\.ns([0-9]{1,18}))?\.txt$")
# Every namespace's own counts: the namespace inode -> its sockstat file (the collector's own
# namespace: sockstat.txt).
NAMESPACE_COLUMNS: dict[str, str] = {
    **netns.SCHEMA,
    "read": "boolean",
    "sockets_used": "Int64",
    "tcp_inuse": "Int64",
    "tcp_tw": "Int64",
    # box-wide TCP mem (pages) as that namespace's sockstat read it, right before its ss
    "tcp_mem_pages": "Int64",
}


def socket_file(base: str) -> tuple[str, int | None] | None:
    """``(netid, namespace inode or None for the collector's own)`` of an ss file's base name."""
    match = _SOCKET_FILE.match(base)
    if match is None:
        return None
    return match[1], (int(match[2]) if match[2] else None)


def namespace_files(inode: int) -> tuple[str, str, str]:
    """The tcp ss, udp ss and sockstat base names of another namespace's files."""
    return f"ss_tcp.ns{inode}.txt", f"ss_udp.ns{inode}.txt", f"sockstat.ns{inode}.txt"


@dataclass(frozen=True)
class FileKind:
    """One kind of snapshot file (``file``, or ``file.gz``) and the frame its rows go to."""

    file: str
    frame: str
    records: Callable[[str, str | None, Earlier], Columns]
    expected: bool = True  # every snapshot should have it: a warning when it is absent


@dataclass(frozen=True)
class FrameKind:
    """How the column lists of one frame become its typed frame.

    ``build``: column lists -> typed frame (the parser module's ``frame``); ``categories``: columns
    whose repeated names become categories in the Capture; ``one_row``: the files feeding it give
    one row per snapshot together (sockstat and sockstat6: the first non-NA value of each column);
    ``page_bytes``: fills its ``*_bytes`` columns from the page columns and each row's page size.
    """

    name: str
    build: Callable[[Columns], pd.DataFrame]
    categories: tuple[str, ...] = ()
    one_row: bool = False
    page_bytes: Callable[[pd.DataFrame, int | pd.Series], pd.DataFrame] | None = None


def _plain(
    parse: Callable[[str, str | None], Columns],
) -> Callable[[str, str | None, Earlier], Columns]:
    def records(text: str, path: str | None, earlier: Earlier) -> Columns:
        del earlier
        return parse(text, path)

    records.__doc__ = parse.__doc__
    return records


def _netstat(file: str) -> Callable[[str, str | None, Earlier], Columns]:
    def records(text: str, path: str | None, earlier: Earlier) -> Columns:
        del earlier
        return netstat.records(text, path, file)

    return records


def _slab_aliases(text: str, path: str | None, earlier: Earlier) -> Columns:
    slab = earlier.get("slabinfo.txt")
    return slab_aliases.records(text, path, slab["name"] if slab is not None else None)


def _cgroup_stats(text: str, path: str | None, earlier: Earlier) -> Columns:
    del earlier
    return cgroups.records(text, path)[0]


def _cgroup_pids(text: str, path: str | None, earlier: Earlier) -> Columns:
    del earlier
    return cgroups.records(text, path)[1]


def _slab_bytes(frame: pd.DataFrame, page_size_bytes: int | pd.Series) -> pd.DataFrame:
    frame = frame.copy(deep=False)
    pages = frame["num_slabs"] * frame["pagesperslab"]
    if isinstance(page_size_bytes, pd.Series):
        page_size_bytes = page_size_bytes.set_axis(frame.index)
    frame["slab_bytes"] = pages_to_bytes(pages, page_size_bytes)
    return frame


def _namespace_frame(columns: Columns) -> pd.DataFrame:
    return pd.DataFrame(columns, columns=list(NAMESPACE_COLUMNS)).astype(NAMESPACE_COLUMNS)


def _ps_args_frame(columns: Columns) -> pd.DataFrame:
    return pd.DataFrame(columns, columns=list(ps.ARGS_SCHEMA)).astype(ps.ARGS_SCHEMA)


FILES: tuple[FileKind, ...] = (
    FileKind("sockstat.txt", "sockstat", _plain(sockstat.records)),
    FileKind("sockstat6.txt", "sockstat", _plain(sockstat.records)),
    FileKind("sockstat_after.txt", "sockstat", _plain(sockstat.after_records), expected=False),
    FileKind("meminfo.txt", "meminfo", _plain(meminfo.records)),
    FileKind("ps.txt", "processes", _plain(ps.records)),
    FileKind("ps_args.txt", "ps_args", _plain(ps.args_records), expected=False),
    FileKind("protocols.txt", "protocols", _plain(protocols.records)),
    FileKind("zoneinfo.txt", "zoneinfo", _plain(zoneinfo.records)),
    FileKind("sysctl.txt", "sysctl", _plain(sysctl.records)),
    FileKind("netstat.txt", "netstat", _netstat("netstat")),
    FileKind("snmp.txt", "netstat", _netstat("snmp")),
    FileKind("slabinfo.txt", "slab", _plain(slabinfo.records)),
    FileKind("slab_aliases.txt", "slab_aliases", _slab_aliases),
    FileKind("cgroups.txt", "cgroups", _cgroup_stats),
    FileKind("cgroups.txt", "proc_cgroups", _cgroup_pids),
)

# ``ps_args`` is not a Capture frame: its ``args`` join the ``processes`` rows (tcpmemlib.assemble).
FRAME_KINDS: dict[str, FrameKind] = {
    k.name: k
    for k in (
        FrameKind("sockstat", sockstat.frame, one_row=True, page_bytes=sockstat.with_bytes),
        FrameKind("meminfo", meminfo.frame),
        FrameKind("processes", ps.frame),
        FrameKind("ps_args", _ps_args_frame),
        FrameKind("slab", slabinfo.frame, categories=("name",), page_bytes=_slab_bytes),
        FrameKind("slab_aliases", slab_aliases.frame, categories=("cache", "target", "shown_as")),
        FrameKind("protocols", protocols.frame),
        FrameKind("netstat", netstat.frame, categories=("counter",)),
        FrameKind("zoneinfo", zoneinfo.frame),
        FrameKind("sysctl", sysctl.frame),
        FrameKind("cgroups", cgroups.frame),
        FrameKind("proc_cgroups", cgroups.pids_frame),
        FrameKind("netns", _namespace_frame),
    )
}
# The files every snapshot should have, besides meta.txt (ps_args.txt only when meta says args=1).
EXPECTED_FILES: tuple[str, ...] = (
    *dict.fromkeys(k.file for k in FILES if k.expected),
    *SOCKET_FILES,
)
