"""Safe, bounded extraction of a capture bundle (``.tar.gz``/``.tgz``/``.tar``).

``extract(source, *, tmp_parent=None) -> Extraction``. A bundle comes from another machine, so it is
read as hostile: members are taken one at a time from the decompressed stream (never ``extractall``,
never a member read whole into memory) into a new temporary directory ``Extraction.root``, which the
caller removes.

What is extracted: regular files and directories only. Symlinks, hard links, devices and FIFOs,
absolute names and names with ``..`` are refused. Nothing is written outside ``root`` and no link is
ever made, so nothing in ``root`` can lead out of it. A member the filesystem refuses (a name over
255 bytes, ...), a file where a directory of that name was extracted (or the reverse) and a
duplicate of an extracted file are refused too and the rest goes on: the first of two members of one
name is kept (a later fake ``meta.txt`` never wins; the filesystem is the record, so a name whose
first member was refused may still be extracted from a later one). Each refusal is an
``Extraction.refused`` entry (member, reason).

Caps (each stops a tar or gzip bomb early; sizes come from the member headers, so a member over a
cap is refused before a byte of it is written):

- ``MAX_MEMBER_BYTES`` (1 GiB) per member. The largest file collect.sh writes is one snapshot's ss
  text, about 730 bytes per socket (the sample's ``ss_tcp.txt``; gzip'd in the bundle): 1 GiB is
  ~1.5 million sockets, beyond the busiest load balancer. The member is refused and skipped; the
  rest goes on.
- the whole bundle expands to at most ``MAX_EXPANSION`` (100) times its own size, at least
  ``MIN_BUNDLE_CAP_BYTES`` (256 MiB) and at most ``MAX_BUNDLE_BYTES`` (64 GiB), counting every byte
  the tar stream holds, skipped members included (so a bomb also costs bounded time). collect.sh
  bundles hold gzip'd files (the sample expands 1.2 times); a tar of the same snapshots as plain
  text gzips about 20 times; a gzip bomb reaches 1,000 times and bzip2 far more. 64 GiB is five days
  of 10 s snapshots of a box with 2k sockets as plain text (~13 GB a day), weeks as collect.sh
  bundles them.
- the filesystem of ``tmp_parent`` keeps ``min(FREE_RESERVE_BYTES, FREE_RESERVE_FRACTION of its
  size)`` free (256 MiB or 5 %): extraction stops before a member would eat into that, so loading a
  bundle never fills /tmp for everything else on the box.
- ``MAX_MEMBERS`` (1,000,000) members: a week of 10 s snapshots (60,480) of 16 files each. Only the
  first ``MAX_REFUSED_LISTED`` (1,000) refusals are listed one by one; one more entry counts the
  rest.

When extraction stops early, ``refused`` names the member where it stopped and why, and nothing
after it is read. ``truncated`` says the stream ended before the tar end-of-archive blocks (an
interrupted copy; this includes a stream ending cleanly at a member header): ``incomplete`` then
lists the member being written when it ended (that cut file is removed, never left to be read as
whole) or, at a header, the last member read (that file is whole, its snapshot may lack the files
after it). ``transient`` says a failure that may not recur stopped it (ENOSPC, EDQUOT, EIO, EMFILE,
ENFILE, ENOMEM or ``MemoryError``, or the free-space reserve): the caller must not cache what was
extracted. A corrupt stream, an exceeded cap and a refused member are named for what they are, never
"truncated". A bundle that is not a tar archive, or a stop that leaves no file at all, raises
``CaptureError(source, reason)``; on any exception the temporary directory is removed.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tcpmemlib.errors import CaptureError

__all__ = [
    "BUNDLE_SUFFIXES",
    "FREE_RESERVE_BYTES",
    "FREE_RESERVE_FRACTION",
    "MAX_BUNDLE_BYTES",
    "MAX_EXPANSION",
    "MAX_MEMBERS",
    "MAX_MEMBER_BYTES",
    "MAX_REFUSED_LISTED",
    "MIN_BUNDLE_CAP_BYTES",
    "Extraction",
    "Refused",
    "bundle_cap_bytes",
    "extract",
    "is_bundle",
]

MiB = 1024**2
MAX_MEMBER_BYTES = 1024 * MiB
MAX_EXPANSION = 100
MIN_BUNDLE_CAP_BYTES = 256 * MiB
MAX_BUNDLE_BYTES = 64 * 1024 * MiB
FREE_RESERVE_BYTES = 256 * MiB
FREE_RESERVE_FRACTION = 0.05
MAX_MEMBERS = 1_000_000
MAX_REFUSED_LISTED = 1000
BUNDLE_SUFFIXES = (".tar.gz", ".tgz", ".tar")

_CHUNK = MiB  # one copy step: the most of a member held in memory
_MAX_READ = 4 * MiB  # one read by tarfile beyond this is a header bomb (a huge pax/GNU name header)
_TRANSIENT = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EIO", "EMFILE", "ENFILE", "ENOMEM")
    if hasattr(errno, name)
)
_NOT_READ = "this member and everything after it were not extracted"


@dataclass(frozen=True)
class Refused:
    """A member that was not extracted, and why."""

    member: str
    reason: str


@dataclass
class Extraction:
    """What ``extract`` made: see the module docstring for each field's meaning."""

    root: Path
    refused: list[Refused] = field(default_factory=list)
    truncated: bool = False
    incomplete: list[str] = field(default_factory=list)
    transient: bool = False
    unlisted: int = field(default=0, repr=False)  # refusals beyond MAX_REFUSED_LISTED

    def refuse(self, member: str, reason: str) -> None:
        """Record a refused member (counted, not listed, beyond ``MAX_REFUSED_LISTED``)."""
        if len(self.refused) < MAX_REFUSED_LISTED:
            self.refused.append(Refused(member, reason))
        else:
            self.unlisted += 1


class _Stop(Exception):
    """Extraction stops here: ``reason`` names why (truncation is not a _Stop, see _Stream.eof)."""

    def __init__(self, reason: str, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a file named like a bundle."""
    name = os.fspath(path)
    return os.path.isfile(name) and name.endswith(BUNDLE_SUFFIXES)


def bundle_cap_bytes(bundle_bytes: int) -> int:
    """How far a bundle of ``bundle_bytes`` may expand (see the module docstring)."""
    return min(MAX_BUNDLE_BYTES, max(MIN_BUNDLE_CAP_BYTES, MAX_EXPANSION * bundle_bytes))


def _mib(n: int) -> str:
    """A size for a message: MiB from 1 MiB up (as the caps are given), else KiB or bytes."""
    if n < 1024:
        return f"{n} bytes"
    value, unit = (n / MiB, "MiB") if n >= MiB else (n / 1024, "KiB")
    return f"{value:,.1f} {unit}" if value < 10 else f"{value:,.0f} {unit}"


def _shown(name: str) -> str:
    """A member name as printable text (bytes that are not UTF-8 escaped)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _oserror(err: OSError) -> str:
    code = errno.errorcode.get(err.errno or 0, "")
    return f"{err.strerror or err}{f' ({code})' if code else ''}"


class _Stream:
    """The decompressed tar stream as tarfile reads it: counts its bytes, holds the caps.

    Reads past ``cap`` or one read over ``_MAX_READ`` raise ``_Stop``; the end of the data (a short
    read, or the decompressor's EOFError) sets ``eof``; a corrupt stream raises ``_Stop``.
    """

    def __init__(self, raw: BinaryIO, cap: int, *, plain: bool) -> None:
        self._raw = raw
        self._plain = plain  # a plain tar file: skip by seeking, not reading
        self.cap = cap
        self.pos = 0
        self.eof = False
        self.last_block = b""  # the last 512-byte read: the header tarfile stopped at

    def _failed(self, err: BaseException) -> _Stop:
        if isinstance(err, OSError) and err.errno in _TRANSIENT:
            return _Stop(f"reading the bundle failed: {_oserror(err)}", transient=True)
        return _Stop(f"the bundle is corrupt here ({err})")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > _MAX_READ:
            raise _Stop(f"a tar header of more than {_mib(_MAX_READ)} (a header bomb)")
        if self.pos + n > self.cap:
            raise _Stop(f"the bundle expands beyond {_mib(self.cap)} ({_cap_rule()})")
        try:
            data = self._raw.read(n)
        except EOFError:  # the compressed stream ends early
            data = b""
        except (OSError, zlib.error) as err:
            raise self._failed(err) from err
        if len(data) < n:
            self.eof = True
        if n == tarfile.BLOCKSIZE:
            self.last_block = data
        self.pos += len(data)
        return data

    def tell(self) -> int:
        return self.pos

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET or offset < self.pos:
            raise _Stop(f"the tar stream seeks backward (to byte {offset}): not a tar archive")
        if offset > self.cap:
            raise _Stop(f"the bundle expands beyond {_mib(self.cap)} ({_cap_rule()})")
        if self._plain:
            self.pos = self._raw.seek(offset)
        while self.pos < offset and not self.eof:  # forward: read and drop (bounded steps)
            self.read(min(_CHUNK, offset - self.pos))
        return self.pos


def _cap_rule() -> str:
    return (
        f"a bundle may expand to {MAX_EXPANSION} times its size, at least "
        f"{_mib(MIN_BUNDLE_CAP_BYTES)}, at most {_mib(MAX_BUNDLE_BYTES)}"
    )


def _decompressed(raw: BinaryIO) -> BinaryIO:
    """``raw`` decompressed by its magic bytes (gzip, bzip2) or as it is (plain tar).

    Both decompressors hold a few MB at most. xz is refused: its header sets the dictionary the
    decoder allocates (up to GBs), and a bundle is never xz'd by collect.sh.
    """
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if magic.startswith(b"\xfd7zXZ\x00"):
        raise _Stop("xz-compressed, which is not read (its decoder may take GBs): use gzip")
    return raw


def _check(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` must not be extracted (by its header alone), or None."""
    name = member.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "path with '..'"
    if member.issym() or member.islnk():
        return f"link ({'symbolic' if member.issym() else 'hard'} link to {member.linkname!r})"
    if not (member.isfile() or member.isdir()):
        return "not a regular file or directory (device, FIFO or other special file)"
    if member.isfile() and posixpath.normpath(name) in (".", ""):
        return "empty name"
    if member.isfile() and member.size > MAX_MEMBER_BYTES:
        return f"expands beyond {_mib(MAX_MEMBER_BYTES)} (the cap for one file): skipped"
    return None


def _free_reserve(path: Path, need: int) -> str | None:
    """Why writing ``need`` bytes under ``path`` would eat into the free-space reserve, or None."""
    try:
        st = os.statvfs(path)
    except OSError:  # a filesystem that cannot say: ENOSPC will tell
        return None
    if st.f_blocks == 0:  # nor one that does not say its size
        return None
    free = st.f_bavail * st.f_frsize
    reserve = min(FREE_RESERVE_BYTES, int(FREE_RESERVE_FRACTION * st.f_blocks * st.f_frsize))
    if free - need >= reserve:
        return None
    return (
        f"{_mib(need)} would leave less than {_mib(reserve)} free in {path.parent} "
        f"({_mib(free)} free; set TMPDIR to a larger directory)"
    )


def _conflict(root: Path, rel: str, is_dir: bool) -> str:
    """Why ``rel`` could not be created: an earlier member of that name, or a file on its path."""
    path = root / rel
    if path.is_dir() and not is_dir:
        return "a directory of this name came earlier in the bundle (kept)"
    if path.is_file():
        if is_dir:
            return "a file of this name came earlier in the bundle (kept)"
        return "duplicate of an earlier member (the first is kept)"
    for parent in Path(rel).parents:
        if parent != Path(".") and (root / parent).is_file():
            return f"{str(parent)!r} is a file earlier in the bundle (kept)"
    return "cannot be created"


def _write(archive: tarfile.TarFile, member: tarfile.TarInfo, root: Path, rel: str) -> None:
    """Create ``rel`` (a directory, or a file from ``member``'s data) under ``root``; no overwrite."""
    path = root / rel
    if member.isdir():
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            source = archive.extractfile(member)
            if source is not None:
                with source:
                    shutil.copyfileobj(source, out, _CHUNK)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _run(archive: tarfile.TarFile, stream: _Stream, out: Extraction) -> tuple[int, _Stop | None]:
    """Extract every member into ``out``; return (files written, the stop if one ended it)."""
    files = 0
    count = 0
    last: str | None = None  # the last member read
    while True:
        member: tarfile.TarInfo | None = None
        try:
            member = archive.next()
            if member is None:
                break
            archive.members.clear()  # tarfile keeps every header otherwise
            count += 1
            last = posixpath.normpath(member.name)
            if count > MAX_MEMBERS:
                raise _Stop(f"more than {MAX_MEMBERS:,} members")
            if member.isfile() and stream.pos + member.size > stream.cap:
                raise _Stop(f"expands beyond {_mib(stream.cap)} ({_cap_rule()})")
            reason = _check(member)
            if reason is not None:
                out.refuse(_shown(member.name), reason)
                continue
            if last == ".":
                continue
            if member.isfile():
                low = _free_reserve(out.root, member.size)
                if low is not None:
                    raise _Stop(low, transient=True)
            _write(archive, member, out.root, last)
            files += member.isfile()
        except _Stop as stop:
            return files, _stopped(stop, member, out, last)
        except MemoryError:
            return files, _stopped(_Stop("out of memory", transient=True), member, out, last)
        except (tarfile.TarError, ValueError, UnicodeError) as err:  # a header tarfile rejects
            if stream.eof:  # the data ended inside a member or its header: truncated
                break
            return files, _stopped(_Stop(f"the bundle is corrupt here ({err})"), member, out, last)
        except OSError as err:  # writing: the stream's own errors are _Stop
            if err.errno in _TRANSIENT:
                stop = _Stop(f"could not be written: {_oserror(err)}", transient=True)
                return files, _stopped(stop, member, out, last)
            if err.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                why = _conflict(out.root, last or "", member is not None and member.isdir())
            else:
                why = f"the filesystem refuses it: {_oserror(err)}"
            out.refuse(_shown(member.name if member else ""), why)
    if stream.eof:
        out.truncated = True
        if last is not None:
            out.incomplete.append(last)
        return files, None
    if stream.last_block.count(0) != tarfile.BLOCKSIZE:  # tarfile stops at a bad header silently
        stop = _Stop(f"the bundle is corrupt here (not a tar header at byte {stream.pos - 512})")
        return files, _stopped(stop, None, out, last)
    return files, None


def _stopped(
    stop: _Stop, member: tarfile.TarInfo | None, out: Extraction, last: str | None
) -> _Stop:
    """Record where extraction stopped and why (the member being written was removed)."""
    out.transient = out.transient or stop.transient
    if member is not None:
        name = _shown(member.name)
    else:
        name = f"(after {_shown(last)!r})" if last is not None else "(the first member)"
    out.refused.append(Refused(name, f"{stop.reason}: {_NOT_READ}"))
    return stop


def extract(
    source: str | os.PathLike[str], *, tmp_parent: str | os.PathLike[str] | None = None
) -> Extraction:
    """Extract the bundle ``source`` into a new temporary directory under ``tmp_parent``.

    ``tmp_parent``: where that directory is made (None: ``tempfile.gettempdir()``). Returns an
    ``Extraction``; the caller removes ``Extraction.root``. Raises ``CaptureError`` when nothing
    usable is left (see the module docstring).
    """
    source = Path(os.fspath(source))
    try:  # O_NONBLOCK: a FIFO named like a bundle must not block the open
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise CaptureError(source, f"cannot read the bundle: {_oserror(err)}") from err
    raw = os.fdopen(fd, "rb")
    root: Path | None = None
    try:
        with raw:  # closed before the cleanup below: out of descriptors (EMFILE), it needs one
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CaptureError(source, "not a regular file")
            parent = tmp_parent if tmp_parent is not None else tempfile.gettempdir()
            try:
                root = Path(tempfile.mkdtemp(prefix="tcpmem-bundle-", dir=parent))
            except OSError as err:
                why = f"cannot make a temporary directory in {parent}: {_oserror(err)}"
                raise CaptureError(source, why) from err
            out = Extraction(root)
            try:
                data = _decompressed(raw)
                stream = _Stream(data, bundle_cap_bytes(st.st_size), plain=data is raw)
                archive = tarfile.open(fileobj=stream, mode="r:")  # noqa: SIM115
            except (_Stop, tarfile.TarError) as err:
                raise CaptureError(source, f"not a readable tar archive ({err})") from err
            with archive:
                files, stop = _run(archive, stream, out)
            if out.unlisted:
                why = f"refused too; only the first {MAX_REFUSED_LISTED:,} refusals are listed"
                out.refused.append(Refused(f"({out.unlisted:,} more members)", why))
        if files == 0 and (stop is not None or out.truncated):
            why = stop.reason if stop is not None else "the bundle is truncated"
            again = " (this may not recur: retry)" if out.transient else ""
            raise CaptureError(source, f"no file could be extracted: {why}{again}")
    except BaseException:
        if root is not None:
            _remove(root)
        raise
    return out


def _remove(root: Path) -> None:
    """Remove ``root`` (only files and directories made here), holding one descriptor at a time
    if ``shutil.rmtree`` fails (it needs several: the process may be out of them)."""
    try:
        shutil.rmtree(root)
        return
    except OSError:
        pass
    dirs = [root]
    for directory in dirs:  # grows while it runs: breadth first
        for name in os.listdir(directory):
            path = directory / name
            if path.is_dir() and not path.is_symlink():
                dirs.append(path)
            else:
                path.unlink(missing_ok=True)
    for directory in reversed(dirs):
        directory.rmdir()
