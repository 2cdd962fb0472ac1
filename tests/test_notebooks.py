"""The four notebooks, run for real by ``tcpmem report`` on real captures.

- the bundled sample (``data/sample.tar.gz``, with phases); until it exists, a phased capture the lab
  makes here;
- a capture made here by the lab (LabRun, N=100, every server socket holding 64 KiB unread) with
  ``collect.sh -n 2``, no phases, and a hostile process name, hostname and cgroup path.

Each report is built once per module (papermill runs are slow) and shared by the asserts: no error
output, the expected figures, the numbers shown are the library's, and capture strings are escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

import tcpmemlib as tm
from tcpmemlib import views
from tcpmemlib.analysis.process import busiest_snapshot
from tcpmemlib.lab import LabRun
from tcpmemlib.report import NOTEBOOKS, read_summary

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample.tar.gz"
COLLECT = ROOT / "collect.sh"

HOSTILE_COMM = "<img src=x>"  # comm holds at most 15 bytes
HOSTILE_HOST = "<svg/onload=alert(1)>"  # no space: collect.sh splits `uname -nr` on blanks
HOSTILE_CGROUP = "<img src=z>"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# Minimum number of figures each notebook shows (every plot is one image/png output).
MIN_FIGURES = {"00_primer": 4, "01_where": 2, "02_per_process": 1, "03_idle_or_traffic": 3}

HELPER = textwrap.dedent(
    """
    import ctypes, socket, sys
    ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME
    lst = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(lst.getsockname())
    srv, _ = lst.accept()
    cli.sendall(b"x" * 65536)  # srv never reads: 64 KiB held in its receive queue
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def _collect(out: Path, *args: str, hostname: str | None = None) -> None:
    cmd = ["sh", str(COLLECT), "-o", str(out), *args]
    if hostname is not None:  # a UTS namespace of its own: the box's hostname is untouched
        script = 'printf %s "$1" > /proc/sys/kernel/hostname && shift && exec "$@"'
        cmd = ["unshare", "--uts", "sh", "-c", script, "sh", hostname, *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def _memory_hierarchy() -> Path:
    """Where collect.sh reads memory cgroups on this box: the v1 memory mount, else cgroup2."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    for line in mounts:
        _, where, fstype, opts, *_ = line.split()
        if fstype == "cgroup" and "memory" in opts.split(","):
            return Path(where)
    for line in mounts:
        _, where, fstype, *_ = line.split()
        if fstype == "cgroup2":
            return Path(where)
    raise RuntimeError("no memory cgroup hierarchy mounted")


def _tcpmem(
    *args: str, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m tcpmemlib ARGS``, output captured, never raising on a failure."""
    return subprocess.run(
        [sys.executable, "-m", "tcpmemlib", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


def _report(capture: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return _tcpmem("report", str(capture), "-o", str(out), timeout=200, cwd=out.parent)


def _phase(capture: Path, label: str) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with (capture / "phases.tsv").open("a") as f:
        f.write(f"{now}\t{label}\n")


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory):
    """The report on the bundled sample (or, until it exists, on a phased lab capture)."""
    tmp = tmp_path_factory.mktemp("sample")
    capture = SAMPLE
    if not SAMPLE.exists():
        capture = tmp / "phased"
        capture.mkdir()
        _phase(capture, "baseline")
        _collect(capture, "-n", "1")
        with LabRun(connections=100, timeout_s=60) as lab:
            for label, kwargs in (
                ("idle", {}),
                ("recv_backlog", {"bytes_per_conn": 65536}),
                ("send_backlog", {"max_bytes_per_conn": 256 << 10}),
                ("tuned", {"sndbuf": 65536, "rcvbuf": 65536, "max_bytes_per_conn": 256 << 10}),
            ):
                lab.scenario(label, **kwargs)
                _phase(capture, label)
                _collect(capture, "-n", "1")
    out = tmp / "reports"
    proc = _report(capture, out)
    return capture, out, proc


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    """The report on a lab capture with a hostile process name, hostname and cgroup path."""
    tmp = tmp_path_factory.mktemp("hostile")
    capture = tmp / "lab"
    cgroup = _memory_hierarchy() / HOSTILE_CGROUP
    # argv[0] is hostile too, so the command line (collect.sh -a) starts with it.
    helper = subprocess.Popen(
        [HOSTILE_COMM, "-c", HELPER, HOSTILE_COMM],
        executable=sys.executable,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert helper.stdout is not None and helper.stdout.readline().strip() == "ready"
        cgroup.mkdir(exist_ok=True)
        (cgroup / "cgroup.procs").write_text(str(helper.pid))
        with LabRun(connections=100, timeout_s=60) as lab:
            lab.scenario("recv_backlog", bytes_per_conn=65536)
            _collect(capture, "-a", "-n", "2", "-i", "1", hostname=HOSTILE_HOST)
            lab_pids = (lab.server_pid, lab.client_pid)
    finally:
        helper.stdin.close()  # type: ignore[union-attr]
        try:
            helper.wait(timeout=10)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait(timeout=10)
        if cgroup.exists():
            cgroup.rmdir()
    out = tmp / "reports"
    proc = _report(capture, out)
    return capture, out, proc, helper.pid, lab_pids


def _outputs(nb_path: Path):
    nb = nbformat.read(str(nb_path), as_version=4)
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _check_report(out: Path, proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in NOTEBOOKS:
        assert f"{name}: ok" in proc.stdout
        outputs = _outputs(out / f"{name}.ipynb")
        errors = [f"{o.ename}: {o.evalue}" for o in outputs if o.output_type == "error"]
        assert not errors, (name, errors)
        stderr = [o.text for o in outputs if o.get("name") == "stderr"]
        assert not stderr, (name, stderr)  # no warnings either
        pngs = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(pngs) >= MIN_FIGURES[name], (name, len(pngs))
        page = (out / f"{name}.html").read_text()
        assert page.count("data:image/png") >= MIN_FIGURES[name]
        assert read_summary(out / f"{name}.ipynb")["notebook"] == name
    index = (out / "index.html").read_text()
    for name in NOTEBOOKS:
        assert f"href='{name}.html'" in index


def _check_numbers(capture: Path, out: Path, phased: bool) -> None:
    """The figures the notebooks show are the library's."""
    cap = tm.load_capture(capture)
    s00, s01, s02, s03 = (read_summary(out / f"{n}.ipynb") for n in NOTEBOOKS)
    index = (out / "index.html").read_text()

    recv = views.example_socket(cap, "skmem_r")
    assert s00["numbers"]["example_recv_r_bytes"] == int(recv["skmem_r"])
    assert s00["numbers"]["example_recv_q_bytes"] == int(recv["recv_q"])

    where = tm.where_is_it(cap)
    bs = where.by_snapshot
    assert s01["numbers"]["peak_sockstat_tcp_mem_bytes"] == int(bs["sockstat_tcp_mem_bytes"].max())
    assert s01["numbers"]["snapshots"] == len(cap.meta)
    assert s01["verdicts"]["where"]["label"] == where.verdict.label
    assert s01["verdicts"]["where"]["text"] == where.verdict.text
    rec = tm.reconcile(cap)
    assert s01["verdicts"]["reconcile"]["text"] == rec.verdict.text
    page01 = (out / "01_where.html").read_text()
    assert html.escape(where.verdict.text, quote=False) in page01
    assert html.escape(where.verdict.text) in index

    procs = tm.by_process(cap)
    named = procs[procs["pid"].notna()]
    totals = named.groupby("ts")["buffer_bytes"].sum()
    moment, _ = busiest_snapshot(procs)
    peak_rows = procs[procs["ts"] == moment]
    top = peak_rows[peak_rows["pid"].notna()].sort_values("buffer_bytes").iloc[-1]
    assert s02["numbers"]["top_pid"] == int(top["pid"])
    assert s02["numbers"]["top_buffer_bytes"] == int(top["buffer_bytes"])
    assert int(top["buffer_bytes"]) <= int(totals.max())
    assert ("compare" in s02["verdicts"]) == phased

    growth = tm.growth(cap)
    idle = tm.idle_cost(cap)
    pressure = tm.pressure(cap)
    assert s03["verdicts"]["growth"]["label"] == growth.verdict.label
    assert s03["verdicts"]["growth"]["text"] == growth.verdict.text
    assert s03["verdicts"]["idle_cost"]["text"] == idle.verdict.text
    assert s03["verdicts"]["pressure"]["text"] == pressure.verdict.text
    assert s03["numbers"]["max_buffer_bytes"] == int(growth.by_snapshot["buffer_bytes"].max())
    assert (
        html.escape(growth.verdict.text, quote=False)
        in (out / "03_idle_or_traffic.html").read_text()
    )


def test_sample_report_runs_clean(sample_report):
    _, out, proc = sample_report
    _check_report(out, proc)


def test_sample_report_numbers_are_the_library_s(sample_report):
    capture, out, _ = sample_report
    _check_numbers(capture, out, phased=True)
    # The phased capture compares its own send_backlog and tuned phases.
    assert (out / "02_per_process.html").read_text().count("data:image/png") >= 2


def test_lab_report_runs_clean(hostile_report):
    _, out, proc, _, _ = hostile_report
    _check_report(out, proc)


def test_lab_report_numbers_are_the_library_s(hostile_report):
    capture, out, _, _, lab_pids = hostile_report
    _check_numbers(capture, out, phased=False)
    # The lab's server (100 x 64 KiB unread) is among the processes the report shows.
    assert any(f">{pid}<" in (out / "02_per_process.html").read_text() for pid in lab_pids)


def test_capture_strings_are_escaped(hostile_report):
    capture, out, _, helper_pid, _ = hostile_report
    cap = tm.load_capture(capture)
    # The capture really holds the hostile strings (else this test proves nothing).
    assert cap.host == HOSTILE_HOST
    assert HOSTILE_COMM in set(cap.owners["comm"].astype(str))
    assert f"/{HOSTILE_CGROUP}" in set(cap.proc_cgroups["cgroup"].astype(str))
    pages = {p.name: p.read_text() for p in out.glob("*.html")}
    for name, page in pages.items():
        for raw in ("<img src=x", "<svg/onload", "<img src=z", "alert(1)>"):
            assert raw not in page, (name, raw)
    assert html.escape(HOSTILE_HOST) in pages["00_primer.html"]  # shown, escaped
    page02 = pages["02_per_process.html"]
    assert html.escape(HOSTILE_COMM) in page02  # the helper is in the top-process table
    assert html.escape(f"/{HOSTILE_CGROUP}") in page02  # and its cgroup in the cgroup table
    assert str(helper_pid) in page02
    # collected with -a: the command lines (the helper's holds the hostile name too) are shown
    assert "<th>args</th>" in page02
    assert html.escape(f"{HOSTILE_COMM} -c") in page02
    assert HOSTILE_COMM in "".join(cap.processes["args"].dropna().astype(str))


def test_notebooks_are_committed_stripped_and_parameterized():
    for name in NOTEBOOKS:
        nb = nbformat.read(str(ROOT / "notebooks" / f"{name}.ipynb"), as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), name
        params = code[0]
        assert "parameters" in params.metadata.get("tags", []), name
        lines = [ln for ln in params.source.splitlines() if ln.strip()]
        assert all(": str = " in ln and "  # " in ln for ln in lines), (name, lines)
        assert '"../data/sample.tar.gz"' in params.source
        # Notebooks call tcpmemlib; they never parse text themselves.
        source = "\n".join(c.source for c in code)
        for banned in ("open(", "read_csv", ".split(", "import re", "subprocess"):
            assert banned not in source, (name, banned)


def test_default_parameter_resolves_from_any_cwd(tmp_path):
    from tcpmemlib.report import resolve_input

    here = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert resolve_input("../data/sample.tar.gz") == str(SAMPLE.resolve())
        os.chdir(ROOT / "notebooks")
        assert resolve_input("../data/sample.tar.gz") == str(SAMPLE.resolve())
    finally:
        os.chdir(here)
    assert resolve_input("") is None
    assert shutil.which("unshare")  # the hostile-hostname capture needs util-linux unshare


PAIR = (ROOT / "data" / "sample-before.tar.gz", ROOT / "data" / "sample-tuned.tar.gz")


def test_before_capture_is_compared(tmp_path):
    """``--before``: notebook 02 compares the bundled before/after pair (same send backlog, without
    and with SO_SNDBUF) with the library's compare(), and says the tuning reduced the memory."""
    before, after = PAIR
    out = tmp_path / "reports"
    args = [
        "report",
        str(after),
        "--before",
        str(before),
        "-o",
        str(out),
        "--only",
        "02_per_process",
    ]
    proc = _tcpmem(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = read_summary(out / "02_per_process.ipynb")
    expected = tm.compare(tm.load_capture(before), tm.load_capture(after)).verdict
    assert summary["verdicts"]["compare"]["label"] == expected.label == "reduced"
    assert summary["verdicts"]["compare"]["text"] == expected.text
    streams = [o.text for o in _outputs(out / "02_per_process.ipynb") if o.output_type == "stream"]
    assert any("comparing the before capture with this capture" in t for t in streams)
    assert html.escape(expected.text, quote=False) in (out / "02_per_process.html").read_text()


def test_damaged_capture_shows_its_problems(hostile_report, tmp_path):
    """A snapshot with a malformed file: the notebooks still run, and list the problem (escaped)
    instead of a warning on stderr."""
    capture = tmp_path / "damaged"
    shutil.copytree(hostile_report[0], capture, ignore=shutil.ignore_patterns(".tcpmem-cache"))
    snapshot = sorted(p for p in capture.iterdir() if p.name[0].isdigit())[0]
    (snapshot / "sockstat.txt").write_text("TCP: inuse 1 orphan <b>\n")
    out = tmp_path / "reports"
    args = ["report", str(capture), "-o", str(out), "--only", "00_primer", "--only", "01_where"]
    proc = _tcpmem(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("00_primer", "01_where"):
        outputs = _outputs(out / f"{name}.ipynb")
        assert not [o for o in outputs if o.get("name") == "stderr"], name
        assert any("1 problem(s) reading this capture" in o.get("text", "") for o in outputs)
        page = (out / f"{name}.html").read_text()
        assert "sockstat.txt" in page and "orphan &lt;b&gt;" in page
