"""html.py: every capture string escaped; wide tables scroll inside the page instead of being cut
off; numbers right-aligned, text left-aligned; verdict figures in human units."""

from __future__ import annotations

import pandas as pd

from tcpmemlib.analysis.verdict import Verdict
from tcpmemlib.html import fmt_figure, table_html, verdict_html

HOSTILE = "<img src=x onerror=alert(1)>"


def test_tables_escape_scroll_and_align() -> None:
    frame = pd.DataFrame(
        {"comm": [HOSTILE, "nginx"], "connections": pd.array([504, 496], dtype="Int64")}
    )
    out = table_html(frame)
    assert HOSTILE not in out and "&lt;img src=x onerror=alert(1)&gt;" in out
    assert '<div class="tcpmem-table" style="overflow-x:auto' in out
    assert '<th class="num">connections</th>' in out and '<td class="num">504</td>' in out
    assert "<th>comm</th>" in out  # text stays left-aligned
    # beats JupyterLab's right-aligning rule (specificity 0,2,1) in nbconvert pages
    assert "div.tcpmem-table table.dataframe td,div.tcpmem-table table.dataframe th{" in out


def test_cut_tables_say_how_many_rows_are_left_out() -> None:
    out = table_html(pd.DataFrame({"n": range(40)}), max_rows=30)
    assert "10 more rows not shown." in out


def test_verdict_figures_in_human_units_folded() -> None:
    v = Verdict(
        "moved into the application",
        f"{HOSTILE} rose",
        {"kernel_socket_bytes_before": 820813824.0, "traffic_bytes_per_s": 5 * 2**20, "n": 2.0},
    )
    out = verdict_html(v)
    assert HOSTILE not in out
    assert "<details>" in out
    assert "782.8 MiB (820,813,824 B)" in out and "5.0 MiB/s" in out
    assert fmt_figure("corr_buffer_queued", 0.55) == "0.55"
    assert fmt_figure("x_bytes", float("nan")) == "n/a"
