"""tcpmemlib.bundle: safe extraction of capture bundles (hostile members are refused, caps hold)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tcpmemlib.bundle import extract, is_bundle
from tcpmemlib.errors import CaptureError


def _tar(
    path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz"
) -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _file(name: str, data: bytes = b"ok\n") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def test_safe_members_are_extracted(tmp_path: Path):
    bundle = _tar(
        tmp_path / "b.tar.gz",
        [_file("./snap/meta.txt", b"cpus=1\n"), _file(".partial-x/a"), _file("phases.tsv")],
    )
    assert is_bundle(bundle) and not is_bundle(tmp_path)
    dest, refused = extract(bundle, tmp_path / "out")
    assert refused == []
    assert (dest / "snap" / "meta.txt").read_bytes() == b"cpus=1\n"
    assert (dest / ".partial-x" / "a").exists()  # dot names kept as they are


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (_file("../evil"), "'..'"),
        (_file("snap/../../evil"), "'..'"),
        (_file("/etc/evil"), "absolute"),
        (_special("snap/link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (_special("snap/hard", tarfile.LNKTYPE, "snap/meta.txt"), "hard link"),
        (_special("dev", tarfile.CHRTYPE), "device"),
        (_special("blk", tarfile.BLKTYPE), "device"),
        (_special("fifo", tarfile.FIFOTYPE), "FIFO"),
    ],
)
def test_hostile_member_is_refused_and_named(tmp_path: Path, member, reason: str):
    bundle = _tar(tmp_path / "b.tar.gz", [_file("snap/meta.txt"), member])
    out = tmp_path / "a" / "b" / "out"
    dest, refused = extract(bundle, out)
    assert [r.member for r in refused] == [member[0].name]
    assert reason in refused[0].reason
    assert (dest / "snap" / "meta.txt").exists()
    assert not (tmp_path / "a" / "b" / "evil").exists() and not (tmp_path / "a" / "evil").exists()
    assert not Path("/etc/evil").exists()
    with pytest.raises(CaptureError) as info:
        extract(bundle, tmp_path / "strict", strict=True)
    assert repr(member[0].name) in str(info.value) and str(bundle) in str(info.value)


def test_caps(tmp_path: Path):
    bundle = _tar(tmp_path / "b.tar.gz", [_file(f"s/f{i}") for i in range(5)])
    with pytest.raises(CaptureError, match="more than 3 members"):
        extract(bundle, tmp_path / "o1", max_members=3)
    big = _tar(tmp_path / "big.tar.gz", [_file("s/a", b"x" * 1000), _file("s/b", b"y" * 1000)])
    with pytest.raises(CaptureError, match="'s/b': content exceeds 1500 bytes"):
        extract(big, tmp_path / "o2", max_total_bytes=1500)


def test_not_a_tar_and_truncated(tmp_path: Path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x00\x01 not a tar at all" * 10)
    with pytest.raises(CaptureError, match=r"not a readable tar archive|truncated or corrupt"):
        extract(junk)
    bundle = _tar(
        tmp_path / "b.tar.gz", [_file(f"s/f{i}", bytes(range(256)) * 64) for i in range(20)]
    )
    data = bundle.read_bytes()
    bundle.write_bytes(data[: len(data) // 2])
    with pytest.raises(CaptureError, match="truncated or corrupt"):
        extract(bundle, tmp_path / "strict", strict=True)
    root, refused = extract(bundle, tmp_path / "kept")
    assert [r.member for r in refused] == ["s/"], refused
    assert "truncated or corrupt" in refused[0].reason
    assert not (root / "s").exists(), "the snapshot the cut falls in is dropped whole"


def test_temp_dir_is_removed_on_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    bundle = _tar(tmp_path / "b.tar.gz", [_file("s/a"), _file("../evil")])
    with pytest.raises(CaptureError):
        extract(bundle, strict=True)
    assert not list(tmp_path.glob("tcpmem-bundle-*"))
    dest, _ = extract(bundle)
    assert dest.name.startswith("tcpmem-bundle-") and (dest / "s" / "a").exists()
