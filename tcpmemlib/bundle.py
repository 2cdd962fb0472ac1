"""Safe extraction of a capture bundle (``.tar.gz``/``.tgz``/``.tar`` of a collect.sh directory).

A bundle comes from another machine, so every member is checked before anything is written:

- only regular files and directories; symlinks, hard links, devices and FIFOs are refused;
- no absolute names, no ``..`` component, nothing that resolves outside the destination;
- at most ``max_members`` members and ``max_total_bytes`` of file content (a tar bomb stops early).

Members are copied one by one with ``TarFile.extractfile`` (never ``extractall``). A refused member is
reported (``Refused(member, reason)``) and skipped, so the rest of the capture still loads; with
``strict=True`` it raises ``CaptureError`` naming the member instead.

A bundle cut short (an interrupted copy) keeps what came before the cut: the snapshot directory the
cut falls in is removed whole (a half-read snapshot would look like one with no sockets) and
reported as refused, naming the member where reading stopped. With ``strict=True``, or when nothing
at all could be read, it raises ``CaptureError`` naming the bundle and member. A bundle that is not a
tar archive or exceeds a cap raises ``CaptureError`` too.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tcpmemlib.errors import CaptureError

__all__ = [
    "BUNDLE_SUFFIXES",
    "MAX_MEMBERS",
    "MAX_TOTAL_BYTES",
    "Refused",
    "extract",
    "is_bundle",
]

MAX_MEMBERS = 1_000_000
MAX_TOTAL_BYTES = 32 * 1024**3
BUNDLE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


@dataclass(frozen=True)
class Refused:
    """A member that was not extracted, and why."""

    member: str
    reason: str


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a file named like a bundle."""
    name = os.fspath(path)
    return os.path.isfile(name) and name.endswith(BUNDLE_SUFFIXES)


def _check(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` must not be extracted, or None if it is safe."""
    name = member.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        return "path with '..'"
    if member.issym() or member.islnk():
        return f"link ({'symbolic' if member.issym() else 'hard'} link to {member.linkname!r})"
    if not (member.isfile() or member.isdir()):
        return "not a regular file or directory (device, FIFO or other special file)"
    if not parts:
        return None if member.isdir() else "empty name"
    return None


def _drop_incomplete(root: Path, member: tarfile.TarInfo, err: BaseException) -> Refused:
    """Remove the snapshot directory that ``member`` (where reading stopped) belongs to."""
    name = posixpath.normpath(member.name)
    snapshot = name if member.isdir() else posixpath.dirname(name)
    target = (root / snapshot).resolve() if snapshot not in ("", ".") else None
    if target is not None and target != root and root in target.parents:
        shutil.rmtree(target, ignore_errors=True)
    elif not member.isdir():
        (root / name).unlink(missing_ok=True)
    return Refused(
        (snapshot or name) + "/",
        f"the bundle is truncated or corrupt here ({err}): this snapshot and anything after it "
        "could not be read",
    )


def extract(
    bundle: str | os.PathLike[str],
    dest: str | os.PathLike[str] | None = None,
    *,
    strict: bool = False,
    max_members: int = MAX_MEMBERS,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> tuple[Path, list[Refused]]:
    """Extract ``bundle`` safely into ``dest`` (a new temp dir if None) -> ``(dest, refused)``.

    The caller owns ``dest`` (remove it with ``shutil.rmtree`` when done).
    """
    bundle = os.fspath(bundle)
    created = dest is None
    root = Path(tempfile.mkdtemp(prefix="tcpmem-bundle-") if dest is None else dest).resolve()
    refused: list[Refused] = []
    members = 0
    total = 0
    try:
        try:
            archive = tarfile.open(bundle, "r:*")  # noqa: SIM115 - closed by the with below
        except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
            raise CaptureError(bundle, f"not a readable tar archive ({err})") from err
        with archive:
            member: tarfile.TarInfo | None = None
            try:
                for member in archive:
                    members += 1
                    if members > max_members:
                        raise CaptureError(bundle, f"more than {max_members} members")
                    reason = _check(member)
                    if reason is None:
                        target = (root / posixpath.normpath(member.name)).resolve()
                        if target != root and root not in target.parents:
                            reason = "resolves outside the extraction directory"
                    if reason is not None:
                        if strict:
                            raise CaptureError(bundle, f"member {member.name!r}: {reason}")
                        refused.append(Refused(member.name, reason))
                        continue
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    total += member.size
                    if total > max_total_bytes:
                        raise CaptureError(
                            bundle,
                            f"member {member.name!r}: content exceeds {max_total_bytes} bytes",
                        )
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = archive.extractfile(member)
                    if source is None:  # pragma: no cover - isfile() members always have data
                        continue
                    with source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out, 1 << 20)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
                where = f"after member {member.name!r}" if member is not None else "at the start"
                if strict or member is None or members <= 1:
                    raise CaptureError(
                        bundle, f"truncated or corrupt bundle {where} ({err})"
                    ) from err
                refused.append(_drop_incomplete(root, member, err))
    except BaseException:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return root, refused


# TEMPORARY SHIM (core branch only; replaced by the bundle branch)
@dataclass
class Extraction:
    root: Path
    refused: list
    truncated: bool = False
    incomplete: list = None  # type: ignore[assignment]
    transient: bool = False


def extract_new(source):
    root, refused = extract(source)
    return Extraction(root, refused, False, [], False)
