"""Packaging: the dependency list lives only in pyproject.toml (environment.yml installs from it), and
a wheel installed outside the checkout carries the notebooks and collect.sh and builds reports."""

from __future__ import annotations

import os
import re
import shutil
import site
import stat
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tcpmemlib.report import FLEET_NOTEBOOK

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample.tar.gz"
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


def _env_yml_lines() -> list[str]:
    text = (ROOT / "environment.yml").read_text()
    return [ln.split("#", 1)[0].strip() for ln in text.splitlines() if ln.split("#", 1)[0].strip()]


def test_environment_yml_installs_from_pyproject_only():
    lines = _env_yml_lines()
    deps = [ln[2:].strip() for ln in lines[lines.index("dependencies:") :] if ln.startswith("- ")]
    conda_pkgs = [d for d in deps if d not in ("pip:",) and not d.startswith("-e ")]
    names = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0] for d in conda_pkgs}
    # Only the interpreter and pip come from conda; every library comes from pyproject through pip.
    assert names == {"python", "pip"}, f"environment.yml lists packages of its own: {sorted(names)}"
    assert "-e .[dev]" in deps, "environment.yml must install the project itself (-e .[dev])"


def test_python_version_agrees():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requires = pyproject["project"]["requires-python"]
    env_python = next(d for d in _env_yml_lines() if d.startswith("- python"))
    assert requires.replace(" ", "") in env_python.replace(" ", ""), (requires, env_python)


def test_every_dependency_is_explained_in_readme():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    readme = (ROOT / "README.md").read_text()
    for dep in pyproject["project"]["dependencies"]:
        name = re.split(r"[<>=!~ \[]", dep, maxsplit=1)[0]
        assert f"`{name}`" in readme, f"README.md does not say why {name} is a dependency"


def test_every_public_name_resolves():
    import tcpmemlib

    for name in tcpmemlib._EXPORTS:
        assert getattr(tcpmemlib, name) is not None, name
    assert set(dir(tcpmemlib)) >= set(tcpmemlib._EXPORTS)


def test_readme_gives_exactly_the_two_fresh_machine_commands():
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]
    commands = [ln.split("#", 1)[0].strip() for ln in first_block.splitlines() if ln.strip()]
    assert commands == ["make report", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


# --- a wheel, installed into a fresh venv outside the checkout -----------------------------------


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The project's files (tracked and new, not ignored) copied out of the checkout, built into a
    wheel by pip, and installed with --no-deps into a new venv. The venv finds the dependencies
    through a .pth line naming this interpreter's site-packages (no network, no second copy)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    listed = _run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        timeout=60,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file() and not rel.startswith(("data/", "tests/", "bench/")):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    # Build isolation: pyproject needs setuptools>=77, which pip takes from the configured indexes.
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        cwd=tmp,
        timeout=600,
    )
    (wheel,) = (tmp / "dist").glob("tcpmem-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    py = venv / "bin" / "python"
    purelib = _run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], timeout=60
    ).stdout.strip()
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "tcpmem-test-deps.pth").write_text("\n".join(deps) + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        timeout=300,
    )
    work = tmp / "work"  # the user's directory: outside the checkout
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("JUPYTER")}
    env["JUPYTER_DATA_DIR"] = str(tmp / "empty-jupyter")
    # pip would install nbconvert's templates into a prefix that installs nbconvert; this venv
    # borrows nbconvert through the .pth line, so its templates are offered through JUPYTER_PATH.
    offered = tmp / "jupyter-path"
    offered.mkdir()
    (offered / "nbconvert").symlink_to(Path(sys.prefix) / "share" / "jupyter" / "nbconvert")
    env["JUPYTER_PATH"] = str(offered)
    return wheel, venv, work, env


def test_wheel_carries_the_notebooks_and_collect_sh(installed):
    wheel, _, _, _ = installed
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert zf.read("tcpmemlib/share/collect.sh") == (ROOT / "collect.sh").read_bytes()
        mode = zf.getinfo("tcpmemlib/share/collect.sh").external_attr >> 16
        assert stat.S_IMODE(mode) == 0o755
        for nb in NOTEBOOKS:
            name = f"tcpmemlib/share/notebooks/{nb}"
            assert zf.read(name) == (ROOT / "notebooks" / nb).read_bytes(), name
    assert len(NOTEBOOKS) == 5  # the four capture notebooks and 04_fleet
    assert not any(n.startswith(("notebooks/", "collect.sh")) for n in names)


def test_installed_package_is_imported_from_the_venv(installed):
    _, venv, work, env = installed
    proc = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import tcpmemlib.resources as r; print(r.checkout_dir()); print(r.notebook_dir())",
        ],
        cwd=work,
        env=env,
        timeout=60,
    )
    checkout, nb_dir = proc.stdout.split()
    assert checkout == "None"
    assert Path(nb_dir).is_relative_to(venv) and Path(nb_dir).name == "notebooks"


def test_installed_collector_writes_collect_sh(installed):
    _, venv, work, env = installed
    tcpmem = str(venv / "bin" / "tcpmem")
    _run([tcpmem, "collector", "-o", "collect.sh"], cwd=work, env=env, timeout=60)
    out = work / "collect.sh"
    assert out.read_bytes() == (ROOT / "collect.sh").read_bytes()
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    stdout = subprocess.run(
        [tcpmem, "collector"], cwd=work, env=env, capture_output=True, timeout=60, check=True
    ).stdout
    assert stdout == out.read_bytes()


@pytest.mark.slow
def test_installed_report_builds_every_page(installed):
    _, venv, work, env = installed
    capture = work / "sample.tar.gz"  # a copy: the load writes its cache beside the bundle
    shutil.copy2(SAMPLE, capture)
    proc = subprocess.run(
        [str(venv / "bin" / "tcpmem"), "report", capture.name, "-o", "reports"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reports = work / "reports"
    pages = [nb for nb in NOTEBOOKS if not nb.startswith(FLEET_NOTEBOOK)]  # (report --fleet)
    for nb in pages:
        page = reports / nb.replace(".ipynb", ".html")
        assert page.is_file() and page.stat().st_size > 10_000, page
    index = (reports / "index.html").read_text()
    for nb in pages:
        assert f"href='{nb.replace('.ipynb', '.html')}'" in index
    assert "FAILED" not in index


# --- the repository stands alone ------------------------------------------------------------------


def test_kernel_doc_citations_resolve():
    """docs/kernel.md's sections are numbered 1..N in order, and every "docs/kernel.md §N" (also
    "§N and §M", "§N, §M") in a tracked file names one of them."""
    doc = (ROOT / "docs" / "kernel.md").read_text(encoding="utf-8")
    numbers = [int(n) for n in re.findall(r"^## (\d+)\. \S", doc, flags=re.M)]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "grep", "-I", "-h", "-o", r"kernel\.md §[0-9][0-9§, and]*"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    cited = {int(n) for n in re.findall(r"§(\d+)", listed)}
    assert cited <= set(numbers), sorted(cited - set(numbers))
