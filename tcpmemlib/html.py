"""HTML helpers for notebooks and reports: everything that came from a capture is escaped here.

Process names, cgroup paths, hostnames and command lines are written by whoever controls the box, so
they may be hostile (``<img src=x onerror=...>``). Notebooks never build HTML or Markdown from capture
strings themselves: they call :func:`show_verdict` and :func:`show_table`, which escape every value.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd


def esc(value: object) -> str:
    """``value`` as text, HTML-escaped (quotes included), ready to put between tags or in attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt_number(value: object) -> str:
    """A figure for prose: bytes-sized numbers in MiB/KiB are left to the caller; this adds separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _human_bytes(value: float) -> str:
    v, sign = abs(value), "-" if value < 0 else ""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if v >= size:
            return f"{sign}{v / size:,.1f} {unit}"
    return f"{sign}{v:,.0f} B"


def fmt_figure(name: str, value: object) -> str:
    """A verdict figure for display: bytes (``*_bytes*`` names) in human units with the exact
    count beside them, rates (``*_per_s``) in units per second, anything else as
    :func:`fmt_number`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return fmt_number(value)
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if "bytes" in name and name.endswith("_per_s"):
        return _human_bytes(float(value)) + "/s"
    if "bytes" in name and abs(float(value)) >= 1024:
        return f"{_human_bytes(float(value))} ({fmt_number(value)} B)"
    return fmt_number(value)


def verdict_html(verdict: Any, title: str | None = None) -> str:
    """A ``Verdict(label, text, figures)`` as an escaped HTML block (label, sentence, figures table)."""
    label = getattr(verdict, "label", "")
    text = getattr(verdict, "text", "")
    figures: Mapping[str, object] = getattr(verdict, "figures", {}) or {}
    parts = [
        '<div class="tcpmem-verdict" style="border-left:4px solid #3465a4;padding:0.4em 1em;">'
    ]
    if title:
        parts.append(f"<h4 style='margin:0.2em 0'>{esc(title)}</h4>")
    parts.append(f"<p><strong>{esc(label)}</strong>: {esc(text)}</p>")
    if figures:
        parts.append(
            "<details><summary>The figures this verdict quotes</summary>"
            "<table><thead><tr><th>figure</th><th>value</th></tr></thead><tbody>"
        )
        for key, val in figures.items():
            parts.append(f"<tr><td>{esc(key)}</td><td>{esc(fmt_figure(key, val))}</td></tr>")
        parts.append("</tbody></table></details>")
    parts.append("</div>")
    return "".join(parts)


def _cell(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "NA"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        v = float(value)
        if v.is_integer() and abs(v) < 1e18:
            return f"{int(v):,}"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return str(value)


#: Columns that hold identifiers, shown without thousands separators.
ID_COLUMNS = frozenset({"pid", "ppid", "uid", "sock_id", "fd", "inode", "local_port", "peer_port"})


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy for display: numbers with thousands separators and at most 3 significant decimals
    (identifiers such as ``pid`` as plain integers), NA as ``NA``."""
    out = frame.copy()
    for col in out.columns:
        series = out[col]
        if col in ID_COLUMNS and pd.api.types.is_numeric_dtype(series.dtype):
            out[col] = [
                "NA" if pd.isna(v) else str(int(v)) for v in series.astype("Float64").tolist()
            ]
        elif pd.api.types.is_bool_dtype(series.dtype):
            out[col] = series.astype("string").fillna("NA")
        elif pd.api.types.is_numeric_dtype(series.dtype):
            out[col] = [_cell(v.item() if hasattr(v, "item") else v) for v in series.tolist()]
        elif pd.api.types.is_string_dtype(series.dtype) or series.dtype == object:
            out[col] = ["NA" if v is None or v is pd.NA else v for v in series.tolist()]
    return out


#: Wraps every table: a wide table scrolls sideways inside the page instead of being cut off at
#: the page edge (its first column stays readable at 1280 px), and long text cells wrap.
TABLE_WRAPPER = (
    '<div class="tcpmem-table" style="overflow-x:auto;max-width:100%;'
    'border-left:1px solid #eee">{}</div>'
)
# (specific enough to win over JupyterLab's ":not(.jp-RenderedMarkdown).jp-RenderedHTMLCommon td",
# which right-aligns every cell in nbconvert's pages)
TABLE_STYLE = (
    "<style>div.tcpmem-table table.dataframe{border-collapse:collapse;font-size:0.9em}"
    "div.tcpmem-table table.dataframe td,div.tcpmem-table table.dataframe th{padding:0.15em 0.6em;"
    "max-width:40em;white-space:normal;text-align:left;vertical-align:top}"
    "div.tcpmem-table table.dataframe td:first-child{white-space:nowrap}"
    "div.tcpmem-table table.dataframe td.num,div.tcpmem-table table.dataframe th.num"
    "{text-align:right}</style>"
)


def _align_numbers(table: str, frame: pd.DataFrame, index: bool) -> str:
    """Right-align the cells of ``frame``'s numeric columns in pandas' HTML ``table`` (class
    ``num``), text stays left-aligned."""
    numeric = [
        pd.api.types.is_numeric_dtype(frame[c].dtype) and not pd.api.types.is_bool_dtype(frame[c])
        for c in frame.columns
    ]
    if index:
        numeric = [False, *numeric]
    rows = table.split("<tr")
    for i, row in enumerate(rows[1:], 1):
        cells = row.split("<t")
        k = -1
        for j, cell in enumerate(cells[1:], 1):
            if cell.startswith(("d", "h")) and cell[1:2] in (">", " "):
                k += 1
                if k < len(numeric) and numeric[k]:
                    cells[j] = cell[0] + ' class="num"' + cell[1:]
        rows[i] = "<t".join(cells)
    return "<tr".join(rows)


def table_html(frame: pd.DataFrame, max_rows: int = 30, index: bool = False) -> str:
    """``frame`` as an HTML table, numbers made readable, every cell escaped (pandas escapes by
    default; we insist), in a box that scrolls sideways when the table is wider than the page.
    Rows past ``max_rows`` are left out, and a note says how many (sort the frame by what the
    page is about first, so what is left out is the least of it)."""
    shown = readable(frame.head(max_rows))
    table = shown.to_html(escape=True, index=index, border=0, na_rep="NA")
    out = TABLE_STYLE + TABLE_WRAPPER.format(_align_numbers(table, frame, index))
    if len(frame) > max_rows:
        out += f"<p><em>{len(frame) - max_rows:,} more rows not shown.</em></p>"
    return out


def show_verdict(verdict: Any, title: str | None = None) -> None:
    """Display a verdict in a notebook (escaped HTML; plain text for terminals)."""
    from IPython.display import HTML, display

    display(HTML(verdict_html(verdict, title)))


def show_text(text: str) -> None:
    """Display a sentence computed from a capture as an escaped paragraph (it wraps, unlike
    ``print``)."""
    from IPython.display import HTML, display

    display(HTML(f"<p>{esc(text)}</p>"))


def show_table(frame: pd.DataFrame, max_rows: int = 30, index: bool = False) -> None:
    """Display a frame in a notebook as an escaped HTML table."""
    from IPython.display import HTML, display

    display(HTML(table_html(frame, max_rows=max_rows, index=index)))
