"""plots.py: every plot draws from the analysis frames without warnings, labels from the box are
drawn as escaped plain text (no math mode, no missing glyphs), and the lines drawn together are
told apart."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from analysis_helpers import HOSTILE, T0, T1, load, write_snapshot

import tcpmemlib as tm
from tcpmemlib import plots, views

ODD_NAMES = ("esc\x1b[31m", "nul\x00", "tab\tname", "名前", "emoji\U0001f600", "$x^2$", HOSTILE)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("synth")
    write_snapshot(root, T0, backlog=False)
    write_snapshot(root, T1, backlog=True)
    (root / "phases.tsv").write_text(
        "2026-11-25T09:59:59.000000000Z\tidle\n2026-11-25T10:00:09.000000000Z\tbacklog\n"
    )
    return load(root)


@pytest.mark.parametrize("name", ODD_NAMES)
def test_plain_escapes_what_the_font_or_mathtext_cannot_draw(name: str) -> None:
    text = plots.plain(name)
    assert all(c.isprintable() and ord(c) < plots.FONT_SAFE_BELOW for c in text)
    assert "$" not in text.replace(r"\$", "")


def test_odd_process_names_draw_without_glyph_warnings() -> None:
    rows = pd.DataFrame(
        {
            "comm": list(ODD_NAMES),
            "pid": pd.array(range(1, len(ODD_NAMES) + 1), dtype="Int64"),
            "buffer_bytes": pd.array([1 << 20] * len(ODD_NAMES), dtype="Int64"),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph 27 missing from font(s)" is a UserWarning
        ax = plots.top_bar(rows, "buffer_bytes", n=len(ODD_NAMES))
        ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert any("\\x1b" in t for t in labels) and any("\\u540d" in t for t in labels)
    plt.close("all")


def test_every_plot_draws_the_synthetic_capture_without_warnings(synth) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        where = tm.where_is_it(synth)
        procs = tm.by_process(synth)
        drawn = [
            plots.where_over_time(views.with_holder_rss(where.by_snapshot, procs)),
            plots.reconcile_plot(tm.reconcile(synth).by_snapshot),
            plots.buffer_vs_connections(tm.growth(synth).by_snapshot),
            plots.pressure_plot(tm.pressure(synth).by_snapshot),
            plots.per_socket_bars(tm.idle_cost(synth).by_object),
            plots.compare_bars(
                tm.compare(synth.select(phase="idle"), synth.select(phase="backlog")).system
            ),
            plots.top_sockets_bar(views.held_sockets(synth)),
            plots.limits_vs_use(views.socket_totals(synth)),
            plots.queue_vs_truesize(views.socket_totals(synth)),
            *plots.growth_over_time(tm.growth(synth).by_snapshot),
        ]
        for ax in drawn:
            ax.figure.canvas.draw()
            assert ax.get_xlabel() or ax.get_ylabel()
    plt.close("all")


def test_lines_drawn_together_have_distinct_colours(synth) -> None:
    """The socket-buffer line and the RSS line were two near-identical oranges (issue 11.7)."""
    where = tm.where_is_it(synth)
    ax = plots.where_over_time(views.with_holder_rss(where.by_snapshot, tm.by_process(synth)))
    colours = [
        mcolors.to_rgb(line.get_color()) for line in ax.get_lines() if line.get_label()[0] != "_"
    ]
    for i, a in enumerate(colours):
        for b in colours[i + 1 :]:
            assert sum(abs(x - y) for x, y in zip(a, b, strict=True)) > 0.3, (a, b)
    plt.close("all")
