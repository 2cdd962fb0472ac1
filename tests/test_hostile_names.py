"""A process name nobody chose: real processes holding loopback sockets rename themselves.

Issue 10 defect 6: ss prints process names raw, so a name with ``\\n`` or a byte that is not UTF-8
(a Latin-1 program name, or any user's ``prctl(PR_SET_NAME)``) cost whole ss files (socket rows 0)
and, mixed with clean snapshots, raised ``TypeError``. Here, in a network namespace of its own,
two child processes each hold ``N_PAIRS`` loopback connections and a listener; collect.sh takes
one snapshot while their names are clean, then they rename themselves with
``prctl(PR_SET_NAME)`` (one to ``evil\\nname``, one to ``caf\\xe9-holder``) and collect.sh takes two
more. The three snapshots are one capture. Its load must keep every socket row of both
processes in every snapshot, and their names as text: escaped or decoded, never dropped, never a
raw control character, never a lone surrogate (it must survive the Parquet cache and the workers).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from collect_helpers import COLLECT, REPO
from damage_helpers import Loader, Result, world_dir

N_PAIRS = 6
HANG_S = 60.0
HOSTILE = {"newline": b"evil\nname", "latin1": b"caf\xe9-holder"}
CLEAN = b"clean-holder"

pytestmark = pytest.mark.timeout(300)

_HOLDER = r"""
import ctypes, socket, sys
n = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NAME = 15
def rename(name):
    if libc.prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl")
rename(bytes.fromhex(sys.argv[2]))
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(64)
held = []
for _ in range(n):
    c = socket.create_connection(lst.getsockname())
    a, _ = lst.accept()
    held += [c, a]
print("ready", flush=True)
for line in sys.stdin:  # "rename HEX": take that name; EOF: exit
    rename(bytes.fromhex(line.split()[1]))
    print("renamed", flush=True)
"""

# Runs inside `unshare --net`: the holders and both collect.sh runs see only this namespace.
_SCENE = r"""
import json, subprocess, sys
holder, collect, clean_out, hostile_out, n, clean_hex, *names_hex = sys.argv[1:]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
procs = [
    subprocess.Popen([sys.executable, "-c", holder, n, clean_hex], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, text=True)
    for _ in names_hex
]
try:
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    def collect_into(out, count):
        res = subprocess.run(["sh", collect, "-N", "-o", out, "-n", str(count), "-i", "0"],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
    collect_into(clean_out, 1)
    for p, name in zip(procs, names_hex):
        p.stdin.write(f"rename {name}\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "renamed"
    collect_into(hostile_out, 2)
    print(json.dumps({"pids": [p.pid for p in procs]}))
finally:
    for p in procs:
        p.stdin.close()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=20)
"""


@pytest.fixture(scope="module")
def scene() -> Iterator[dict[str, Any]]:
    """The merged capture (1 clean snapshot, then 2 with hostile names) and the holders' pids."""
    base = world_dir("tcpmem-names-")
    try:
        clean_out, hostile_out = base / "clean", base / "hostile"
        res = subprocess.run(
            [
                "unshare",
                "--net",
                sys.executable,
                "-c",
                _SCENE,
                _HOLDER,
                str(COLLECT),
                str(clean_out),
                str(hostile_out),
                str(N_PAIRS),
                CLEAN.hex(),
                *(name.hex() for name in HOSTILE.values()),
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
        assert res.returncode == 0, res.stderr
        pids = dict(zip(HOSTILE, json.loads(res.stdout.splitlines()[-1])["pids"], strict=True))
        cap = base / "capture"
        cap.mkdir()
        clean = sorted(p.name for p in clean_out.iterdir() if not p.name.startswith("."))
        hostile = sorted(p.name for p in hostile_out.iterdir() if not p.name.startswith("."))
        for name in clean:
            shutil.move(clean_out / name, cap / name)
        for name in hostile:
            shutil.move(hostile_out / name, cap / name)
        assert (len(clean), len(hostile)) == (1, 2)
        yield {"cap": cap, "pids": pids, "clean": clean, "hostile": hostile}
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def loader() -> Iterator[Loader]:
    with Loader() as ld:
        yield ld


def frame(res: Result, name: str) -> pd.DataFrame:
    assert not res.hung and not res.died, res.describe()
    assert res.ok, res.describe()
    text = res.summary["dump"][name]
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def test_the_names_are_really_on_the_box(scene: dict[str, Any]) -> None:
    """The workload is what the test says: ss printed the raw names in the hostile snapshots."""
    for snap in scene["hostile"]:
        raw = gzip.decompress((scene["cap"] / snap / "ss_tcp.txt.gz").read_bytes())
        for pid in scene["pids"].values():
            assert f"pid={pid},".encode() in raw
        assert b"caf\xe9-holder" in raw
        assert b"evil" in raw


@pytest.mark.parametrize(("cache", "workers"), [(False, 1), (True, 1), (True, 2)])
def test_hostile_names_keep_their_socket_rows(
    scene: dict[str, Any], loader: Loader, tmp_path: Path, cache: bool, workers: int
) -> None:
    cap = tmp_path / "capture"
    shutil.copytree(scene["cap"], cap)
    loads = [loader.load(cap, cache=cache, workers=workers, timeout_s=HANG_S, dump=True)]
    if cache:
        loads.append(loader.load(cap, cache=True, workers=workers, timeout_s=HANG_S, dump=True))
    for res in loads:
        owners = frame(res, "owners")
        snapshots = res.summary["snapshots"]
        assert sorted(snapshots) == sorted(scene["clean"] + scene["hostile"])
        for snap in scene["clean"] + scene["hostile"]:
            ts = snapshots[snap]
            for key, pid in scene["pids"].items():
                rows = owners[(owners["ts"] == ts) & (owners["pid"] == str(pid))]
                # a listener plus both ends of every pair
                assert len(rows) == 2 * N_PAIRS + 1, (
                    f"{snap} ({'clean' if snap in scene['clean'] else 'hostile'} names): "
                    f"{len(rows)} socket rows of the {key} holder (pid {pid}), "
                    f"{2 * N_PAIRS + 1} held; problems: {res.problems}"
                )
                names = set(rows["comm"])
                assert len(names) == 1, names
                comm = names.pop()
                if snap in scene["clean"]:
                    assert comm == CLEAN.decode()
                    continue
                assert not any(ord(c) < 32 or ord(c) == 127 for c in comm), repr(comm)
                comm.encode("utf-8")  # no lone surrogate: it must survive Parquet and pickling
                if key == "newline":
                    assert "evil" in comm and "name" in comm, repr(comm)
                else:
                    assert comm.startswith("caf") and comm.endswith("-holder"), repr(comm)
                    assert comm != "caf-holder", "the byte \\xe9 was dropped"
    if cache:
        assert loads[1].summary["frames"] == loads[0].summary["frames"]


def test_hostile_names_keep_their_process_rows(scene: dict[str, Any], loader: Loader) -> None:
    res = loader.load(scene["cap"], cache=False, timeout_s=HANG_S, dump=True)
    processes = frame(res, "processes")
    for snap in scene["hostile"]:
        ts = res.summary["snapshots"][snap]
        for key, pid in scene["pids"].items():
            rows = processes[(processes["ts"] == ts) & (processes["pid"] == str(pid))]
            assert len(rows) == 1, f"{snap}: the {key} holder (pid {pid}) has {len(rows)} ps rows"
            comm = rows["comm"].iloc[0]
            assert not any(ord(c) < 32 for c in comm), repr(comm)
            comm.encode("utf-8")
