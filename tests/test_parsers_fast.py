"""The small-file parsers' whole-text fast paths against the line-by-line parsers they replace.

ps, slabinfo, slab_aliases, zoneinfo, meminfo, protocols, netstat/snmp and sockstat read a
well-formed file in one pass over the whole text (``records_fast``, int64 arrays for integer
columns without NA) and leave any other text to the line-by-line parser (``records_by_line``);
every kind, sysctl and cgroups included, builds its frame column by column (``text.typed_frame``).
These tests hold the whole chain (``records`` of each file, the columns of several files joined with
``text.join_columns``, then ``frame``) to what the parsers of git revision ``32a3938`` (before the
fast paths; their sources in tests/fixtures/parsers-32a3938.tar.gz, exec'd into fresh modules) give for the same texts: the same frames (dtypes,
values, NA, categories, column order), the same warnings, or the same ``ParseError`` (path, line
number, line, reason). Texts: every small file of the captures under ``data/`` and
``tests/fixtures``, and the same texts damaged by hypothesis (cut, lines dropped, doubled or
swapped, garbage lines, numbers over 2^63, signs, underscores, tabs, ``\\r``, names with blanks,
quotes and non-ASCII, empty and header-only files).
"""

from __future__ import annotations

import gzip
import io
import sys
import tarfile
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

import tcpmemlib.parsers.numbers
import tcpmemlib.parsers.text
from tcpmemlib.errors import ParseError
from tcpmemlib.parsers import (
    cgroups,
    meminfo,
    netstat,
    protocols,
    ps,
    slab_aliases,
    slabinfo,
    sockstat,
    sysctl,
    zoneinfo,
)
from tcpmemlib.parsers.text import join_columns

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "32a3938"  # the last revision with only the line-by-line parsers
NAMES = [
    "cgroups",
    "meminfo",
    "netstat",
    "protocols",
    "ps",
    "slab_aliases",
    "slabinfo",
    "sockstat",
    "sysctl",
    "zoneinfo",
]
CURRENT = types.SimpleNamespace(
    cgroups=cgroups,
    meminfo=meminfo,
    netstat=netstat,
    protocols=protocols,
    ps=ps,
    slab_aliases=slab_aliases,
    slabinfo=slabinfo,
    sockstat=sockstat,
    sysctl=sysctl,
    zoneinfo=zoneinfo,
)


# The baseline's parser sources, as `git archive --format=tar.gz 32a3938 tcpmemlib/parsers/<name>.py
# ...` wrote them: the test needs no git history (a shallow clone has none).
BASELINE_SOURCES = ROOT / "tests" / "fixtures" / f"parsers-{BASELINE}.tar.gz"


def _baseline_source(path: str) -> str:
    with tarfile.open(BASELINE_SOURCES) as tar:
        member = tar.extractfile(path)
        assert member is not None, f"{path} is not in {BASELINE_SOURCES}"
        return member.read().decode()


def load_baseline() -> types.SimpleNamespace:
    """The parser modules of ``BASELINE``, each exec'd into a fresh module with that revision's
    ``numbers`` and ``text`` helpers (swapped into ``sys.modules`` only while they import)."""
    helpers: dict[str, types.ModuleType] = {}
    saved = {n: sys.modules[f"tcpmemlib.parsers.{n}"] for n in ("numbers", "text")}
    mods: dict[str, types.ModuleType] = {}
    try:
        for name in ["numbers", "text", *NAMES]:
            mod = types.ModuleType(f"baseline_{name}")
            src = _baseline_source(f"tcpmemlib/parsers/{name}.py")
            exec(compile(src, f"{BASELINE}:tcpmemlib/parsers/{name}.py", "exec"), mod.__dict__)
            if name in saved:
                helpers[name] = mod
                sys.modules[f"tcpmemlib.parsers.{name}"] = mod
            else:
                mods[name] = mod
    finally:
        sys.modules.update({f"tcpmemlib.parsers.{n}": m for n, m in saved.items()})
    return types.SimpleNamespace(**mods)


@dataclass(frozen=True)
class Kind:
    """One snapshot file kind: its module, how ``records`` is called and which frames it feeds."""

    module: str
    records: Callable[[Any, str, str], Any]
    frames: Callable[..., list[pd.DataFrame]]  # (modules, parts[, join]) -> frames


def _plain_frame(name: str) -> Kind:
    return Kind(
        name,
        lambda m, text, path: getattr(m, name).records(text, path),
        lambda m, parts, join=join_columns: [getattr(m, name).frame(join(parts))],
    )


def _netstat(file: str) -> Kind:
    return Kind(
        "netstat",
        lambda m, text, path: m.netstat.records(text, path, file),
        lambda m, parts, join=join_columns: [m.netstat.frame(join(parts))],
    )


# slab_aliases resolves against slabinfo names: the same names for both implementations
SLAB_NAMES = ["kmalloc-64", "TCP", "UDP", "eventpoll_epi", "tcp_bind_bucket", "a b"]

KINDS: dict[str, Kind] = {
    "ps.txt": _plain_frame("ps"),
    "slabinfo.txt": _plain_frame("slabinfo"),
    "slab_aliases.txt": Kind(
        "slab_aliases",
        lambda m, text, path: m.slab_aliases.records(text, path, SLAB_NAMES),
        lambda m, parts, join=join_columns: [m.slab_aliases.frame(join(parts))],
    ),
    "zoneinfo.txt": _plain_frame("zoneinfo"),
    "meminfo.txt": _plain_frame("meminfo"),
    "protocols.txt": _plain_frame("protocols"),
    "netstat.txt": _netstat("netstat"),
    "snmp.txt": _netstat("snmp"),
    "sockstat.txt": _plain_frame("sockstat"),
    "sockstat6.txt": _plain_frame("sockstat"),
    "sockstat_after.txt": Kind(
        "sockstat",
        lambda m, text, path: m.sockstat.after_records(text, path),
        lambda m, parts, join=join_columns: [m.sockstat.frame(join(parts))],
    ),
    "sysctl.txt": _plain_frame("sysctl"),
    "cgroups.txt": Kind(
        "cgroups",
        lambda m, text, path: m.cgroups.records(text, path),
        lambda m, parts, join=join_columns: [
            m.cgroups.frame(join([p[0] for p in parts])),
            m.cgroups.pids_frame(join([p[1] for p in parts])),
        ],
    ),
}


def _real_texts() -> dict[str, list[str]]:
    """Every small file of the captures under data/ and tests/fixtures, by kind."""
    out: dict[str, list[str]] = {k: [] for k in KINDS}

    def add(name: str, data: bytes) -> None:
        base = name[:-3] if name.endswith(".gz") else name
        if base in out:
            if name.endswith(".gz"):
                data = gzip.decompress(data)
            out[base].append(data.decode("utf-8", "backslashreplace"))

    for tar in sorted([*ROOT.glob("data/*.tar.gz"), *ROOT.glob("data/real/*.tar.gz")]):
        with tarfile.open(tar) as bundle:
            for member in bundle.getmembers():
                if member.isfile():
                    got = bundle.extractfile(member)
                    assert got is not None
                    add(member.name.rsplit("/", 1)[-1], got.read())
    for path in sorted((ROOT / "tests/fixtures").rglob("*")):
        if path.is_file() and not path.name.endswith((".json", ".md", ".sh")):
            add(path.name, path.read_bytes())
    for name in ("sockstat6.txt", "sockstat_after.txt"):  # few captures have them
        out[name] = out[name] or out["sockstat.txt"]
    return out


REAL = _real_texts()
OLD = load_baseline()


def outcome(mods: Any, kind: str, texts: list[str]) -> tuple[Any, ...]:
    """What the chain gives for ``texts`` as files of one chunk: frames, or the first error."""
    spec = KINDS[kind]
    parts = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i, text in enumerate(texts):
            try:
                parts.append(spec.records(mods, text, f"snap{i}/{kind}"))
            except ParseError as err:
                return ("ParseError", err.path, err.line_no, err.line, err.reason)
    said = [str(w.message) for w in caught]
    try:
        frames = spec.frames(mods, parts)
    except (ValueError, TypeError, OverflowError) as err:
        return ("frame error", type(err).__name__, said)
    return ("frames", frames, said)


def assert_same(got: tuple[Any, ...], want: tuple[Any, ...]) -> None:
    assert got[0] == want[0], (got, want)
    if got[0] != "frames":
        assert got == want
        return
    assert got[2] == want[2]  # the same warnings
    for new, old in zip(got[1], want[1], strict=True):
        assert list(new.columns) == list(old.columns)
        assert list(map(str, new.dtypes)) == list(map(str, old.dtypes))
        for column in new.columns:
            if isinstance(old[column].dtype, pd.CategoricalDtype):
                assert new[column].cat.categories.dtype == old[column].cat.categories.dtype
        assert_frame_equal(
            new,
            old,
            check_exact=True,
            check_index_type=True,
            check_column_type=True,
            check_categorical=True,
        )


def test_every_kind_has_real_texts():
    for kind, texts in REAL.items():
        assert texts, kind


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_real_texts_same_as_baseline(kind: str):
    texts = REAL[kind]
    for text in texts:  # each file alone
        assert_same(outcome(CURRENT, kind, [text]), outcome(OLD, kind, [text]))
    assert_same(outcome(CURRENT, kind, texts), outcome(OLD, kind, texts))  # all as one chunk
    assert_same(outcome(CURRENT, kind, []), outcome(OLD, kind, []))


def as_list(values: Any) -> list[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


FAST = {
    "ps.txt": ps,
    "slabinfo.txt": slabinfo,
    "slab_aliases.txt": slab_aliases,
    "zoneinfo.txt": zoneinfo,
    "meminfo.txt": meminfo,
    "protocols.txt": protocols,
    "sockstat.txt": sockstat,
    "netstat.txt": netstat,
    "snmp.txt": netstat,
}


@pytest.mark.parametrize("kind", sorted(FAST))
def test_fast_path_takes_every_real_text(kind: str):
    module = FAST[kind]
    for text in REAL[kind]:
        fast = module.records_fast(text)
        assert fast is not None, text[:300]
        slow = module.records_by_line(text, None)
        assert list(fast) == list(slow)
        for column, values in fast.items():
            assert as_list(values) == as_list(slow[column]), column
            if isinstance(values, np.ndarray):
                assert values.dtype == np.int64


# ---------------------------------------------------------------------------------------------
# damage

_ODD_CHARS = " \t\r\x0b\x0c\x1c\x85\xa0\u2028:#-+_=é'\"\\<>日"
odd_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(_ODD_CHARS),
        st.characters(codec="utf-8", exclude_characters="\x00\n"),
    ),
    max_size=30,
)
odd_token = st.one_of(
    st.sampled_from(
        [
            str(2**63),
            str(2**63 - 1),
            str(-(2**63)),
            str(-(2**63) - 1),
            str(2**64 + 5),
            "9" * 19,
            "9" * 18,
            "1" + "0" * 30,
            "-1",
            "-0",
            "+5",
            "1_000",
            "٣",
            "0x10",
            "",
            "x",
            "a b",
            "'q\"",
            "café",
            "caf\\xe9",
            "\t",
            "max",
            "kB",
            ":",
            "#",
            "PID",
            "protocol",
            "slabdata",
            "Node",
            "cpu",
            "count:",
        ]
    ),
    st.integers(min_value=-(2**65), max_value=2**65).map(str),
    odd_text,
)


@st.composite
def damaged(draw: st.DrawFn, kind: str) -> str:
    text = draw(st.sampled_from(REAL[kind]))
    for _ in range(draw(st.integers(1, 3))):
        lines = text.split("\n")
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        how = draw(
            st.sampled_from(
                [
                    "cut",
                    "drop",
                    "double",
                    "swap",
                    "insert",
                    "token",
                    "tabs",
                    "cr",
                    "empty",
                    "head",
                    "blank",
                ]
            )
        )
        if how == "cut":
            text = text[: draw(st.integers(0, len(text)))]
        elif how == "drop":
            del lines[i]
        elif how == "double":
            lines.insert(i, lines[i])
        elif how == "swap" and i + 1 < len(lines):
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        elif how == "insert":
            lines.insert(i, draw(odd_text))
        elif how == "token":
            tokens = lines[i].split(" ")
            j = draw(st.integers(0, max(0, len(tokens) - 1)))
            tokens[j] = draw(odd_token)
            lines[i] = " ".join(tokens)
        elif how == "tabs":
            lines[i] = lines[i].replace(" ", "\t")
        elif how == "cr":
            lines[i] += "\r"
        elif how == "empty":
            return ""
        elif how == "head":
            return lines[0] + draw(st.sampled_from(["", "\n"]))
        elif how == "blank":
            lines.insert(i, draw(st.sampled_from(["", " ", "\t", "  \t "])))
        if how != "cut":
            text = "\n".join(lines)
    return text


@pytest.mark.parametrize("kind", sorted(KINDS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_texts_same_as_baseline(kind: str, data: st.DataObject):
    text = data.draw(damaged(kind))
    good = REAL[kind][0]
    assert_same(outcome(CURRENT, kind, [text]), outcome(OLD, kind, [text]))
    # with a well-formed file before it in the chunk: a fast file's arrays joined with lists
    assert_same(outcome(CURRENT, kind, [good, text]), outcome(OLD, kind, [good, text]))


@pytest.mark.parametrize("kind", sorted(FAST))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_equals_line_path_where_it_answers(kind: str, data: st.DataObject):
    module = FAST[kind]
    text = data.draw(damaged(kind))
    fast = module.records_fast(text)
    if fast is None:
        return
    slow = module.records_by_line(text, None)
    assert list(fast) == list(slow)
    for column, values in fast.items():
        assert as_list(values) == as_list(slow[column]), column


def test_slabinfo_bytes_same_as_baseline():
    texts = REAL["slabinfo.txt"]
    new = join_columns([slabinfo.records(t) for t in texts])
    old = join_columns([OLD.slabinfo.records(t) for t in texts])
    sizes = pd.Series([4096, 65536] * (len(new["name"]) // 2) + [4096] * (len(new["name"]) % 2))
    for page_size in (4096, 16384, sizes):
        assert_frame_equal(
            slabinfo.frame(new, page_size), OLD.slabinfo.frame(old, page_size), check_exact=True
        )


def extend_lists(parts: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The chunk accumulator as it is before it knows arrays: each column's list extended."""
    out: dict[str, list[Any]] = {}
    for part in parts:
        for name, values in part.items():
            out.setdefault(name, []).extend(values)
    return out


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_list_extending_accumulator_gives_the_same_frames(kind: str):
    """An accumulator that extends lists with the int64 arrays (numpy scalars) still gives the
    frames ``join_columns`` gives: the parsers work before the accumulator is changed."""
    spec = KINDS[kind]
    parts = [spec.records(CURRENT, text, None) for text in REAL[kind]]
    for new, old in zip(
        spec.frames(CURRENT, parts), spec.frames(CURRENT, parts, extend_lists), strict=True
    ):
        assert_frame_equal(new, old, check_exact=True)


# ---------------------------------------------------------------------------------------------
# the shared helpers


def test_join_columns_keeps_int64_arrays_and_chains_the_rest():
    a = {"x": np.array([1, 2], dtype=np.int64), "s": ["a", "b"]}
    b = {"x": np.array([3], dtype=np.int64), "s": ["c"]}
    empty = {"x": [], "s": []}
    listed = {"x": [4, pd.NA], "s": [pd.NA, "e"]}
    joined = join_columns([a, empty, b])
    assert joined["x"].dtype == np.int64 and joined["x"].tolist() == [1, 2, 3]
    assert joined["s"] == ["a", "b", "c"]
    mixed = join_columns([a, listed, empty])
    assert mixed["x"] == [1, 2, 4, pd.NA]
    assert all(type(v) is int for v in mixed["x"][:3])
    assert mixed["s"] == ["a", "b", pd.NA, "e"]
    assert join_columns([]) == {}


def test_int64_array_and_digits_array_bounds():
    numbers = tcpmemlib.parsers.numbers
    assert numbers.int64_array([str(2**63 - 1), str(-(2**63))]).tolist() == [2**63 - 1, -(2**63)]
    for bad in ([str(2**63)], [str(-(2**63) - 1)], ["x"], [""]):
        with pytest.raises(ValueError):
            numbers.int64_array(bad)
    assert numbers.digits_array("1 -2\t03", 3).tolist() == [1, -2, 3]
    assert numbers.digits_array("", 0).dtype == np.int64
    for bad, count in (("1 2", 3), (str(2**63 - 1), 1), (str(-(2**63)), 1)):
        with pytest.raises(ValueError):
            numbers.digits_array(bad, count)
    for huge in ("9" * 19, "1" + "0" * 40, "-" + "9" * 19, "-1" + "0" * 40, str(2**64)):
        with pytest.raises(ValueError):  # numpy saturates them silently: read as a limit
            numbers.digits_array(f"1 {huge} 2", 3)


def test_plain_text():
    text = tcpmemlib.parsers.text
    assert text.plain("a b\tc\n")
    for odd in ("a\r\n", "é", "a\x0bb", "a\x0cb", "a\x1cb", "a\xa0b", "a\u2028b"):
        assert not text.plain(odd)


def test_load_baseline_is_the_old_code():
    source = io.StringIO(_baseline_source("tcpmemlib/parsers/ps.py"))
    assert "records_fast" not in source.read()
    assert not hasattr(OLD.ps, "records_fast")
