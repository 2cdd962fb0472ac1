"""Helpers for the damage and hostile-input tests: a real capture, bounded loads, and damage.

- ``make_capture(out, ...)``: a real capture written by the repository's collect.sh while child
  processes hold loopback connections (``collect_helpers.LoopbackPairs``).
- ``Loader``: ``load_capture`` run in a separate Python process (optionally as user ``nobody``,
  under an address-space limit), one load per request. A load that does not answer within its
  timeout is a hang: the process group is killed and the load comes back as ``hung``, so a FIFO,
  a device or a dead worker fails a test instead of stopping the suite; a load that eats memory
  meets the limit instead of the machine. Each answer is a ``Result``: the exception that escaped
  (type, is it a ``TcpmemError``), or a summary of every frame per snapshot, the problems rows,
  and the loader process's peak RSS.
- ``Damage`` and ``apply_damage``: one kind of damage to one file, one snapshot or the capture.

Only the public API is used: ``tcpmemlib.load_capture``, ``Capture.frames()``, the ``problems``
columns (snapshot, file, line, reason, severity) and ``tcpmemlib.errors.TcpmemError``.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import gzip
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collect_helpers import REPO

NOBODY_UID = 65534
NOBODY = ["setpriv", "--reuid", str(NOBODY_UID), "--regid", str(NOBODY_UID), "--clear-groups"]
LOAD_TIMEOUT_S = 120.0  # one load of a 4-snapshot capture takes ~0.1 s (workers=2: ~1.5 s)
PRISTINE_SNAPSHOTS = 4  # the shared real capture's (tests/conftest.py ``pristine``)
ADDRESS_SPACE_BYTES = 4 * 1024**3  # the loader process's RLIMIT_AS (pandas+pyarrow map ~1.5 GB)

# The loader process: reads one JSON request per line on stdin, answers one JSON line on the fd
# passed as argv[1] (stdout goes to stderr: nothing the loader prints can break the protocol).
_SERVER = r"""
import hashlib, json, os, resource, sys, traceback, warnings
proto = os.fdopen(int(sys.argv[1]), "w")
os.dup2(2, 1)
limit = int(sys.argv[2])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
warnings.simplefilter("ignore")
import pandas as pd
import tcpmemlib
from tcpmemlib.errors import TcpmemError

SOCKET_KEY = ("netid", "state", "local_address", "local_port", "peer_address", "peer_port", "inode")


def rows_text(frame):
    text = frame.astype("string").fillna("<NA>") if len(frame.columns) else frame
    return ["\x1f".join(r) for r in text.itertuples(index=False, name=None)]


def summarize(cap, dump):
    frames = cap.frames()
    sockets, owners = frames["sockets"], frames["owners"]
    # sock_id is a join key numbered across the whole load: owners get the socket's identity
    key = [c for c in SOCKET_KEY if c in sockets.columns]
    owners = owners.merge(sockets[["sock_id", *key]], on="sock_id", how="left")
    frames["owners"] = owners.drop(columns="sock_id")
    frames["sockets"] = sockets.drop(columns="sock_id")
    out = {"frames": {}, "counts": {}, "columns": {}}
    for name, frame in frames.items():
        if name == "problems":
            continue
        out["columns"][name] = [str(c) for c in frame.columns]
        keys = frame["ts"].astype("string").fillna("<NA>").tolist() if "ts" in frame else ["*"] * len(frame)
        groups = {}
        for k, row in zip(keys, rows_text(frame)):
            groups.setdefault(k, []).append(row)
        out["frames"][name] = {
            k: hashlib.sha256("\n".join(sorted(v)).encode("utf-8", "backslashreplace")).hexdigest()
            for k, v in groups.items()
        }
        out["counts"][name] = {k: len(v) for k, v in groups.items()}
    meta = frames["meta"]
    out["snapshots"] = dict(zip(meta["snapshot"].astype("string"), meta["ts"].astype("string")))
    problems = cap.problems
    out["problems"] = [
        {c: (None if pd.isna(v) else (int(v) if c == "line" else str(v))) for c, v in row.items()}
        for row in problems.to_dict("records")
    ]
    if dump:
        out["dump"] = {name: frame.to_csv(index=False) for name, frame in frames.items()}
        out["dump"]["problems"] = problems.to_csv(index=False)
    return out


for line in sys.stdin:
    req = json.loads(line)
    tight = req.get("address_space")
    if tight:  # this load only (workers inherit it); the imports are done
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        resource.setrlimit(resource.RLIMIT_AS, (tight, hard))
    try:
        cap = tcpmemlib.load_capture(req["path"], **req["kwargs"])
        ans = {"ok": True, "summary": summarize(cap, req.get("dump", False))}
        del cap
    except BaseException as err:
        ans = {
            "ok": False,
            "type": f"{type(err).__module__}.{type(err).__qualname__}",
            "tcpmem": isinstance(err, TcpmemError),
            "message": str(err)[:2000],
            "traceback": traceback.format_exc()[-4000:],
        }
    if tight:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ans["maxrss_kib"] = ru
    ans["vm_kib"] = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmSize:")][0]
    proto.write(json.dumps(ans) + "\n")
    proto.flush()
"""


@dataclass
class Result:
    """One load's outcome (see the module docstring)."""

    ok: bool
    hung: bool = False
    died: bool = False
    exc_type: str = ""
    tcpmem: bool = False
    message: str = ""
    traceback: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    maxrss_kib: int = 0

    @property
    def problems(self) -> list[dict[str, Any]]:
        return list(self.summary.get("problems", []))

    def describe(self) -> str:
        if self.hung:
            return "the load hung (no answer within its timeout; process group killed)"
        if self.died:
            return f"the loader process died: {self.message}"
        if not self.ok:
            return f"{self.exc_type}: {self.message}\n{self.traceback}"
        return "loaded"


class Loader:
    """``load_capture`` in a separate process, restarted after a hang or a crash."""

    def __init__(
        self,
        user: str | None = None,
        address_space: int = ADDRESS_SPACE_BYTES,
        wrapper: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``user``: None (this user) or ``"nobody"``; ``address_space``: RLIMIT_AS of the loader
        (0: none); ``wrapper``: a command the loader runs under (``[..., "cmd", args...]`` that
        ends by running its arguments, e.g. ``unshare``); ``env``: extra environment."""
        self.user = user
        self.address_space = address_space
        self.wrapper = wrapper or []
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.proto_fd = -1
        self.buf = b""
        self.vm_kib = 0  # the loader's address space after its last load

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        env = dict(os.environ)
        python, path = nobody_python() if self.user == "nobody" else (sys.executable, str(REPO))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (path, env.get("PYTHONPATH", "")) if p)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.setdefault("TQDM_DISABLE", "1")
        env.update(self.env)
        prefix = NOBODY if self.user == "nobody" else []
        self.proc = subprocess.Popen(
            [
                *self.wrapper,
                *prefix,
                python,
                "-c",
                _SERVER,
                str(write_fd),
                str(self.address_space),
            ],
            stdin=subprocess.PIPE,
            pass_fds=(write_fd,),
            env=env,
            cwd="/",
            start_new_session=True,  # its own process group: a hang kills the workers too
        )
        os.close(write_fd)
        self.proto_fd = read_fd
        self.buf = b""

    def _kill(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        os.close(self.proto_fd)
        self.proc = None

    def close(self) -> None:
        if self.proc is None:
            return
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        self._kill()

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(
        self,
        path: str | os.PathLike[str],
        *,
        timeout_s: float = LOAD_TIMEOUT_S,
        dump: bool = False,
        address_space: int = 0,
        **kwargs: Any,
    ) -> Result:
        """``load_capture(path, **kwargs)`` in the loader process, at most ``timeout_s``.
        ``dump``: the result's summary also holds every frame as CSV text (``"dump"``)."""
        if not self.send(path, dump=dump, address_space=address_space, **kwargs):
            return Result(ok=False, died=True, message="loader process gone before the request")
        return self.receive(timeout_s)

    def send(
        self,
        path: str | os.PathLike[str],
        *,
        dump: bool = False,
        address_space: int = 0,
        **kwargs: Any,
    ) -> bool:
        """Start a load (``receive`` gets its result); False if the loader is gone.
        ``address_space``: RLIMIT_AS for this load only (soft limit, 0: unchanged)."""
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self._kill()
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        req = {"path": os.fspath(path), "kwargs": kwargs, "dump": dump}
        if address_space:
            req["address_space"] = address_space
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._kill()
            return False
        return True

    def receive(self, timeout_s: float = LOAD_TIMEOUT_S) -> Result:
        """The result of the load started by ``send``, waiting at most ``timeout_s``."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill()
                return Result(ok=False, hung=True)
            ready, _, _ = select.select([self.proto_fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(self.proto_fd, 1 << 20)
            if not chunk:
                code = self.proc.wait(timeout=30)
                self._kill()
                return Result(ok=False, died=True, message=f"exit status {code}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        ans = json.loads(line)
        self.vm_kib = int(ans["vm_kib"])
        if ans["ok"]:
            return Result(ok=True, summary=ans["summary"], maxrss_kib=ans["maxrss_kib"])
        return Result(
            ok=False,
            exc_type=ans["type"],
            tcpmem=ans["tcpmem"],
            message=ans["message"],
            traceback=ans["traceback"],
            maxrss_kib=ans["maxrss_kib"],
        )


# --- the real capture


_CAPTURE = r"""
import subprocess, sys
from collect_helpers import COLLECT, LoopbackPairs
out, n_snapshots, n_pairs, n_procs, *extra = sys.argv[1:]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
with LoopbackPairs(int(n_pairs), n_procs=int(n_procs)):
    res = subprocess.run(
        ["sh", str(COLLECT), "-N", "-o", out, "-n", n_snapshots, "-i", "0", *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )
sys.stderr.write(res.stderr)
sys.exit(res.returncode)
"""


def make_capture(
    out: Path,
    n_snapshots: int = 4,
    n_pairs: int = 15,
    n_procs: int = 2,
    extra: tuple[str, ...] = (),
) -> Path:
    """A real capture by collect.sh (as root) in a network namespace of its own, where
    ``n_procs`` child processes hold ``n_pairs`` loopback connections: the snapshots hold these
    sockets only, not the host's, so a load takes ~0.1 s."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).parent), str(REPO)) if p)
    args = [str(out), str(n_snapshots), str(n_pairs), str(n_procs), *extra]
    res = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", _CAPTURE, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return out


def snapshot_dirs(cap: Path) -> list[Path]:
    return sorted(p for p in cap.iterdir() if p.is_dir() and not p.name.startswith("."))


def world_dir(prefix: str) -> Path:
    """A fresh directory under the system temp dir that user nobody can traverse (pytest's
    basetemp is 0700 root). The caller removes it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def _nobody_imports(python: str, path: str) -> bool:
    """Whether ``python`` run as nobody with PYTHONPATH ``path`` imports tcpmemlib and pandas."""
    env = {**os.environ, "PYTHONPATH": path}
    probe = [*NOBODY, python, "-c", "import tcpmemlib.capture, pandas"]
    run = subprocess.run(probe, env=env, cwd="/", capture_output=True, timeout=120, check=False)
    return run.returncode == 0


_MIRROR: list[tuple[str, str]] = []  # the interpreter and PYTHONPATH found for nobody, once


def nobody_python() -> tuple[str, str]:
    """The interpreter and PYTHONPATH a loader run as ``nobody`` uses: this venv's and the checkout,
    or, when nobody cannot read them there (a checkout in a ``mktemp -d`` directory, mode 0700),
    the venv's base interpreter with hard links of the venv's packages and of tcpmemlib in a
    world-traversable temporary directory (made once, removed at exit)."""
    if _MIRROR:
        return _MIRROR[0]
    if _nobody_imports(sys.executable, str(REPO)):
        _MIRROR.append((sys.executable, str(REPO)))
        return _MIRROR[0]
    base = world_dir("tcpmem-nobody-python-")
    atexit.register(shutil.rmtree, base, True)
    (base / "repo").mkdir(mode=0o755)
    site = sysconfig.get_paths()["purelib"]
    subprocess.run(["cp", "-al", site, str(base / "site")], check=True, timeout=120)
    cmd = ["cp", "-al", str(REPO / "tcpmemlib"), str(base / "repo" / "tcpmemlib")]
    subprocess.run(cmd, check=True, timeout=120)
    found = (os.path.realpath(sys.executable), f"{base / 'repo'}{os.pathsep}{base / 'site'}")
    if not _nobody_imports(*found):
        raise AssertionError(f"user nobody cannot run {found[0]} with tcpmemlib and pandas")
    _MIRROR.append(found)
    return found


def chown_tree(path: Path, uid: int = NOBODY_UID) -> None:
    """Give a copied capture to ``uid`` (links themselves, never their targets)."""
    os.lchown(path, uid, uid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, uid)


def file_stem(name: str) -> str:
    """A snapshot file's name without ``.gz`` (the loader reads X and X.gz alike)."""
    return name[:-3] if name.endswith(".gz") else name


def gunzip_or_plain(data: bytes, name: str) -> bytes:
    return gzip.decompress(data) if name.endswith(".gz") else data


def regzip(text: bytes, name: str) -> bytes:
    return gzip.compress(text, mtime=0) if name.endswith(".gz") else text


# --- damage

FILE_KINDS = (
    "cut",  # the file's bytes cut at any byte (a .gz file: inside its gzip member)
    "cut_text",  # a .gz file's text cut at any byte, gzipped again (a valid gzip stream)
    "garbage_nul",  # bytes holding at least one NUL inserted at any byte
    "garbage_text",  # bytes without NUL inserted at any byte
    "empty",
    "remove",
    "unreadable",  # mode 000 (the loader runs as nobody, owner of the copy)
    "fifo",  # the file replaced by a FIFO nobody writes to
    "devzero",  # the file replaced by a character device reading as /dev/zero (mknod 1,5)
    "link_devzero",  # the file replaced by a symlink to /dev/zero
    "link_outside",  # the file replaced by a symlink to a copy of itself outside the capture
)
SNAPSHOT_KINDS = (
    "duplicate",  # the snapshot copied under a new snapshot name
    "link_snapshot",  # a new snapshot name that is a symlink to the snapshot
    "unreadable_dir",  # the snapshot directory at mode 000
)
STRAY_KINDS = (
    "stray_fifo",  # an extra FIFO (in a snapshot, or in the capture)
    "stray_socket",  # an extra Unix socket file
    "stray_dir",  # an extra directory holding a file
)


@dataclass(frozen=True)
class Damage:
    """One damage: ``kind`` to file ``file`` of snapshot number ``snap`` (file kinds), to the
    snapshot (snapshot kinds) or an extra entry in the snapshot or, with ``snap`` -1, in the
    capture (stray kinds). ``pos`` is a fraction in [0, 1) of the length it applies to; ``data``
    the garbage bytes."""

    kind: str
    snap: int
    file: str = ""
    pos: float = 0.0
    data: bytes = b""


def snapshot_name_plus(name: str, ns: int) -> str:
    """``20261204T212216.154577535Z`` -> the same name ``ns`` nanoseconds later."""
    head, frac = name[:-1].split(".")
    return f"{head}.{int(frac) + ns:09d}Z"


def apply_damage(cap: Path, damage: Damage, outside: Path, names: list[str]) -> dict[str, str]:
    """Apply ``damage`` to the capture ``cap`` (as root, before the copy is given to nobody's
    loader; modes are set by ``finish_damage``). ``outside``: a directory beside the capture for
    link targets; ``names``: the snapshot names before any damage (``snap`` indexes them). Returns what a load must name: ``{"snapshot": name, "file": name or ""}`` or
    ``{"snapshot": new name, "new": "1"}`` for a snapshot that must be loaded or named, or {}."""
    if damage.kind in STRAY_KINDS:
        where = cap if damage.snap < 0 else cap / names[damage.snap]
        target = where / f"stray-{damage.kind}"
        if damage.kind == "stray_fifo":
            os.mkfifo(target)
        elif damage.kind == "stray_socket":
            with socket.socket(socket.AF_UNIX) as s:
                s.bind(os.fspath(target))
        else:
            target.mkdir()
            (target / "notes.txt").write_text("not a snapshot file\n")
        return {}
    snap = cap / names[damage.snap]
    if damage.kind == "duplicate":
        new = cap / snapshot_name_plus(snap.name, 1)
        shutil.copytree(snap, new, symlinks=True)
        return {"snapshot": new.name, "new": "1"}
    if damage.kind == "link_snapshot":
        new = cap / snapshot_name_plus(snap.name, 1)
        new.symlink_to(snap.name)
        return {"snapshot": new.name, "new": "1"}
    if damage.kind == "unreadable_dir":
        return {"snapshot": snap.name, "file": "", "mode_dir": "1"}
    path = snap / damage.file
    data = path.read_bytes()
    kind = damage.kind
    if kind == "cut_text" and not damage.file.endswith(".gz"):
        kind = "cut"
    if kind in ("cut", "cut_text", "empty") and not data:
        return {}  # an empty file cut or emptied is unchanged: nothing to name
    if kind == "cut":
        if int(damage.pos * len(data)) == len(data):
            return {}
        path.write_bytes(data[: int(damage.pos * len(data))])
    elif kind == "cut_text":
        text = gzip.decompress(data)
        path.write_bytes(regzip(text[: int(damage.pos * len(text))], damage.file))
    elif kind in ("garbage_nul", "garbage_text"):
        at = int(damage.pos * (len(data) + 1))
        path.write_bytes(data[:at] + damage.data + data[at:])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "remove":
        path.unlink()
    elif kind == "unreadable":
        pass  # finish_damage sets the mode after the copy is given to nobody
    elif kind == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif kind == "devzero":
        path.unlink()
        os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 5))
    elif kind == "link_devzero":
        path.unlink()
        path.symlink_to("/dev/zero")
    elif kind == "link_outside":
        copy = outside / f"{snap.name}-{damage.file}"
        copy.write_bytes(data)
        copy.chmod(0o644)
        path.unlink()
        path.symlink_to(copy)
    else:
        raise ValueError(f"unknown damage kind {damage.kind!r}")
    return {"snapshot": snap.name, "file": damage.file}


def finish_damage(cap: Path, damage: Damage, names: list[str]) -> None:
    """Modes that must be set after ``chown_tree`` (mode 000 on a file or a snapshot)."""
    if damage.kind == "unreadable":
        (cap / names[damage.snap] / damage.file).chmod(0)
    elif damage.kind == "unreadable_dir":
        (cap / names[damage.snap]).chmod(0)


def named(problems: list[dict[str, Any]], snapshot: str, file: str = "") -> bool:
    """True if a problems row names ``snapshot`` (and ``file`` if given; X and X.gz alike). A
    snapshot skipped whole (its meta.txt unreadable, say) names every file in it."""
    for row in problems:
        in_snap = row.get("snapshot") == snapshot or snapshot in (row.get("file") or "")
        if not in_snap:
            continue
        if not file or "snapshot skipped" in (row.get("reason") or ""):
            return True
        shown = os.path.basename(row.get("file") or "")
        if file_stem(shown) == file_stem(file):
            return True
    return False


def new_problems(
    problems: list[dict[str, Any]], baseline: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The rows of ``problems`` that the undamaged load does not have."""
    seen = {(r["snapshot"], r["file"], r["reason"]) for r in baseline}
    return [r for r in problems if (r["snapshot"], r["file"], r["reason"]) not in seen]


def tree_state(path: Path) -> dict[str, str]:
    """Every entry under ``path`` (links not followed): its kind and content, to show that a load
    left a directory untouched."""
    out: dict[str, str] = {}
    for root, dirs, files in os.walk(path):
        for name in sorted(dirs + files):
            full = Path(root, name)
            rel = os.fspath(full.relative_to(path))
            st_ = full.lstat()
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = "link " + os.readlink(full)
            elif stat.S_ISREG(st_.st_mode):
                out[rel] = "file " + hashlib.sha256(full.read_bytes()).hexdigest()
            else:
                out[rel] = f"mode {stat.S_IFMT(st_.st_mode):o}"
    return out


def make_bundle(cap: Path, bundle: Path) -> Path:
    """``bundle`` (.tar.gz) of the capture's snapshot directories, as ``collect.sh -b`` makes it
    (``tar -C DIR -cf - SNAPSHOTS | gzip``)."""
    names = [p.name for p in snapshot_dirs(cap)]
    tar = subprocess.run(
        ["tar", "-C", str(cap), "-cf", "-", *names], capture_output=True, check=True, timeout=60
    )
    bundle.write_bytes(gzip.compress(tar.stdout, compresslevel=6))
    return bundle


def edit_file(path: Path, edit: Callable[[bytes], bytes]) -> None:
    """Rewrite a snapshot file's text through ``edit`` (gunzipped and gzipped again for X.gz)."""
    data = gunzip_or_plain(path.read_bytes(), path.name)
    path.write_bytes(regzip(edit(data), path.name))


def rows_of(summary: dict[str, Any], frame: str, snapshot: str) -> int:
    """Rows of ``frame`` for ``snapshot`` in a load's summary (0 if the snapshot is not loaded)."""
    ts = summary["snapshots"].get(snapshot)
    return int(summary["counts"][frame].get(ts, 0)) if ts is not None else 0


def grow_capture(src: Path, dest: Path, n_snapshots: int, interval_s: int = 10) -> Path:
    """A capture of ``n_snapshots`` made of ``src``'s real snapshots in turn, each under a new
    name ``interval_s`` apart with ``start=``/``end=`` in its meta.txt to match (a longer capture
    for the tests that need the loader's workers to have work)."""
    snaps = snapshot_dirs(src)
    dest.mkdir(parents=True)
    t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    for k in range(n_snapshots):
        when = t0 + datetime.timedelta(seconds=k * interval_s)
        name = when.strftime("%Y%m%dT%H%M%S") + ".000000000Z"
        new = dest / name
        shutil.copytree(snaps[k % len(snaps)], new)
        start = when.strftime("%Y-%m-%dT%H:%M:%S") + ".000000000Z"
        end = when.strftime("%Y-%m-%dT%H:%M:%S") + ".050000000Z"
        meta = (new / "meta.txt").read_text()
        meta = re.sub(r"^start=.*$", f"start={start}", meta, flags=re.M)
        meta = re.sub(r"^end=.*$", f"end={end}", meta, flags=re.M)
        (new / "meta.txt").write_text(meta)
    return dest
