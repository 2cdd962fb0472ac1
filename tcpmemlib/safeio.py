"""Reading a capture's files safely: regular files inside the capture only, bounded in size.

A capture comes from another machine, through rsync, tar or a shared directory: it may hold
symlinks (to ``/dev/zero``, to a secret elsewhere), FIFOs, devices, gzip bombs, cut files. So:

- Files are opened relative to their snapshot directory's descriptor with ``O_NOFOLLOW``: a
  symlink is refused, never followed (its target's content is never read, so it can never reach
  ``problems`` or a report). ``O_NONBLOCK`` keeps a FIFO from blocking the open; anything but a
  regular file is then refused by ``fstat``.
- What one file may expand to is bounded (``MAX_TEXT_BYTES``); gzip is decompressed as a stream,
  so a bomb costs at most that much memory before it is refused.
- A gzip stream that ends early keeps what was decoded: the caller loads the complete lines and
  names the file as truncated. Inflating is ISA-L's (python-isal) where installed, else zlib's:
  the same bytes, except that ISA-L holds back the last byte or so of a broken stream.
- OS errors that may not recur (full disk, I/O error, too little memory, too many open files) are
  marked transient: a load that met one is not cached.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from dataclasses import dataclass
from types import ModuleType
from typing import BinaryIO

try:  # ISA-L's inflate (python-isal): zlib's API, ~4.5 times its speed on snapshot files
    from isal import isal_zlib

    _INFLATE: ModuleType = isal_zlib
    _INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, isal_zlib.error)
except ImportError:  # (no wheel for this platform: zlib itself)
    _INFLATE, _INFLATE_ERRORS = zlib, (zlib.error,)

__all__ = [
    "MAX_TEXT_BYTES",
    "FileData",
    "Refused",
    "decode_text",
    "open_dir",
    "read_file",
]

# 512 MiB of text per file: ~1.2M sockets of verbatim ss text in one snapshot, far above what a
# box holds (a 20k-socket snapshot's ss text is ~10 MB), far below what would exhaust memory.
MAX_TEXT_BYTES = 512 * 1024**2
_READ_BLOCK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
TRANSIENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.EAGAIN}
)


class Refused(Exception):
    """A file that is not read (a link, not a regular file, unreadable, too large); ``reason`` says
    why in the reader's words, ``transient`` whether trying again later may succeed."""

    def __init__(self, reason: str, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


@dataclass
class FileData:
    """A file's content: ``data`` (decompressed bytes), ``stored_bytes`` (its size on disk) and
    ``cut``: why the content ended early (a truncated gzip stream), else None."""

    data: bytes
    stored_bytes: int
    cut: str | None = None


def _os_reason(err: OSError) -> Refused:
    transient = err.errno in TRANSIENT_ERRNOS
    if err.errno == errno.ELOOP:
        return Refused("a symbolic link: not followed")
    return Refused(f"cannot read: {err.strerror or err}", transient)


def open_dir(path: str | os.PathLike[str], dir_fd: int | None = None) -> int:
    """A descriptor of directory ``path`` (relative to ``dir_fd``), refusing a symlink."""
    try:
        return os.open(
            path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError as err:
        if err.errno == errno.ENOTDIR:
            try:
                link = stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode)
            except OSError:
                link = False
            raise Refused("a symbolic link: not followed" if link else "not a directory") from err
        raise _os_reason(err) from err


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_file(name: str, dir_fd: int | None = None, limit: int = MAX_TEXT_BYTES) -> FileData:
    """The content of regular file ``name`` (relative to ``dir_fd``), gunzipped when it starts
    with the gzip magic, at most ``limit`` bytes of it; ``Refused`` otherwise."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as err:
        raise _os_reason(err) from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"{_kind(st.st_mode)}, not a regular file: not read")
        with os.fdopen(os.dup(fd), "rb", buffering=0) as stream:
            head = stream.read(2)
            if head == _GZIP_MAGIC:
                return _gunzip(stream, head, st.st_size, limit)
            if st.st_size > limit:
                raise Refused(f"{st.st_size:,} bytes, over the {limit // 1024**2} MiB limit")
            data = head + _read_rest(stream, limit + 1 - len(head), st.st_size + 1 - len(head))
            if len(data) > limit:
                raise Refused(f"over the {limit // 1024**2} MiB limit")
            return FileData(data, st.st_size)
    except OSError as err:
        raise _os_reason(err) from err
    finally:
        os.close(fd)


def _read_rest(stream: BinaryIO, most: int, expect: int) -> bytes:
    """At most ``most`` bytes from ``stream``: ``expect`` (what ``fstat`` said is left, plus one)
    in one read, more only if the file grew since. (A read of N bytes allocates N bytes first: a
    ``most``-sized read of every small file cost an mmap, page faults and an munmap each.)"""
    want = max(1, min(most, expect))
    first = stream.read(want)
    if len(first) < want:  # a regular file's short read: its end
        return first
    parts, size = [first], len(first)
    while size < most:
        block = stream.read(min(_READ_BLOCK, most - size))
        if not block:
            break
        parts.append(block)
        size += len(block)
    return b"".join(parts)


def _gunzip(stream: BinaryIO, head: bytes, stored: int, limit: int) -> FileData:
    """Decompress every gzip member of ``stream`` as it is read, stopping at ``limit`` bytes."""
    out: list[bytes] = []
    size = 0
    decoder = _INFLATE.decompressobj(wbits=31)
    consumed = len(head)
    in_member = False  # the current decoder has been fed data and has not reached its end
    block = head
    while block:
        while block:
            in_member = True
            try:
                piece = decoder.decompress(block, limit + 1 - size)
            except _INFLATE_ERRORS as err:
                cut = f"corrupt gzip data after {size:,} bytes ({err})"
                return FileData(b"".join(out), stored, cut)
            size += len(piece)
            out.append(piece)
            if size > limit:
                raise Refused(f"gzip data expands beyond the {limit // 1024**2} MiB limit")
            if decoder.eof:  # another member may follow (gzip files can be concatenated)
                block, in_member = decoder.unused_data, False
                decoder = _INFLATE.decompressobj(wbits=31)
                if not block.strip(b"\x00"):  # padding after the last member
                    block = b""
                elif block[:2] != _GZIP_MAGIC:
                    return FileData(b"".join(out), stored, "garbage after the gzip data")
            else:
                block = decoder.unconsumed_tail
        left = stored + 1 - consumed  # (read by the size fstat gave, while it holds)
        block = stream.read(min(_READ_BLOCK, left) if left > 0 else _READ_BLOCK)
        consumed += len(block)
    cut = f"truncated gzip data (ends after {size:,} bytes)" if in_member else None
    return FileData(b"".join(out), stored, cut)


def decode_text(data: bytes) -> tuple[str, int | None]:
    """``data`` as text: UTF-8, bytes that are not UTF-8 escaped as ``\\xNN`` (process names are
    raw bytes: a Latin-1 name must not cost its row). Returns ``(text, line of the first NUL or
    None)``: a NUL byte means binary data, not text."""
    nul = data.find(b"\x00")
    line = data.count(b"\n", 0, nul) + 1 if nul >= 0 else None
    return data.decode("utf-8", "backslashreplace"), line
