"""tcpmemlib.safeio: only regular files inside the capture are read, bounded, never followed."""

from __future__ import annotations

import gzip
import os
import resource
import threading
from pathlib import Path

import pytest

from tcpmemlib import safeio


@pytest.fixture
def folder(tmp_path: Path) -> int:
    fd = safeio.open_dir(tmp_path)
    yield fd
    os.close(fd)


def _refused(name: str, fd: int, **kw: int) -> safeio.Refused:
    with pytest.raises(safeio.Refused) as info:
        safeio.read_file(name, fd, **kw)
    return info.value


def test_plain_and_gzip_and_concatenated_members(tmp_path: Path, folder: int):
    text = b"a b\nc d\n" * 1000
    (tmp_path / "p.txt").write_bytes(text)
    (tmp_path / "g.txt.gz").write_bytes(gzip.compress(text) + gzip.compress(b"tail\n"))
    assert safeio.read_file("p.txt", folder).data == text
    got = safeio.read_file("g.txt.gz", folder)
    assert got.data == text + b"tail\n" and got.cut is None
    assert got.stored_bytes == (tmp_path / "g.txt.gz").stat().st_size


def test_a_cut_gzip_keeps_what_was_decoded(tmp_path: Path, folder: int):
    text = b"".join(b"line %d\n" % i for i in range(20000))
    data = gzip.compress(text)
    (tmp_path / "cut.gz").write_bytes(data[: len(data) // 2])
    got = safeio.read_file("cut.gz", folder)
    assert got.cut is not None and "truncated" in got.cut
    assert 0 < len(got.data) < len(text) and text.startswith(got.data)


def test_links_fifos_and_devices_are_refused_without_blocking(tmp_path: Path, folder: int):
    secret = tmp_path.parent / "secret.txt"
    secret.write_text("TOP SECRET\n")
    (tmp_path / "meminfo.txt").symlink_to(secret)
    (tmp_path / "zero").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "phases.tsv")
    assert "symbolic link" in _refused("meminfo.txt", folder).reason
    assert "symbolic link" in _refused("zero", folder).reason
    done: list[str] = []
    reader = threading.Thread(target=lambda: done.append(_refused("phases.tsv", folder).reason))
    reader.start()
    reader.join(10)
    assert done and "FIFO" in done[0]
    null = safeio.open_dir("/dev")
    try:
        assert "device" in _refused("null", null).reason
    finally:
        os.close(null)


def test_a_gzip_bomb_is_refused_with_bounded_memory(tmp_path: Path, folder: int):
    block = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    (tmp_path / "bomb.gz").write_bytes(block * 16)  # 1 GiB of zeros in ~1 MB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reason = _refused("bomb.gz", folder, limit=32 << 20).reason
    grew_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert "beyond the 32 MiB limit" in reason
    assert grew_kib < 200 * 1024


def test_a_large_plain_file_is_refused(tmp_path: Path, folder: int):
    (tmp_path / "big.txt").write_bytes(b"x\n" * 1000)
    assert "limit" in _refused("big.txt", folder, limit=100).reason


def test_a_symlinked_directory_is_refused(tmp_path: Path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(safeio.Refused, match="symbolic link"):
        safeio.open_dir(tmp_path / "link")


def test_decode_escapes_what_is_not_utf8_and_finds_nul():
    text, nul = safeio.decode_text('users:(("caf\xe9",pid=1,fd=3))\n'.encode("latin-1"))
    assert "caf\\xe9" in text and nul is None
    assert safeio.decode_text(b"a\nb\n\x00c\n")[1] == 3


def test_isa_l_and_zlib_inflate_every_kind_of_gzip_alike(
    tmp_path: Path, folder: int, monkeypatch: pytest.MonkeyPatch
):
    """The loader inflates with ISA-L where python-isal is installed (it is, with the project on
    x86-64 and ARM64), else with zlib: whole, concatenated, cut, corrupt, padded, trailing garbage
    and over the limit, both give the same bytes and the same verdict."""
    import zlib

    isal_zlib = pytest.importorskip("isal.isal_zlib")
    assert safeio._INFLATE is isal_zlib
    text = b"".join(b"line %d of a snapshot file\n" % i for i in range(50_000))
    whole = gzip.compress(text)
    cases = {
        "whole": whole,
        "two members": whole + gzip.compress(b"after\n"),
        "cut": whole[: len(whole) // 2],
        "corrupt": whole[:40] + bytes(64) + whole[104:],
        "padded": whole + bytes(512),
        "garbage after": whole + b"not gzip",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    got = {}
    for module, errors in ((isal_zlib, (zlib.error, isal_zlib.error)), (zlib, (zlib.error,))):
        monkeypatch.setattr(safeio, "_INFLATE", module)
        monkeypatch.setattr(safeio, "_INFLATE_ERRORS", errors)
        for name in cases:
            read = safeio.read_file(name, folder)
            verdict = None if read.cut is None else read.cut.split(" (")[0]
            got[module.__name__, name] = (read.data, verdict)
        got[module.__name__, "limit"] = str(_refused("whole", folder, limit=100_000))
    for name in [*cases, "limit"]:
        if name in ("cut", "corrupt"):  # ISA-L holds back the last byte or so of a broken stream
            (fast, fast_verdict), (slow, slow_verdict) = (
                got["isal.isal_zlib", name],
                got["zlib", name],
            )
            assert (
                slow.startswith(fast) and len(slow) - len(fast) < 8 and fast_verdict == slow_verdict
            )
            continue
        assert got["isal.isal_zlib", name] == got["zlib", name], name
    assert got["zlib", "two members"][0] == text + b"after\n"
    assert got["zlib", "cut"][1].startswith("truncated gzip data")
    assert got["zlib", "corrupt"][1].startswith("corrupt gzip data")
    assert got["zlib", "garbage after"][1] == "garbage after the gzip data"
