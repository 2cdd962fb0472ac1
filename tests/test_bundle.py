"""tcpmemlib.bundle: safe, bounded extraction of capture bundles.

Every hostile bundle is built here with tarfile/gzip (bombs from concatenated gzip members, so a 1 GiB
member costs ~1 MB to build). Out-of-space is real: a tiny tmpfs mounted in a private mount namespace
(``unshare -m``) of a child process.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from tcpmemlib import bundle
from tcpmemlib.bundle import Extraction, Refused, extract, is_bundle
from tcpmemlib.errors import CaptureError

REPO = Path(__file__).resolve().parents[1]
MiB = 1024**2


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


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, None


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.GNU_FORMAT)


def _padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)


def _gzip_bomb(path: Path, name: str, size: int, before: bytes = b"", after: bytes = b"") -> Path:
    """A .tar.gz whose member ``name`` is ``size`` zero bytes, made of concatenated gzip members
    (one per MiB of zeros: ~1 KB each), between the tar bytes ``before`` and ``after``."""
    info = tarfile.TarInfo(name)
    info.size = size
    zeros = gzip.compress(b"\0" * MiB, 9)
    with open(path, "wb") as out:
        out.write(gzip.compress(before + _header(info)))
        for _ in range(size // MiB):
            out.write(zeros)
        out.write(gzip.compress(after + b"\0" * 2 * tarfile.BLOCKSIZE))
    return path


def _names(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_safe_members_are_extracted(tmp_path: Path):
    bundle_path = _tar(
        tmp_path / "b.tar.gz",
        [_file("./snap/meta.txt", b"cpus=1\n"), _file(".partial-x/a"), _file("phases.tsv")],
    )
    assert is_bundle(bundle_path) and not is_bundle(tmp_path)
    ex = extract(bundle_path, tmp_parent=tmp_path)
    assert isinstance(ex, Extraction) and ex.root.parent == tmp_path
    assert ex.root.name.startswith("tcpmem-bundle-")
    assert (ex.refused, ex.truncated, ex.incomplete, ex.transient) == ([], False, [], False)
    assert (ex.root / "snap" / "meta.txt").read_bytes() == b"cpus=1\n"
    assert (ex.root / ".partial-x" / "a").exists()  # dot names kept as they are


@pytest.mark.parametrize("mode", ["w", "w:bz2"])
def test_plain_and_bzip2_bundles(tmp_path: Path, mode: str):
    bundle_path = _tar(tmp_path / "b.tar", [_file("s/meta.txt"), _file("s/ss.txt")], mode)
    ex = extract(bundle_path, tmp_parent=tmp_path)
    assert _names(ex.root) == {"s", "s/meta.txt", "s/ss.txt"} and not ex.refused


def test_xz_is_refused(tmp_path: Path):
    bundle_path = _tar(tmp_path / "b.tar.gz", [_file("s/meta.txt")], "w:xz")
    with pytest.raises(CaptureError, match="xz-compressed"):
        extract(bundle_path, tmp_parent=tmp_path)
    assert not list(tmp_path.glob("tcpmem-bundle-*"))


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
    parent = tmp_path / "a" / "b"
    parent.mkdir(parents=True)
    bundle_path = _tar(tmp_path / "b.tar.gz", [_file("snap/meta.txt"), member, _file("snap/x")])
    ex = extract(bundle_path, tmp_parent=parent)
    assert [r.member for r in ex.refused] == [member[0].name]
    assert reason in ex.refused[0].reason
    assert _names(ex.root) == {"snap", "snap/meta.txt", "snap/x"}
    assert not (tmp_path / "a" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not Path("/etc/evil").exists()


def test_refusals_beyond_the_listed_ones_are_counted(tmp_path: Path):
    links = [_special(f"s/l{i}", tarfile.SYMTYPE, "/etc/passwd") for i in range(1005)]
    bundle_path = _tar(tmp_path / "b.tar.gz", [*links, _file("s/meta.txt")])
    ex = extract(bundle_path, tmp_parent=tmp_path)
    assert len(ex.refused) == bundle.MAX_REFUSED_LISTED + 1
    assert ex.refused[-1] == Refused(
        "(5 more members)", "refused too; only the first 1,000 refusals are listed"
    )
    assert _names(ex.root) == {"s", "s/meta.txt"}


# ---------------------------------------------------------------------------------------------
# caps (#10.4)


def test_a_gzip_bomb_ends_at_once_with_bounded_memory(tmp_path: Path):
    """A ~1 MB bundle whose member expands to 1 GiB: refused by its header, in a child process
    whose peak RSS is measured; the member before it is kept, nothing after it is read."""
    meta = tarfile.TarInfo("snap/meta.txt")
    meta.size = 3
    after = tarfile.TarInfo("snap/after.txt")
    after.size = 3
    before = _header(meta) + _padded(b"ok\n")
    bomb = _gzip_bomb(
        tmp_path / "bomb.tar.gz",
        "snap/ss.txt",
        1024 * MiB,
        before=before,
        after=_header(after) + _padded(b"ok\n"),
    )
    assert bomb.stat().st_size < 2 * MiB
    code = textwrap.dedent(
        f"""
        import json, resource
        from tcpmemlib.bundle import extract
        ex = extract({str(bomb)!r}, tmp_parent={str(tmp_path)!r})
        print(json.dumps({{
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "refused": [[r.member, r.reason] for r in ex.refused],
            "files": sorted(str(p.relative_to(ex.root)) for p in ex.root.rglob("*")),
            "truncated": ex.truncated, "transient": ex.transient,
        }}))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    got = json.loads(run.stdout)
    print(f"1 GiB gzip bomb: peak RSS {got['peak_rss_mib']:.0f} MiB")
    # 43 MiB when run alone; once 322 MiB in a full run on a busy box (the old code: 4.4 GB)
    assert got["peak_rss_mib"] < 512
    assert got["refused"][0][0] == "snap/ss.txt"
    assert "expands beyond 256 MiB" in got["refused"][0][1]
    assert got["files"] == ["snap", "snap/meta.txt"]
    assert not got["truncated"] and not got["transient"]


def test_a_member_over_the_file_cap_is_skipped_and_the_rest_kept(tmp_path: Path):
    """A plain .tar (sparse on disk) with a member over MAX_MEMBER_BYTES, then a good member."""
    big = tarfile.TarInfo("snap/ss.txt")
    big.size = bundle.MAX_MEMBER_BYTES + MiB
    good = tarfile.TarInfo("snap/meta.txt")
    good.size = 3
    path = tmp_path / "big.tar"
    with open(path, "wb") as out:
        out.write(_header(big))
        out.seek(big.size, io.SEEK_CUR)  # a hole: the data reads as zeros
        out.write(_header(good) + _padded(b"ok\n") + b"\0" * 2 * tarfile.BLOCKSIZE)
    ex = extract(path, tmp_parent=tmp_path)
    assert [r.member for r in ex.refused] == ["snap/ss.txt"]
    assert "expands beyond 1,024 MiB (the cap for one file)" in ex.refused[0].reason
    assert _names(ex.root) == {"snap", "snap/meta.txt"} and not ex.truncated


def test_a_header_bomb_is_stopped(tmp_path: Path):
    """A GNU long-name header of 64 MiB: tarfile would read it whole into memory."""
    info = tarfile.TarInfo("././@LongLink")
    info.type = tarfile.GNUTYPE_LONGNAME
    info.size = 64 * MiB
    zeros = gzip.compress(b"a" * MiB, 9)
    path = tmp_path / "h.tar.gz"
    with open(path, "wb") as out:
        meta = tarfile.TarInfo("snap/meta.txt")
        meta.size = 3
        out.write(
            gzip.compress(_header(meta) + _padded(b"ok\n") + info.tobuf(tarfile.USTAR_FORMAT))
        )
        for _ in range(64):
            out.write(zeros)
        out.write(gzip.compress(b"\0" * 1024))
    ex = extract(path, tmp_parent=tmp_path)
    assert "header bomb" in ex.refused[-1].reason, ex.refused
    assert ex.refused[-1].member == "(after 'snap/meta.txt')"
    assert _names(ex.root) == {"snap", "snap/meta.txt"}


def test_caps_follow_the_bundle_size():
    assert bundle.bundle_cap_bytes(1000) == bundle.MIN_BUNDLE_CAP_BYTES
    assert bundle.bundle_cap_bytes(100 * MiB) == 10_000 * MiB
    assert bundle.bundle_cap_bytes(10**12) == bundle.MAX_BUNDLE_BYTES


# ---------------------------------------------------------------------------------------------
# out of space (#10.5): a real tmpfs in a private mount namespace of a child process

_NS_SCRIPT = """
import json, shutil, sys
from tcpmemlib.bundle import extract
from tcpmemlib.errors import CaptureError
out = {}
for name in sys.argv[2:]:
    try:
        ex = extract(name, tmp_parent=sys.argv[1])
        out[name] = {"refused": [[r.member, r.reason] for r in ex.refused],
                     "truncated": ex.truncated, "transient": ex.transient,
                     "incomplete": ex.incomplete,
                     "files": sorted(str(p.relative_to(ex.root)) for p in ex.root.rglob("*"))}
        shutil.rmtree(ex.root)
    except CaptureError as err:
        out[name] = {"error": str(err)}
print(json.dumps(out))
"""


def _in_tiny_tmpfs(mnt: Path, options: str, *bundles: Path) -> dict:
    """extract() each bundle into a tmpfs mounted on ``mnt`` with ``options``, in the private mount
    namespace of a child process (the mount ends with it)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test needs root and unshare(1) for a private tmpfs")
    mnt.mkdir(exist_ok=True)
    script = f'mount -t tmpfs -o {options} tcpmem-test "$2" && exec "$0" -c "$@"'
    run = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, sys.executable]
        + [_NS_SCRIPT, str(mnt)]
        + [str(b) for b in bundles],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_out_of_space_is_transient_not_truncated(tmp_path: Path):
    # 40 snapshots of 3 files; the tmpfs holds 30 inodes: ENOSPC at the 30th file or dir.
    many = _tar(
        tmp_path / "many.tar.gz",
        [_file(f"s{i:02}/{f}.txt") for i in range(40) for f in ("meta", "ss", "ps")],
    )
    # One member of 6 MiB into a 4 MiB tmpfs: stopped before writing (the free-space reserve).
    large = _tar(
        tmp_path / "large.tar.gz",
        [_file("s0/meta.txt"), _file("s0/ss.txt", os.urandom(6 * MiB)), _file("s1/meta.txt")],
    )
    # Nothing fits: no inode left after the temp directory.
    got = _in_tiny_tmpfs(tmp_path / "mnt", "size=4m,nr_inodes=30", many, large)
    m = got[str(many)]
    assert m["transient"] and not m["truncated"] and m["incomplete"] == []
    [(member, reason)] = m["refused"]
    assert "ENOSPC" in reason and "truncated" not in reason, reason
    assert "everything after it were not extracted" in reason
    assert 10 < len(m["files"]) < 30 and member not in m["files"]
    big = got[str(large)]
    assert big["transient"] and not big["truncated"]
    assert big["refused"][0][0] == "s0/ss.txt" and "would leave less than" in big["refused"][0][1]
    assert big["files"] == ["s0", "s0/meta.txt"]
    # Nothing extracted at all: an error that says so and may not recur.
    full = _in_tiny_tmpfs(tmp_path / "mnt", "size=4m,nr_inodes=2", many)[str(many)]
    assert "ENOSPC" in full["error"] and "may not recur" in full["error"]


# ---------------------------------------------------------------------------------------------
# names and conflicts (#10.10)


def test_a_name_the_filesystem_refuses_costs_only_that_member(tmp_path: Path):
    long = "snap/" + "x" * 300 + ".txt"
    bundle_path = _tar(
        tmp_path / "b.tar.gz", [_file(long), _file("snap/meta.txt"), _file("snap2/meta.txt")]
    )
    ex = extract(bundle_path, tmp_parent=tmp_path)
    assert [r.member for r in ex.refused] == [long]
    assert "ENAMETOOLONG" in ex.refused[0].reason and "truncated" not in ex.refused[0].reason
    assert _names(ex.root) == {"snap", "snap/meta.txt", "snap2", "snap2/meta.txt"}
    assert not ex.truncated and not ex.transient


def test_file_and_directory_of_one_name(tmp_path: Path):
    bundle_path = _tar(
        tmp_path / "b.tar.gz",
        [
            _file("a/x"),
            _dir("a/x"),  # a directory where a file is
            _file("a/x/y"),  # a file under a file
            _dir("b/d"),
            _file("b/d"),  # a file where a directory is
            _file("c/meta.txt"),
        ],
    )
    ex = extract(bundle_path, tmp_parent=tmp_path)
    reasons = [(r.member, r.reason) for r in ex.refused]
    assert [m for m, _ in reasons] == ["a/x", "a/x/y", "b/d"]
    assert "a file of this name came earlier in the bundle (kept)" in reasons[0][1]
    assert "'a/x' is a file earlier in the bundle" in reasons[1][1]
    assert "a directory of this name came earlier" in reasons[2][1]
    assert _names(ex.root) == {"a", "a/x", "b", "b/d", "c", "c/meta.txt"}
    assert (ex.root / "a" / "x").is_file() and (ex.root / "b" / "d").is_dir()


def test_a_duplicate_never_replaces_the_first(tmp_path: Path):
    bundle_path = _tar(
        tmp_path / "b.tar.gz",
        [
            _file("s/meta.txt", b"hostname=real\n"),
            _file("s/ss.txt"),
            _file("./s/meta.txt", b"hostname=FAKE\n"),
        ],
    )
    ex = extract(bundle_path, tmp_parent=tmp_path)
    assert ex.refused == [
        Refused("./s/meta.txt", "duplicate of an earlier member (the first is kept)")
    ]
    assert (ex.root / "s" / "meta.txt").read_bytes() == b"hostname=real\n"


# ---------------------------------------------------------------------------------------------
# truncation and corruption (#10.7, #10.10)


def _snapshots(n: int = 4) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [
        _file(f"s{i}/{f}", os.urandom(20_000)) for i in range(n) for f in ("meta.txt", "ss.txt")
    ]


def test_a_cut_gzip_stream_is_truncated_and_names_the_cut_member(tmp_path: Path):
    whole = _tar(tmp_path / "b.tar.gz", _snapshots())
    data = whole.read_bytes()
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(data[: len(data) * 9 // 16])  # mid s2/meta.txt (random data: no compression)
    ex = extract(cut, tmp_parent=tmp_path)
    assert ex.truncated and not ex.transient and ex.refused == []
    assert ex.incomplete == ["s2/meta.txt"]
    assert _names(ex.root) == {
        "s0",
        "s0/meta.txt",
        "s0/ss.txt",
        "s1",
        "s1/meta.txt",
        "s1/ss.txt",
        "s2",
    }
    assert not (ex.root / "s2" / "meta.txt").exists(), "the cut file is never left to be read"


def test_a_tar_stream_ending_at_a_member_header_is_truncated(tmp_path: Path):
    members = b"".join(_header(i) + _padded(d) for i, d in _sized(_snapshots(2)))
    for name, wrap in (("plain.tar", lambda b: b), ("gz.tar.gz", gzip.compress)):
        path = tmp_path / name
        path.write_bytes(wrap(members))  # no end-of-archive blocks: the stream stops at a header
        ex = extract(path, tmp_parent=tmp_path)
        assert ex.truncated and ex.incomplete == ["s1/ss.txt"] and ex.refused == [], name
        assert (ex.root / "s1" / "ss.txt").stat().st_size == 20_000
        path.write_bytes(wrap(members + b"\0" * 1024))
        ex = extract(path, tmp_parent=tmp_path)
        assert not ex.truncated and ex.incomplete == [], name


def _sized(members):
    for info, data in members:
        info.size = len(data)
        yield info, data


def test_a_corrupt_stream_is_named_corrupt_not_truncated(tmp_path: Path):
    raw = b"".join(_header(i) + _padded(d) for i, d in _sized(_snapshots(3))) + b"\0" * 1024
    # A bad tar header in the middle (tarfile alone would end there silently).
    bad = bytearray(raw)
    bad[2 * (512 + 20_480) : 2 * (512 + 20_480) + 512] = b"garbage!" * 64
    path = tmp_path / "bad.tar"
    path.write_bytes(bytes(bad))
    ex = extract(path, tmp_parent=tmp_path)
    assert not ex.truncated and "corrupt" in ex.refused[-1].reason, ex.refused
    assert _names(ex.root) == {"s0", "s0/meta.txt", "s0/ss.txt"}
    # Garbage inside the deflate stream.
    z = bytearray(gzip.compress(raw, 1))
    z[len(z) // 2 : len(z) // 2 + 64] = b"\xff" * 64
    path = tmp_path / "bad.tar.gz"
    path.write_bytes(bytes(z))
    ex = extract(path, tmp_parent=tmp_path)
    assert not ex.truncated, ex
    assert "corrupt" in ex.refused[-1].reason and "truncated" not in ex.refused[-1].reason


def test_nothing_readable_raises_and_leaves_nothing(tmp_path: Path):
    parent = tmp_path / "tmp"
    parent.mkdir()
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x00\x01 not a tar at all" * 10)
    with pytest.raises(CaptureError, match="not a readable tar archive") as info:
        extract(junk, tmp_parent=parent)
    assert str(junk) in str(info.value)
    whole = _tar(tmp_path / "b.tar.gz", [_file("s/ss.txt", os.urandom(50_000))])
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[:20_000])
    with pytest.raises(CaptureError, match="no file could be extracted: the bundle is truncated"):
        extract(cut, tmp_parent=parent)
    assert list(parent.iterdir()) == []
    with pytest.raises(CaptureError, match="cannot make a temporary directory"):
        extract(whole, tmp_parent=tmp_path / "missing")
    fifo = tmp_path / "fifo.tar.gz"
    os.mkfifo(fifo)
    with pytest.raises(CaptureError, match="not a regular file"):
        extract(fifo, tmp_parent=parent)  # must not block on the open
    assert list(parent.iterdir()) == []


def test_out_of_file_descriptors_is_transient(tmp_path: Path):
    """EMFILE for real: a child process whose RLIMIT_NOFILE leaves one descriptor, the bundle's."""
    bundle_path = _tar(tmp_path / "b.tar.gz", [_file("s/meta.txt")])
    code = textwrap.dedent(
        f"""
        import os, resource
        from tcpmemlib.bundle import extract
        from tcpmemlib.errors import CaptureError
        top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        while (fd := os.open("/dev/null", os.O_RDONLY)) <= top:  # fill the holes below the top
            pass
        os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd + 1, fd + 1))
        try:
            extract({str(bundle_path)!r}, tmp_parent={str(tmp_path)!r})
        except CaptureError as err:
            print(err)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "EMFILE" in run.stdout and "may not recur" in run.stdout, run.stdout + run.stderr
    assert "truncated" not in run.stdout
    assert not list(tmp_path.glob("tcpmem-bundle-*"))


@pytest.mark.parametrize("mode", ["w:gz", "w"])
def test_random_damage_gives_an_extraction_or_a_capture_error(tmp_path: Path, mode: str):
    """Seeded damage (cut at any byte, bytes overwritten, garbage inserted): only CaptureError
    escapes, nothing is written outside the extraction root, and a cut stream is named truncated."""
    import random

    rng = random.Random(10)
    text = [_file(f"s{i}/{f}", f"{i} {f}\n".encode() * 300) for i in range(4) for f in ("a", "b")]
    good = _tar(tmp_path / f"good.{mode}", text, mode).read_bytes()
    with tarfile.open(tmp_path / f"good.{mode}") as tar:
        last = tar.getmembers()[-1]
    # A cut before this byte must show: the end of the last member's data (plain tar), or half
    # the compressed stream (gzip: its end holds only the end-of-archive blocks).
    must_show = last.offset_data + last.size if mode == "w" else len(good) // 2
    parent = tmp_path / "tmp"
    parent.mkdir()
    outcomes: dict[str, int] = {}
    for case in range(150):
        data = bytearray(good)
        kind = ("cut", "overwrite", "insert")[case % 3]
        at = rng.randrange(len(data))
        if kind == "cut":
            del data[at:]
        elif kind == "overwrite":
            data[at : at + rng.randint(1, 64)] = rng.randbytes(rng.randint(1, 64))
        else:
            data[at:at] = rng.randbytes(rng.randint(1, 600))
        path = tmp_path / "damaged"
        path.write_bytes(bytes(data))
        try:
            ex = extract(path, tmp_parent=parent)
        except CaptureError as err:
            assert str(path) in str(err)
            outcomes["error"] = outcomes.get("error", 0) + 1
        else:
            assert [p.parent for p in parent.iterdir()] == [parent]
            assert ex.truncated == bool(ex.incomplete)
            assert all("truncated" not in r.reason for r in ex.refused)
            if kind == "cut" and at < must_show:
                assert ex.truncated or ex.refused, (case, at)
            outcomes["truncated" if ex.truncated else "other"] = (
                outcomes.get("truncated" if ex.truncated else "other", 0) + 1
            )
            shutil.rmtree(ex.root)
        assert list(parent.iterdir()) == []
    assert outcomes.get("truncated", 0) > 10, outcomes
