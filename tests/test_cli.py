"""The ``tcpmem`` command outside ``report`` (tests/test_report_cli.py has that): ``tcpmem collector``,
and the message of an install that lost its shipped files. Run as users run it, in a subprocess."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLLECT_SH = ROOT / "collect.sh"


def _tcpmem(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "tcpmemlib", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )


def _one_error_line(proc, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tcpmem: error: "), lines
    for word in words:
        assert word in lines[0], (word, lines[0])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("args", [[], ["-o", "-"]])
def test_collector_to_stdout_is_collect_sh(tmp_path, args):
    proc = _tcpmem("collector", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == COLLECT_SH.read_bytes()
    assert proc.stderr == b""
    assert list(tmp_path.iterdir()) == []


def test_collector_to_file_is_executable_and_runs(tmp_path):
    proc = _tcpmem("collector", "-o", "collect.sh", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "collect.sh"
    assert out.read_bytes() == COLLECT_SH.read_bytes()
    assert _mode(out) == 0o755
    assert b"wrote collect.sh" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["collect.sh"]  # no temporary file left
    # The written file is the collector: its own help runs under sh.
    run = subprocess.run([str(out), "-h"], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0 and "USAGE" in run.stdout + run.stderr


def test_collector_into_a_directory(tmp_path):
    (tmp_path / "box").mkdir()
    proc = _tcpmem("collector", "-o", "box", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "box" / "collect.sh").read_bytes() == COLLECT_SH.read_bytes()
    assert _mode(tmp_path / "box" / "collect.sh") == 0o755


def test_collector_keeps_an_existing_file_unless_forced(tmp_path):
    out = tmp_path / "collect.sh"
    out.write_text("mine\n")
    out.chmod(0o600)
    proc = _tcpmem("collector", "-o", str(out), cwd=tmp_path)
    _one_error_line(proc, str(out), "--force")
    assert out.read_text() == "mine\n" and _mode(out) == 0o600
    proc = _tcpmem("collector", "-o", str(out), "--force", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == COLLECT_SH.read_bytes() and _mode(out) == 0o755


def test_collector_never_writes_through_a_symlink(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    link = tmp_path / "collect.sh"
    link.symlink_to(victim)
    _one_error_line(_tcpmem("collector", "-o", str(link), cwd=tmp_path), "exists")
    dangling = tmp_path / "dangling.sh"
    dangling.symlink_to(tmp_path / "nowhere")
    _one_error_line(_tcpmem("collector", "-o", str(dangling), cwd=tmp_path), "exists")
    assert not (tmp_path / "nowhere").exists()
    # --force replaces the link itself; the file it pointed to is untouched.
    assert _tcpmem("collector", "-o", str(link), "--force", cwd=tmp_path).returncode == 0
    assert not link.is_symlink() and link.read_bytes() == COLLECT_SH.read_bytes()
    assert victim.read_text() == "keep\n"


@pytest.mark.parametrize("out", ["missing/collect.sh", "missing/"])
def test_collector_missing_directory_is_one_line_exit_2(tmp_path, out):
    _one_error_line(_tcpmem("collector", "-o", out, cwd=tmp_path), "no such directory", "missing")
    assert list(tmp_path.iterdir()) == []


def test_collector_onto_a_directory_is_refused(tmp_path):
    (tmp_path / "d" / "collect.sh").mkdir(parents=True)
    _one_error_line(_tcpmem("collector", "-o", "d", "--force", cwd=tmp_path), "is a directory")
    assert (tmp_path / "d" / "collect.sh").is_dir()


def test_collector_unwritable_directory_is_one_line_exit_2(tmp_path):
    # /proc takes no new files, even from root.
    _one_error_line(_tcpmem("collector", "-o", "/proc/collect.sh", cwd=tmp_path), "cannot write")


def test_installed_package_without_its_files_says_so(tmp_path):
    """A package directory outside a checkout, without tcpmemlib/share/: one error line, exit 2."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copytree(
        ROOT / "tcpmemlib",
        site / "tcpmemlib",
        ignore=shutil.ignore_patterns("__pycache__", "share"),
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = _tcpmem("collector", cwd=tmp_path, env=env)
    _one_error_line(proc, "collect.sh not found", str(site / "tcpmemlib" / "share"))
    sample = ROOT / "data" / "sample.tar.gz"
    proc = _tcpmem("report", str(sample), "-o", "out", cwd=tmp_path, env=env)
    _one_error_line(proc, "no report notebooks", "broken install")
    assert not (tmp_path / "out").exists()


# --- tcpmem ingest / tcpmem report --fleet (issue 13)
DATA = Path(__file__).resolve().parent.parent / "data"


def test_ingest_then_fleet_report(tmp_path):
    bundle = tmp_path / "sample-before.tar.gz"
    shutil.copy(DATA / "sample-before.tar.gz", bundle)
    ds = tmp_path / "ds"
    first = _tcpmem(
        "ingest", str(bundle), str(tmp_path / "missing"), "--into", str(ds), cwd=tmp_path
    )
    assert first.returncode == 1, first.stderr  # one capture failed: listed, the other ingested
    out = first.stdout.decode()
    assert "added" in out and "failed" in out and "no such file" in out
    again = _tcpmem("ingest", str(bundle), "--into", str(ds), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "1 unchanged" in again.stdout.decode()
    rep = _tcpmem("report", "--fleet", str(ds), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    page = (tmp_path / "out" / "04_fleet.html").read_text()
    assert "peaked highest" in page and "GiB" in page
    assert "04_fleet.html" in (tmp_path / "out" / "index.html").read_text()


def test_fleet_report_of_a_non_dataset_is_one_line_exit_2(tmp_path):
    proc = _tcpmem("report", "--fleet", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    _one_error_line(proc, "not a fleet dataset")
    proc = _tcpmem("report", "--fleet", str(tmp_path), str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2


def test_ingest_into_a_damaged_dataset_is_one_line_exit_2(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "_catalog.parquet").write_bytes(b"PAR1 not parquet")
    proc = _tcpmem("ingest", str(DATA / "sample-before.tar.gz"), "--into", str(ds), cwd=tmp_path)
    _one_error_line(proc, "not a readable catalog")


def test_ingest_on_a_local_dask_cluster(tmp_path):
    for name in ("sample-before.tar.gz", "sample-tuned.tar.gz"):
        shutil.copy(DATA / name, tmp_path / name)
    ds = tmp_path / "ds"
    proc = _tcpmem("ingest", str(tmp_path), "--into", str(ds), "--dask", "local:2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 added" in proc.stdout.decode()
    assert len(list(ds.glob("sockets/host=vm/date=2026-11-25/*.parquet"))) == 2
