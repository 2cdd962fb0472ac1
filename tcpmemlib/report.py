"""Build the HTML reports: run each notebook with papermill, convert it with nbconvert, write an index.

``build_report(capture, before=None, out_dir="reports")`` runs the four teaching notebooks (the
checkout's ``notebooks/*.ipynb``, or the copies an installed package carries: ``tcpmemlib.resources``)
against a capture, writes ``<name>.ipynb`` (executed) and ``<name>.html`` for each, and an
``index.html`` that links them with a paragraph built from the analyses' verdicts.

The kernel is the current interpreter: a kernelspec pointing at ``sys.executable`` is written into a
temporary ``JUPYTER_PATH`` entry for the duration of the run, so the report works from any venv
whether or not a kernelspec was ever installed, and never picks up another Python's kernel.

Notebooks hand their answers to the report through one output: :func:`emit_summary` displays a
``application/vnd.tcpmem.summary+json`` bundle in a cell tagged ``tcpmem-summary`` (removed from the
HTML). :func:`read_summary` reads it back from the executed notebook; the tests use it to check that
the numbers the notebook shows are the library's.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcpmemlib import resources
from tcpmemlib.html import esc

NOTEBOOKS: tuple[str, ...] = ("00_primer", "01_where", "02_per_process", "03_idle_or_traffic")
# The fleet notebook reads a dataset (``tcpmem ingest``), not a capture: only ``--fleet`` runs it.
FLEET_NOTEBOOK = "04_fleet"
SUMMARY_TAG = "tcpmem-summary"
SUMMARY_MIME = "application/vnd.tcpmem.summary+json"
KERNEL_NAME = "tcpmem-python"


@dataclass
class NotebookRun:
    """One notebook of a report: where it went and how it ended."""

    name: str
    ipynb: Path
    html: Path
    ok: bool
    seconds: float
    error: str | None = None
    summary: dict[str, Any] | None = None


@dataclass
class Report:
    """The result of :func:`build_report`."""

    out_dir: Path
    index: Path
    runs: list[NotebookRun] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.runs if not r.ok]


# --- used inside the notebooks -------------------------------------------------------------------


def resolve_input(path: str | os.PathLike[str] | None) -> str | None:
    """A notebook parameter path made absolute; relative paths are tried from the cwd, then from
    the notebook directory (the defaults are written relative to the notebook). Empty or None ->
    None. A path found nowhere is returned relative to the notebook directory (or the cwd)."""
    if path is None or str(path).strip() == "":
        return None
    p = Path(path).expanduser()
    if p.is_absolute():
        return str(p)
    try:
        bases = [Path.cwd(), resources.notebook_dir()]
    except resources.ResourceError:
        bases = [Path.cwd()]
    for base in bases:
        if (base / p).exists():
            return str((base / p).resolve())
    return str((bases[-1] / p).resolve())


def _verdict_dict(verdict: Any) -> dict[str, Any]:
    figures = getattr(verdict, "figures", {}) or {}
    return {
        "label": str(getattr(verdict, "label", "")),
        "text": str(getattr(verdict, "text", "")),
        "figures": {str(k): _jsonable(v) for k, v in figures.items()},
    }


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    try:
        import pandas as pd

        if value is pd.NA or (not isinstance(value, str | bytes) and pd.isna(value)):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def emit_summary(
    notebook: str,
    verdicts: Mapping[str, Any] | None = None,
    numbers: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Display the notebook's answers as one machine-readable output (call it in the last cell,
    tagged ``tcpmem-summary``). ``verdicts`` maps a short key (e.g. ``"where"``) to a Verdict;
    ``numbers`` maps names to the figures the notebook shows. Returns the bundle."""
    from IPython.display import display

    verdicts = dict(verdicts or {})
    bundle = {
        "notebook": notebook,
        "verdicts": {k: _verdict_dict(v) for k, v in verdicts.items()},
        "order": list(verdicts),  # nbformat sorts JSON keys; this keeps the notebook's order
        "numbers": {str(k): _jsonable(v) for k, v in (numbers or {}).items()},
    }
    display({SUMMARY_MIME: bundle}, raw=True)
    return bundle


def read_summary(nb: Any) -> dict[str, Any] | None:
    """The bundle :func:`emit_summary` displayed in an executed notebook (node or path), or None."""
    import nbformat

    if isinstance(nb, str | os.PathLike):
        nb = nbformat.read(os.fspath(nb), as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if SUMMARY_MIME in data:
                value = data[SUMMARY_MIME]
                return json.loads(value) if isinstance(value, str) else dict(value)
    return None


# --- running -------------------------------------------------------------------------------------


@contextlib.contextmanager
def current_python_kernel() -> Iterator[str]:
    """A kernelspec for ``sys.executable`` in a temporary JUPYTER_PATH entry; yields its name."""
    old = os.environ.get("JUPYTER_PATH")
    with tempfile.TemporaryDirectory(prefix="tcpmem-kernel-") as tmp:
        spec_dir = Path(tmp) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        spec = {
            "argv": [
                sys.executable,
                "-m",
                "ipykernel_launcher",
                "--log-level=CRITICAL",
                "-f",
                "{connection_file}",
            ],
            "display_name": f"Python ({sys.executable})",
            "language": "python",
            "env": {"MPLBACKEND": "module://matplotlib_inline.backend_inline"},
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        os.environ["JUPYTER_PATH"] = tmp if not old else tmp + os.pathsep + old
        try:
            yield KERNEL_NAME
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


def _error_text(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    evalue = getattr(exc, "evalue", None)
    if ename:
        text = f"{ename}: {evalue}" if evalue else str(ename)
        cell = getattr(exc, "exec_count", None)
        return f"{text} (cell [{cell}])" if cell is not None else text
    return f"{type(exc).__name__}: {exc}"


def run_notebook(
    source: Path,
    out_ipynb: Path,
    parameters: Mapping[str, Any],
    kernel_name: str,
    timeout_s: float = 900,
) -> str | None:
    """Execute ``source`` into ``out_ipynb`` (written even when a cell fails). Returns the error
    text, or None when every cell ran."""
    import papermill

    try:
        papermill.execute_notebook(
            str(source),
            str(out_ipynb),
            parameters=dict(parameters),
            kernel_name=kernel_name,
            language="python",
            cwd=str(source.parent),
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=False,
            execution_timeout=timeout_s,
        )
    except Exception as exc:  # papermill's own errors and kernel failures: reported per notebook
        return _error_text(exc)
    return None


def to_html(ipynb: Path, out_html: Path, title: str, with_code: bool = False) -> None:
    """Convert an executed notebook to a standalone HTML page (code hidden unless ``with_code``)."""
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    config = Config()
    config.TagRemovePreprocessor.enabled = True
    config.TagRemovePreprocessor.remove_cell_tags = {SUMMARY_TAG, "remove-cell"}
    exporter = HTMLExporter(
        config=config,
        exclude_input=not with_code,
        exclude_input_prompt=not with_code,
        exclude_output_prompt=not with_code,
    )
    nb = nbformat.read(str(ipynb), as_version=4)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    out_html.write_text(body, encoding="utf-8")


def _failure_page(title: str, error: str) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title></head>"
        f"<body><h1>{esc(title)}</h1><p style='color:#a40000'>This notebook could not be run: "
        f"<code>{esc(error)}</code></p></body></html>"
    )


# --- index ---------------------------------------------------------------------------------------

TITLES = {
    "00_primer": "Primer: how Linux accounts TCP socket memory",
    "01_where": "Q1: where is TCP buffer memory reported?",
    "02_per_process": "Q2: per process, and did tuning reduce it?",
    "03_idle_or_traffic": "Q3: held while idle, or growing with traffic?",
    FLEET_NOTEBOOK: "Fleet: which hosts, which processes, did the rollout help?",
}


QUESTIONS = {
    "00_primer": "Primer",
    "01_where": "Where is it reported?",
    "02_per_process": "Which process?",
    "03_idle_or_traffic": "Idle or traffic?",
    FLEET_NOTEBOOK: "Fleet",
}


def _first_sentence(text: str) -> str:
    head, sep, _ = text.partition(". ")
    return head + "." if sep else text


def _ordered_verdicts(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    verdicts = summary.get("verdicts", {})
    order = summary.get("order") or sorted(verdicts)
    return [verdicts[k] for k in order if k in verdicts]


def summary_paragraph(runs: Sequence[NotebookRun]) -> str:
    """The short answers, escaped HTML: one list item per question (each verdict's label and first
    sentence, in notebook order), then the full verdicts folded below."""
    short, full = [], []
    for run in runs:
        if run.summary is None:
            if not run.ok:
                short.append(
                    f"<strong>{esc(run.name)}</strong> failed ({esc(run.error or 'error')})."
                )
            continue
        verdicts = _ordered_verdicts(run.summary)
        if not verdicts:
            continue
        parts = [
            f"<strong>{esc(v.get('label', ''))}</strong>: {esc(_first_sentence(v.get('text', '')))}"
            for v in verdicts
        ]
        short.append(f"<em>{esc(QUESTIONS.get(run.name, run.name))}</em> " + " ".join(parts))
        full.extend(
            f"<li><strong>{esc(v.get('label', ''))}</strong>: {esc(v.get('text', ''))}</li>"
            for v in verdicts
        )
    if not short:
        return "<p>No verdicts were produced.</p>"
    details = f"<details><summary>Every verdict in full</summary><ul>{''.join(full)}</ul></details>"
    items = "".join(f"<li>{answer}</li>" for answer in short)
    return f"<ul class='answers'>{items}</ul>\n" + (details if full else "")


def write_index(
    out_dir: Path,
    runs: Sequence[NotebookRun],
    capture: str,
    before: str | None,
    what: str = "Capture",
) -> Path:
    """Write ``index.html`` linking every notebook's HTML, with the summary paragraph."""
    rows = []
    for run in runs:
        status = "ok" if run.ok else f"FAILED: {run.error or ''}"
        color = "#4e9a06" if run.ok else "#a40000"
        rows.append(
            f"<tr><td><a href='{esc(run.html.name)}'>{esc(TITLES.get(run.name, run.name))}</a></td>"
            f"<td style='color:{color}'>{esc(status)}</td><td>{run.seconds:.1f} s</td></tr>"
        )
    before_line = f"<br>Before: <code>{esc(before)}</code>" if before else ""
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>tcpmem report</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.45}}
td,th{{padding:0.2em 0.8em;text-align:left}}</style></head>
<body><h1>tcpmem: where does this box's TCP socket memory go?</h1>
<p>{esc(what)}: <code>{esc(capture)}</code>{before_line}</p>
<h2>The answers</h2>
{summary_paragraph(runs)}
<h2>The reports</h2>
<table><thead><tr><th>report</th><th>status</th><th>build time</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
</body></html>
"""
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def build_report(
    capture: str | os.PathLike[str],
    before: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = "reports",
    with_code: bool = False,
    notebook_dir: str | os.PathLike[str] | None = None,
    only: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> Report:
    """Run every notebook against ``capture`` (and ``before``), write HTML and ``index.html``.
    ``notebook_dir`` defaults to the shipped notebooks (``ResourceError`` when they are missing)."""
    nb_dir = Path(notebook_dir) if notebook_dir else resources.notebook_dir()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(p.stem for p in nb_dir.glob("*.ipynb") if p.stem != FLEET_NOTEBOOK)
    if only:
        names = [n for n in names if n in set(only)]
    capture_abs = str(Path(capture).resolve())
    before_abs = str(Path(before).resolve()) if before else ""
    params = {"capture": capture_abs, "before": before_abs}
    runs = _run_notebooks(nb_dir, names, out, params, with_code, log)
    index = write_index(out, runs, capture_abs, before_abs or None)
    log(f"index: {index}")
    return Report(out, index, runs)


def build_fleet_report(
    dataset: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] = "reports",
    with_code: bool = False,
    notebook_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
) -> Report:
    """Run the fleet notebook (``04_fleet``) on a dataset written by ``tcpmem ingest``; write its
    HTML and an ``index.html``."""
    nb_dir = Path(notebook_dir) if notebook_dir else resources.notebook_dir()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = [FLEET_NOTEBOOK] if (nb_dir / f"{FLEET_NOTEBOOK}.ipynb").is_file() else []
    dataset_abs = str(Path(dataset).resolve())
    runs = _run_notebooks(nb_dir, names, out, {"dataset": dataset_abs}, with_code, log)
    index = write_index(out, runs, dataset_abs, None, what="Fleet dataset")
    log(f"index: {index}")
    return Report(out, index, runs)


def _run_notebooks(
    nb_dir: Path,
    names: Sequence[str],
    out: Path,
    params: Mapping[str, Any],
    with_code: bool,
    log: Callable[[str], None],
) -> list[NotebookRun]:
    """Run each notebook of ``names`` with ``params``; an executed copy and HTML for each."""
    runs: list[NotebookRun] = []
    with current_python_kernel() as kernel:
        for i, name in enumerate(names, 1):
            title = TITLES.get(name, name)
            ipynb, html_path = out / f"{name}.ipynb", out / f"{name}.html"
            log(f"[{i}/{len(names)}] {name}: running")
            t0 = time.perf_counter()
            error = run_notebook(nb_dir / f"{name}.ipynb", ipynb, params, kernel)
            seconds = time.perf_counter() - t0
            summary = None
            if ipynb.exists():
                try:
                    summary = read_summary(ipynb)
                    to_html(ipynb, html_path, title, with_code)
                except Exception as exc:  # an unreadable notebook still gets a page
                    error = error or _error_text(exc)
                    html_path.write_text(_failure_page(title, error), encoding="utf-8")
            else:
                html_path.write_text(_failure_page(title, error or "no output"), encoding="utf-8")
            run = NotebookRun(name, ipynb, html_path, error is None, seconds, error, summary)
            runs.append(run)
            state = "ok" if run.ok else f"FAILED ({error})"
            log(f"[{i}/{len(names)}] {name}: {state} in {seconds:.1f} s -> {html_path}")
    return runs
