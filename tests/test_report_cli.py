"""The report pipeline itself (CLI, papermill, nbconvert, index), on small notebooks made here.

The real notebooks on real captures are tested in tests/test_notebooks.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tcpmemlib.report import SUMMARY_MIME, SUMMARY_TAG, read_summary

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample.tar.gz"  # a real capture: the CLI reads it before the notebooks
HOSTILE = "<img src=x onerror=alert(1)>"

pytestmark = pytest.mark.slow


def _notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'capture: str = "../data/sample.tar.gz"  # capture\nbefore: str = ""  # before capture'
    )
    params.metadata["tags"] = ["parameters"]
    summary = nbformat.v4.new_code_cell(
        "from tcpmemlib.report import emit_summary\n"
        f"emit_summary('x', numbers={{'capture': capture, 'exe': sys.executable, 'name': {HOSTILE!r}}})"
    )
    summary.metadata["tags"] = [SUMMARY_TAG]
    nb.cells = [params, nbformat.v4.new_code_cell(body), summary]
    nbformat.write(nb, str(path))


def _run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "tcpmemlib", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One CLI run over an ok notebook (with a figure and hostile text) and a failing one."""
    tmp = tmp_path_factory.mktemp("report")
    nbs = tmp / "nbs"
    nbs.mkdir()
    _notebook(
        nbs / "a_ok.ipynb",
        "import sys\nimport matplotlib.pyplot as plt\nfig, ax = plt.subplots()\n"
        f"ax.plot([1, 2])\nprint({HOSTILE!r})",
    )
    _notebook(nbs / "b_fail.ipynb", f"import sys\nraise RuntimeError('boom ' + {HOSTILE!r})")
    capture = SAMPLE
    # A fresh environment: no JUPYTER_PATH, an empty Jupyter data dir (no kernelspec installed).
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env["JUPYTER_DATA_DIR"] = str(tmp / "empty-jupyter")
    env["MPLBACKEND"] = "Agg"  # the report must still get inline figures
    out = tmp / "out"
    proc = _run_cli(
        "report", str(capture), "--notebooks", str(nbs), "-o", str(out), cwd=tmp, env=env
    )
    return proc, out, capture


def test_failing_notebook_named_and_nonzero(built):
    proc, _, _ = built
    assert proc.returncode == 1, proc.stderr
    assert "b_fail" in proc.stderr.splitlines()[-1]
    assert "a_ok" not in proc.stderr.splitlines()[-1]
    assert "[2/2] b_fail: FAILED (RuntimeError" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_failed_notebook_html_shows_the_error(built):
    _, out, _ = built
    page = (out / "b_fail.html").read_text()
    assert "RuntimeError" in page
    assert "boom &lt;img src=x onerror=alert(1)&gt;" in page


def test_ok_notebook_has_figure_and_summary(built):
    _, out, capture = built
    nb = nbformat.read(str(out / "a_ok.ipynb"), as_version=4)
    pngs = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pngs) == 1
    summary = read_summary(out / "a_ok.ipynb")
    assert summary["numbers"]["capture"] == str(capture.resolve())
    assert summary["numbers"]["exe"] == sys.executable  # the kernel is this interpreter
    page = (out / "a_ok.html").read_text()
    assert "data:image/png" in page
    assert SUMMARY_MIME not in page  # the summary cell is removed from the HTML
    assert "import matplotlib" not in page  # code hidden by default


def test_nothing_from_the_notebooks_is_unescaped(built):
    _, out, _ = built
    for page in out.glob("*.html"):
        text = page.read_text()
        assert "<img src=x" not in text, page.name
        assert "onerror=alert(1)>" not in text, page.name


def test_index_links_every_report(built):
    _, out, _ = built
    index = (out / "index.html").read_text()
    assert "href='a_ok.html'" in index and "href='b_fail.html'" in index
    assert "FAILED" in index


def test_with_code_shows_code(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "c.ipynb", "import sys\nx_marker_variable = 41 + 1")
    proc = _run_cli(
        "report", str(SAMPLE), "--notebooks", str(nbs), "-o", "out", "--with-code", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "x_marker_variable" in (tmp_path / "out" / "c.html").read_text()
    assert json.loads(json.dumps(read_summary(tmp_path / "out" / "c.ipynb")))["notebook"] == "x"


@pytest.mark.parametrize("flag", [[], ["--before"]])
def test_missing_capture_is_one_line_exit_2(tmp_path, flag):
    args = ["report", str(tmp_path), *flag, str(tmp_path / "nope")] if flag else ["report", "nope"]
    proc = _run_cli(*args, "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not found" in lines[0] and "nope" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("what", ["directory", "file"])
def test_not_a_capture_is_one_line_exit_2(tmp_path, what):
    bogus = tmp_path / "bogus"
    if what == "directory":
        bogus.mkdir()
        (bogus / "notes.txt").write_text("not a snapshot")
    else:
        bogus.write_text("<img src=x> not a bundle")
    proc = _run_cli("report", str(bogus), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bogus) in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_output_path_that_is_a_file_is_exit_2(tmp_path):
    (tmp_path / "out").write_text("")
    proc = _run_cli("report", str(SAMPLE), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "not a directory" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_console_script_help():
    exe = Path(sys.executable).with_name("tcpmem")
    proc = subprocess.run(
        [str(exe), "report", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0
    assert "--before" in proc.stdout and "--with-code" in proc.stdout


def test_fresh_venv_without_kernelspec(tmp_path):
    """A venv that never had a kernelspec installed runs the notebooks with its own interpreter."""
    import site
    import venv

    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    # The project's installed packages, made visible to the fresh interpreter (no kernelspec files).
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "project.pth").write_text("\n".join([*deps, str(ROOT)]) + "\n")
    assert not list(env_dir.rglob("kernel.json"))
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "c.ipynb", "import sys")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env["JUPYTER_DATA_DIR"] = str(tmp_path / "empty-jupyter")
    # pip would install nbconvert's templates into the fresh prefix; the .pth trick does not, so
    # they (and only they: no kernelspec) are offered through JUPYTER_PATH.
    templates = Path(sys.prefix) / "share" / "jupyter" / "nbconvert"
    offered = tmp_path / "jupyter-path"
    offered.mkdir()
    (offered / "nbconvert").symlink_to(templates)
    env["JUPYTER_PATH"] = str(offered)
    proc = subprocess.run(
        [str(py), "-m", "tcpmemlib", "report", str(SAMPLE), "--notebooks", str(nbs), "-o", "out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_summary(tmp_path / "out" / "c.ipynb")["numbers"]["exe"] == str(py)
