"""Property: mutated real ss lines never make read_numbered raise, read_ss raises nothing but
ParseError, and every engine gives the same frame, line numbers and errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers import ss as ss_mod
from tcpmemlib.parsers.ss import ENGINES, read_numbered
from tcpmemlib.parsers.text import read_text

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ss"


def _real_lines() -> list[str]:
    lines: list[str] = []
    for path in sorted(FIXTURES.glob("*/*.txt")):
        text = read_text(path)[1]
        # keep a few lines per file, joining continuation lines to their socket line
        phys = text.split("\n")
        for i, ln in enumerate(phys[:12]):
            if ln and not ln.startswith("\t"):
                nxt = phys[i + 1] if i + 1 < len(phys) and phys[i + 1].startswith("\t") else None
                lines.append(ln if nxt is None else ln + "\n" + nxt)
    return lines


LINES = _real_lines()


def _check_engines_agree(text: str) -> None:
    results = [read_numbered("f", text, engine=e) for e in ENGINES]
    first = results[0]
    for other in results[1:]:
        pd.testing.assert_frame_equal(other.frame, first.frame)
        assert other.line_numbers.tolist() == first.line_numbers.tolist()
        assert [str(e) for e in other.errors] == [str(e) for e in first.errors]
    assert list(first.frame.columns) == list(ss_mod.COLUMNS)
    assert len(first.frame) == len(first.line_numbers)
    assert all(e.line_no is not None and e.line_no >= 1 for e in first.errors)
    lines = [e.line_no for e in first.errors] + first.line_numbers.tolist()
    assert len(set(lines)) == len(lines)  # a record is a row or an error, never both
    if "\x00" in text:  # read_text rejects a file holding NUL bytes as binary
        with pytest.raises(ParseError, match="NUL"):
            ss_mod.read_ss(text.encode())
        return
    try:
        public = ss_mod.read_ss(text.encode())  # (bytes: never taken for a path)
    except ParseError as err:
        assert first.errors and err.line_no == first.errors[0].line_no
    else:
        assert not first.errors
        pd.testing.assert_frame_equal(public, first.frame)


ALPHABET = " \t\n:,()[]%\"'=*-./<>0123456789abcdeflmnorstuwxyzABCDEFLNOSTW\\_\r\x0b\u00a0é٣"


@st.composite
def mutated(draw: st.DrawFn) -> str:
    base = draw(st.lists(st.sampled_from(LINES), min_size=1, max_size=3))
    text = "\n".join(base)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "dup", "truncate", "swap"]))
        pos = draw(st.integers(0, max(0, len(text) - 1)))
        if op == "insert":
            text = text[:pos] + draw(st.text(ALPHABET, min_size=1, max_size=6)) + text[pos:]
        elif op == "delete":
            n = draw(st.integers(1, 12))
            text = text[:pos] + text[pos + n :]
        elif op == "replace":
            text = text[:pos] + draw(st.sampled_from(ALPHABET)) + text[pos + 1 :]
        elif op == "dup":
            n = draw(st.integers(1, 40))
            text = text[:pos] + text[pos : pos + n] + text[pos:]
        elif op == "truncate":
            text = text[:pos]
        else:
            toks = text.split(" ")
            if len(toks) > 2:
                i = draw(st.integers(0, len(toks) - 2))
                toks[i], toks[i + 1] = toks[i + 1], toks[i]
            text = " ".join(toks)
    return text


def test_there_are_lines_to_mutate():
    assert len(LINES) >= 20


@settings(
    max_examples=int(__import__("os").environ.get("SS_PROP_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_mutated_lines_never_raise_and_engines_agree(text: str):
    _check_engines_agree(text)


# Tokens the C extractor dispatches on, so random lines reach its deeper branches.
_PIECES = [
    "ESTAB", "LISTEN", "tcp", " ", "\t", "\n\t ", "0", "4294967296", "127.0.0.1:80", "[::1]:22",
    "[fe80::1]%lo:1", "*:*", 'users:(("a",pid=1,fd=2))', "users:((", "ino:", "sk:", "cgroup:/",
    "skmem:(r0,rb1,t0,tb1,f0,w0,o0,bl0,d0)", "skmem:(", "mem:(r1,w2,f3,t4)", "timer:(on,1s,0)",
    "rtt:0.1/0.2", "rtt:/", "send", "12Mbps", "bbr:(bw:1)", "cwnd:10", "bytes_acked:99", "x:y",
    ":", ",", ")", "(", "\x00", "\x0b", "é", "9" * 20, "9" * 19, "\n", '"', 'users:(("x', "\\xe9",
    ',pid=1,fd=2)', '",pid=3,fd=4))', "rtt:1234567890.1234567/1", "\n\t", "\nESTAB 0 0 a:1 b:2",
]  # fmt: skip


@settings(
    max_examples=int(__import__("os").environ.get("SS_PROP_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", "ESTAB 0 0 127.0.0.1:80 *:* ", "tcp LISTEN 0 5 [::1]:22 [::]:* "]),
            st.lists(st.sampled_from(_PIECES), max_size=14).map("".join),
        ).map("".join),
        min_size=1,
        max_size=4,
    ),
)
def test_random_token_soup_never_raises_and_engines_agree(lines):
    """Socket heads followed by shuffled pieces of every token kind (and of broken ones)."""
    _check_engines_agree("\n".join(lines))
