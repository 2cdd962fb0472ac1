"""Where a load writes its socket rows (each chunk's part file: the cache entry, or a temporary
directory) may be full. Out of space is real here: the capture is copied into a tiny tmpfs mounted in
the private mount namespace of a child process, with room for the capture but not for its rows.

- With the cache: the load warns that the cache cannot take the rows, and loads again with the rows
  in the temporary directory: every row there, no cache entry left behind.
- Without room anywhere: a ``ScratchError`` (a ``CaptureError``) naming the place and ENOSPC, and
  nothing left behind; with one worker process or two.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample.tar.gz"

_SCRIPT = """
import json, os, sys, tempfile, warnings
import tcpmemlib
from tcpmemlib.errors import ScratchError
capture, workers, full_tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    cap = tcpmemlib.load_capture(capture, workers=workers, sockets="memory")
out["rows"] = cap.socket_rows
out["owners"] = len(cap.owners)
out["warned"] = [str(w.message) for w in caught if "cache cannot take" in str(w.message)]
out["cache"] = sorted(os.listdir(os.path.join(capture, ".tcpmem-cache")))
os.makedirs(full_tmp)
tempfile.tempdir = full_tmp  # the temporary directory is on the full tmpfs too
try:
    tcpmemlib.load_capture(capture, cache=False, workers=workers)
    out["error"] = None
except ScratchError as err:
    out["error"], out["errno"] = str(err), err.errno
out["left"] = sorted(os.listdir(full_tmp))
print(json.dumps(out))
"""


def _room_for(tree: Path) -> int:
    """KiB a tmpfs needs to hold ``tree`` (pages of 4 KiB, a page per directory)."""
    pages = 0
    for path in [tree, *tree.rglob("*")]:
        pages += 1 if path.is_dir() else -(-path.stat().st_size // 4096)
    return pages * 4


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    with tarfile.open(SAMPLE) as tar:
        tar.extractall(out, filter="data")
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_no_room_for_the_rows(tmp_path: Path, sample_dir: Path, workers: int):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test needs root and unshare(1) for a private tmpfs")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    size = _room_for(sample_dir) + 256  # the rows of the sample take ~1.1 MB
    script = (
        f'mount -t tmpfs -o size={size}k tcpmem-test "$1" && cp -a "$2/." "$1/cap" '
        '&& exec "$0" -c "$3" "$1/cap" "$4" "$1/tmp"'
    )
    command = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, sys.executable]
    run = subprocess.run(
        [*command, str(mnt), str(sample_dir), _SCRIPT, str(workers)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout)
    assert got["rows"] == 44105 and got["owners"] > 0  # every row, from the temporary directory
    assert len(got["warned"]) == 1 and "No space left on device" in got["warned"][0]
    assert got["cache"] == []  # no entry, not even a temporary one
    assert got["errno"] == errno.ENOSPC
    assert "socket rows not written here: No space left on device" in got["error"]
    assert "free space there, or set TMPDIR" in got["error"]
    assert got["left"] == []
    assert "Traceback" not in run.stderr
