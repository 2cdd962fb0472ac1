"""tcpmemlib.registry: one table of snapshot file kinds that every pass of the load reads."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pandas as pd
import pytest

from tcpmemlib import registry, schema
from tcpmemlib.capture import load_capture
from tcpmemlib.parsers import sockstat

DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"


def test_every_kind_feeds_a_known_frame_and_every_frame_is_a_capture_frame():
    for kind in registry.FILES:
        assert kind.frame in registry.FRAME_KINDS, kind
    assert set(registry.FRAME_KINDS) - {"ps_args"} <= set(schema.FRAMES)


def test_every_file_kind_is_in_the_documented_layout():
    layout = DESIGN.read_text().split("## 2.")[0]
    names = {k.file for k in registry.FILES} | set(registry.SOCKET_FILES) | {registry.META_FILE}
    missing = [n for n in names if not re.search(re.escape(n.removesuffix(".txt")), layout)]
    assert missing == []


def test_a_new_kind_is_one_entry(small: Path, monkeypatch: pytest.MonkeyPatch):
    """A file the registry lists is read, checked and parsed like every other: here a copy of
    sockstat.txt under a new name feeding the sockstat frame's after-read columns."""
    for snap in (p for p in small.iterdir() if not p.name.startswith(".")):
        (snap / "sockstat_extra.txt").write_text("TCP: inuse 7 orphan 0 tw 0 alloc 9 mem 1234\n")
    extra = registry.FileKind(
        "sockstat_extra.txt",
        "sockstat",
        lambda text, path, earlier: sockstat.after_records(text, path),
        expected=False,
    )
    monkeypatch.setattr(registry, "FILES", (*registry.FILES, extra))
    monkeypatch.setattr("tcpmemlib.chunks.FILES", registry.FILES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cap = load_capture(small, cache=False, workers=1)
    assert list(cap.sockstat["tcp_mem_after_pages"]) == [1234, 1234]
    assert (cap.sockstat["tcp_mem_after_bytes"] == 1234 * cap.page_size_bytes).all()
    assert pd.notna(cap.sockstat["tcp_mem_pages"]).all()
