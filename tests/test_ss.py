"""read_ss: real lines, formats, errors, empty input, and a live loopback workload with known truth."""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers import ss as ss_mod
from tcpmemlib.parsers.ss import COLUMNS, DTYPES, ENGINES, SsRead, parse, read_numbered, read_ss
from tcpmemlib.parsers.text import read_text

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "ss"


def same_in_every_engine(text: str, categories: tuple[str, ...] = ()) -> SsRead:
    """read_numbered with each engine: the same frame, line numbers and errors; returns one."""
    results = [read_numbered("f", text, categories, engine=e) for e in ENGINES]
    for other in results[1:]:
        pd.testing.assert_frame_equal(other.frame, results[0].frame)
        assert other.line_numbers.tolist() == results[0].line_numbers.tolist()
        assert [str(e) for e in other.errors] == [str(e) for e in results[0].errors]
    return results[0]


def _load_workload():
    spec = importlib.util.spec_from_file_location("ss_workload", FIXTURES / "workload.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ss_workload"] = mod
    spec.loader.exec_module(mod)
    return mod


# Real lines from `ss -tanmieOpH` on this machine (iproute2-6.1.0, kernel 6.18).
LISTEN_SHARED = (
    "LISTEN 0      4096   127.0.0.1:36039   0.0.0.0:*     "
    'users:(("python",pid=5761,fd=3),("python",pid=5760,fd=3),("python",pid=5759,fd=3)) '
    "ino:14339 sk:1001 cgroup:/ <-> skmem:(r0,rb131072,t0,tb16384,f0,w0,o0,bl0,d0) bbr cwnd:10 "
)
ESTAB_UNREAD = (
    "ESTAB  65536  0      127.0.0.1:36039   127.0.0.1:50408 "
    'users:(("python",pid=5759,fd=5)) ino:14341 sk:1005 cgroup:/ <-> '
    "skmem:(r68032,rb131072,t0,tb3939840,f1600,w0,o0,bl0,d1) ts sack bbr wscale:10,10 rto:200 "
    "rtt:0.023/0.011 ato:80 mss:32768 pmtu:65535 rcvmss:32741 advmss:65483 cwnd:10 "
    "bytes_received:65536 segs_out:2 segs_in:6 data_segs_in:4 bbr:(bw:0bps,mrtt:0.023) "
    "send 113975652174bps lastsnd:616 lastrcv:616 lastack:608 pacing_rate 325725462640bps "
    "delivered:1 app_limited rcv_rtt:1 rcv_space:65483 rcv_ssthresh:94833 minrtt:0.023 "
    "snd_wnd:65536 "
)
HOSTILE = (
    "ESTAB  0      0      127.0.0.1:50428   127.0.0.1:36039 "
    'users:(("a b,"c(d",pid=5762,fd=8)) ino:14344 sk:100a cgroup:/ <-> '
    "skmem:(r0,rb131072,t0,tb3939840,f0,w0,o0,bl0,d0) ts sack bbr wscale:10,10 rto:200 "
    "rtt:0.007/0.003 mss:32741 pmtu:65535 rcvmss:536 advmss:65483 cwnd:10 bytes_acked:1 "
    "segs_out:2 segs_in:1 rcv_space:65495 rcv_ssthresh:65495 minrtt:0.007 snd_wnd:65483"
)
TIME_WAIT = "TIME-WAIT 0      0      127.0.0.1:36039   127.0.0.1:50448 timer:(timewait,59sec,0) ino:0 sk:1003 "
V4_MAPPED = (
    "ESTAB 10     0       [::ffff:127.0.0.1]:36133 [::ffff:127.0.0.1]:54968 "
    'users:(("python",pid=5759,fd=17)) ino:14355 sk:101c cgroup:/ <-> '
    "skmem:(r842,rb131072,t0,tb3939840,f3254,w0,o0,bl0,d0) ts sack bbr wscale:10,10 rto:200 "
    "rtt:0.009/0.004 ato:40 mss:32768 pmtu:65535 rcvmss:536 advmss:65483 cwnd:10"
)
V6_LISTEN = (
    'LISTEN 0      4096   [::1]:41769   [::]:*     users:(("python",pid=5759,fd=8)) ino:14350 '
    "sk:101a cgroup:/ v6only:1 <-> skmem:(r0,rb131072,t0,tb16384,f0,w0,o0,bl0,d0) bbr cwnd:10 "
)


def test_columns_and_dtypes_match_contract():
    df = read_ss("\n".join([LISTEN_SHARED, ESTAB_UNREAD, TIME_WAIT]))
    assert tuple(df.columns) == COLUMNS
    for col, dtype in DTYPES.items():
        assert str(df[col].dtype) == str(pd.Series([], dtype=dtype).dtype), col  # type: ignore[call-overload]
    assert parse is read_ss


def test_empty_input_gives_full_empty_frame():
    for text in ("", "\n", "State  Recv-Q Send-Q Local Address:Port Peer Address:PortProcess\n"):
        df = read_ss(text)
        assert len(df) == 0
        assert tuple(df.columns) == COLUMNS
        assert str(df["recv_q"].dtype) == "UInt32"
        assert str(df["rtt_ms"].dtype) == "Float64"
        assert str(df["state"].dtype) == "category"


def test_listener_shared_by_forked_workers():
    row = read_ss(LISTEN_SHARED).iloc[0]
    assert row["state"] == "LISTEN"
    assert row["recv_q"] == 0 and row["send_q"] == 4096
    assert (row["local_address"], row["local_port"]) == ("127.0.0.1", "36039")
    assert (row["peer_address"], row["peer_port"]) == ("0.0.0.0", "*")
    assert row["owners"] == (("python", 5761, 3), ("python", 5760, 3), ("python", 5759, 3))
    assert row["skmem_rb"] == 131072 and row["skmem_d"] == 0 and row["cwnd"] == 10
    assert pd.isna(row["rtt_ms"]) and pd.isna(row["netid"]) and pd.isna(row["unparsed"])
    assert row["inode"] == 14339 and row["sk"] == "1001" and row["cgroup"] == "/"
    assert row["uid"] == 0  # ss omits uid:0; -e printed ino:


def test_estab_with_unread_data_and_tcp_info():
    row = read_ss(ESTAB_UNREAD).iloc[0]
    assert row["recv_q"] == 65536
    assert (row["skmem_r"], row["skmem_f"], row["skmem_tb"], row["skmem_d"]) == (
        68032,
        1600,
        3939840,
        1,
    )
    assert row["rtt_ms"] == pytest.approx(0.023)
    assert (row["mss"], row["rcvmss"], row["advmss"], row["cwnd"]) == (32768, 32741, 65483, 10)
    assert row["bytes_received"] == 65536 and pd.isna(row["bytes_sent"])
    assert (row["rcv_space"], row["rcv_ssthresh"], row["snd_wnd"]) == (65483, 94833, 65536)
    assert pd.isna(row["rcv_wnd"]) and pd.isna(row["notsent"])  # ss 6.1 has no rcv_wnd
    assert pd.isna(row["unparsed"])


def test_hostile_comm_with_space_comma_quote_paren():
    row = read_ss(HOSTILE).iloc[0]
    assert row["owners"] == (('a b,"c(d', 5762, 8),)
    assert row["inode"] == 14344 and row["bytes_acked"] == 1


def test_hostile_comm_cannot_inject_values():
    line = HOSTILE.replace('"a b,"c(d"', '"x mss:1 ino:2"')
    row = read_ss(line).iloc[0]
    assert row["owners"] == (("x mss:1 ino:2", 5762, 8),)
    assert row["mss"] == 32741 and row["inode"] == 14344


def test_time_wait_has_no_skmem():
    row = read_ss(TIME_WAIT).iloc[0]
    assert row["state"] == "TIME-WAIT" and row["timer"] == "timewait,59sec,0"
    assert row["inode"] == 0 and pd.isna(row["skmem_r"]) and row["owners"] == ()


def test_addresses_v6_mapped_and_wildcards():
    df = read_ss("\n".join([V4_MAPPED, V6_LISTEN]))
    assert df["local_address"].tolist() == ["::ffff:127.0.0.1", "::1"]
    assert df["peer_address"].tolist() == ["::ffff:127.0.0.1", "::"]
    assert df["peer_port"].tolist() == ["54968", "*"]


@pytest.mark.parametrize(
    ("token", "addr", "port"),
    [
        ("[fe80::1]%eth0:22", "fe80::1%eth0", "22"),
        ("fe80::1%eth0:22", "fe80::1%eth0", "22"),
        ("127.0.0.53%lo:53", "127.0.0.53%lo", "53"),
        ("*:*", "*", "*"),
        ("[::]:*", "::", "*"),
        (":::22", "::", "22"),
        ("127.0.0.1:http", "127.0.0.1", "http"),
        ("localhost:36039", "localhost", "36039"),
    ],
)
def test_address_forms(token, addr, port):
    line = f"LISTEN 0 128 {token} *:* ino:1 sk:1"
    row = read_ss(line).iloc[0]
    assert (row["local_address"], row["local_port"]) == (addr, port)


def test_continuation_lines_without_O():
    text = (
        "State  Recv-Q Send-Q Local Address:Port Peer Address:PortProcess\n"
        + LISTEN_SHARED.split(" skmem")[0]
        + "\n\t skmem:(r0,rb131072,t0,tb16384,f0,w0,o0,bl0,d0) bbr cwnd:10 \n"
        + TIME_WAIT
        + "\n\t \n"
    )
    df = read_ss(text)
    assert len(df) == 2
    assert df["skmem_rb"].iloc[0] == 131072 and df["cwnd"].iloc[0] == 10
    assert df["state"].tolist() == ["LISTEN", "TIME-WAIT"]


def test_netid_column():
    df = read_ss("tcp   " + ESTAB_UNREAD + "\nudp   UNCONN 0 0 127.0.0.1:5353 0.0.0.0:* ino:7 sk:2")
    assert df["netid"].tolist() == ["tcp", "udp"]
    assert df["state"].tolist() == ["ESTAB", "UNCONN"]


def test_old_skmem_and_mem_formats():
    text = "\n".join(
        [
            "ESTAB 0 0 10.0.0.1:22 10.0.0.2:5000 skmem:(r0,rb369280,t0,tb87040,f0,w0,o0)",
            "ESTAB 0 0 10.0.0.1:22 10.0.0.2:5001 skmem:(r0,rb369280,t0,tb87040,f0,w0,o0,bl0)",
            "ESTAB 0 0 10.0.0.1:22 10.0.0.2:5002 mem:(r0,w0,f0,t0)",
        ]
    )
    df = read_ss(text)
    assert df["skmem_rb"].tolist()[:2] == [369280, 369280]
    assert pd.isna(df["skmem_rb"].iloc[2]) and df["skmem_w"].iloc[2] == 0
    assert pd.isna(df["skmem_bl"].iloc[0]) and df["skmem_bl"].iloc[1] == 0
    assert df["skmem_d"].isna().all()
    assert df["unparsed"].isna().all()


def test_unknown_tokens_kept_aside():
    line = ESTAB_UNREAD.rstrip() + " frobnicate:42 ??? "
    row = read_ss(line).iloc[0]
    assert row["unparsed"] == "frobnicate:42 ???"
    assert row["snd_wnd"] == 65536


def test_error_names_path_line_and_text(tmp_path):
    p = tmp_path / "ss_tcp.txt"
    p.write_text(LISTEN_SHARED + "\nthis is not a socket line\n")
    with pytest.raises(ParseError) as exc:
        read_ss(p)
    assert exc.value.path == str(p) and exc.value.line_no == 2
    assert exc.value.line == "this is not a socket line"
    assert f"{p}:2:" in str(exc.value) and "'this is not a socket line'" in str(exc.value)


def test_error_line_number_counts_continuation_lines():
    text = LISTEN_SHARED + "\n\t skmem:(r0,rb1,t0,tb1,f0,w0,o0)\ngarbage\n"
    with pytest.raises(ParseError) as exc:
        read_ss(text)
    assert exc.value.line_no == 3 and exc.value.path is None


def test_gz_path_and_bytes(tmp_path):
    p = tmp_path / "ss_tcp.txt.gz"
    p.write_bytes(gzip.compress((LISTEN_SHARED + "\n" + ESTAB_UNREAD + "\n").encode()))
    assert len(read_ss(p)) == 2 and len(read_ss(str(p))) == 2
    assert len(read_ss((ESTAB_UNREAD + "\n").encode())) == 1


def test_bad_inputs_raise_parse_error(tmp_path):
    with pytest.raises(ParseError, match="no such file"):
        read_ss(tmp_path / "missing.txt")
    with pytest.raises(ParseError, match="no such file"):
        read_ss(str(tmp_path / "missing.txt.gz"))
    bad = tmp_path / "bin.txt"
    bad.write_bytes(b"LISTEN 0 1 1.2.3.4:5 *:*\n\x00\x01\x02")
    with pytest.raises(ParseError, match="binary"):
        read_ss(bad)
    trunc = tmp_path / "t.txt.gz"
    trunc.write_bytes(gzip.compress(b"x" * 1000)[:20])
    with pytest.raises(ParseError, match="gzip"):
        read_ss(trunc)


def test_read_text_api(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("a\n")
    assert read_text(p) == (str(p), "a\n")
    assert read_text("a b\n") == (None, "a b\n")
    assert read_text(b"a\n") == (None, "a\n")


def test_module_docstring_lists_every_column():
    doc = ss_mod.__doc__ or ""
    for col in COLUMNS:
        assert f"``{col}``" in doc, col


def test_live_unread_bytes_and_owners():
    """N connections x K unread bytes on loopback; the real ss output must add up exactly."""
    wl = _load_workload()
    n, k = 100, 40000
    with wl.Loopback(max_life_s=120) as lb:
        lst = lb.listener()
        port = str(lst.getsockname()[1])
        pairs = lb.pairs(lst, n, unread=k)
        worker = lb.hold([lst])
        text = wl.run_ss("-tanmieOpH", f"sport = :{port} or dport = :{port}")
        df = read_ss(text)
        servers = df[(df["local_port"] == port) & (df["state"] == "ESTAB")]
        assert len(servers) == n
        assert int(servers["recv_q"].sum()) == n * k
        r = int(servers["skmem_r"].sum())
        assert n * k <= r <= 1.2 * n * k, r
        me = os.getpid()
        assert all(any(pid == me for _c, pid, _fd in o) for o in servers["owners"])
        fds = {p.server.fileno() for p in pairs}
        assert {o[0][2] for o in servers["owners"]} == fds
        listener = df[df["state"] == "LISTEN"].iloc[0]
        assert {pid for _c, pid, _fd in listener["owners"]} == {me, worker}
        assert df["unparsed"].isna().all()


def test_batches_threads_and_fallback_rows_agree_with_reference(monkeypatch):
    """Many small batches in 2 threads, with reference-parser rows scattered among them."""
    from tcpmemlib.parsers import _ss_fast

    monkeypatch.setattr(_ss_fast, "BATCH", 7)
    texts = [read_text(p)[1] for p in sorted(FIXTURES.glob("*/*.txt*"))]
    text = "\n".join([*texts, HOSTILE, TIME_WAIT, ESTAB_UNREAD + " frobnicate:1"]) * 3
    result = same_in_every_engine(text)
    assert len(result.frame) > 2000 * 3 and len(result.errors) == 7 * 3  # (names_sorted.txt)


@pytest.mark.parametrize(
    "text",
    [
        "\x0b\n" + TIME_WAIT,  # a line of non-ss whitespace is not blank
        "\n\t skmem:(r0,rb1,t0,tb1,f0,w0,o0)\n" + TIME_WAIT,  # blank line continued
        "State  Recv-Q Send-Q Local Address:Port Peer Address:Port\n\t x\n" + TIME_WAIT,
        "\t skmem:(r0,rb1,t0,tb1,f0,w0,o0)\n" + TIME_WAIT,  # continuation before any socket
        TIME_WAIT + "\r\n\t \r\n" + LISTEN_SHARED + "\r\n",  # CRLF
    ],
)
def test_edge_layouts_same_in_every_engine(text):
    same_in_every_engine(text)


def test_comm_that_looks_like_an_owner_separator():
    """A comm holding '),(' splits wrongly in the fast path: that row must take the per-line path."""
    line = HOSTILE.replace('"a b,"c(d"', '"a),(b"')
    text = "\n".join([ESTAB_UNREAD, line, LISTEN_SHARED])
    df = read_ss(text)
    assert df["owners"].iloc[1] == (("a),(b", 5762, 8),)
    assert df["owners"].iloc[2][0] == ("python", 5761, 3)
    same_in_every_engine(text)


def test_the_c_extractor_is_built_here():
    """setup.py builds tcpmemlib.parsers._sstok where a C compiler is (this machine and CI): read_ss
    must use it, or it is ~3x slower without saying so."""
    assert ENGINES[0] == "c", "tcpmemlib.parsers._sstok is not built: pip install -e ."


def test_a_u32_field_above_its_range_names_the_line():
    """skmem/queue/-i fields are the kernel's u32: a bigger number is not ss output. It must not
    wrap around in the UInt32 column: an error with the file's line number, in every engine."""
    big = re.sub(r"skmem:\(r[0-9]+", "skmem:(r4294967296", ESTAB_UNREAD, count=1)
    assert big != ESTAB_UNREAD
    text = "\n".join([TIME_WAIT, LISTEN_SHARED, big, TIME_WAIT])
    result = same_in_every_engine(text)
    assert len(result.frame) == 3 and result.line_numbers.tolist() == [1, 2, 4]
    (err,) = result.errors
    assert err.line_no == 3 and "skmem_r" in str(err) and err.line == big
    with pytest.raises(ParseError) as exc:
        read_ss(text)
    assert exc.value.line_no == 3
    ok = re.sub(r"skmem:\(r[0-9]+", "skmem:(r4294967295", ESTAB_UNREAD, count=1)
    assert read_ss(ok)["skmem_r"].iloc[0] == 4294967295


@pytest.mark.parametrize(
    ("old", "new", "what"),
    [
        ("bytes_received:65536", "bytes_received:9223372036854775808", "bytes_received"),
        ("bytes_received:65536", "bytes_received:99999999999999999999999", "bytes_received"),
        ("ESTAB  65536 ", "ESTAB  9223372036854775808 ", "Recv-Q"),
        ("skmem:(r68032,", "skmem:(r18446744073709551616,", "skmem r"),
        ("cwnd:10", "cwnd:4294967296", "cwnd"),
    ],
)
def test_integers_above_their_range_are_errors_naming_the_line(old, new, what):
    """#10.8: never an OverflowError; 2**63-1 itself is an Int64 value."""
    line = ESTAB_UNREAD.replace(old, new)
    assert line != ESTAB_UNREAD
    result = same_in_every_engine("\n".join([TIME_WAIT, line]))
    assert len(result.frame) == 1
    (err,) = result.errors
    assert err.line_no == 2 and what in err.reason, err
    top = ESTAB_UNREAD.replace("bytes_received:65536", "bytes_received:9223372036854775807")
    assert same_in_every_engine(top).frame["bytes_received"].iloc[0] == 2**63 - 1


def test_a_pid_above_int_range_names_the_line():
    """pid_t and fds are C ints: a users:(...) pid beyond that is not ss output (never dropped)."""
    big = re.sub(r"pid=[0-9]+", "pid=99999999999", ESTAB_UNREAD, count=1)
    assert big != ESTAB_UNREAD
    result = same_in_every_engine("\n".join([TIME_WAIT, big]))
    assert [e.line_no for e in result.errors] == [2] and len(result.frame) == 1


def test_same_pid_and_fd_under_two_names_keep_both():
    """Owner tuples are shared between rows with the same users:(...) text -- not when the name
    differs (the process exec'd between two snapshots read together)."""
    renamed = ESTAB_UNREAD.replace('(("python",', '(("nginx",', 1)
    assert renamed != ESTAB_UNREAD
    df = same_in_every_engine("\n".join([ESTAB_UNREAD, renamed, ESTAB_UNREAD])).frame
    assert [o[0][0] for o in df["owners"]] == ["python", "nginx", "python"]


def test_without_the_c_extractor_read_ss_runs_the_reference_engine(tmp_path):
    """A machine without a C compiler installs without _sstok: read_ss must still work (the
    reference engine) and give the same frame."""
    fixture = FIXTURES / "iproute2-6.1.0_kernel-6.18" / "tanmieOpH.txt"
    out = tmp_path / "reference.pkl"
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tcpmemlib.parsers._sstok":
            raise ImportError("blocked for the test")
sys.meta_path.insert(0, Block())
from tcpmemlib.parsers import ss
assert ss.ENGINES == ("reference",), ss.ENGINES
import tcpmemlib
tcpmemlib.read_ss({str(fixture)!r}).to_pickle({str(out)!r})
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    pd.testing.assert_frame_equal(pd.read_pickle(out), read_ss(fixture))


# --- process names ss prints raw (#10.6) -----------------------------------------------------


def test_bytes_that_are_not_utf8_are_escaped_never_a_rejected_file(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b'ESTAB 0 0 1.2.3.4:5 1.2.3.4:6 users:(("caf\xe9",pid=1,fd=3))\n')
    assert read_text(latin)[1] == 'ESTAB 0 0 1.2.3.4:5 1.2.3.4:6 users:(("caf\\xe9",pid=1,fd=3))\n'
    assert read_ss(latin)["owners"].iloc[0] == (("caf\\xe9", 1, 3),)


def test_text_with_a_lone_surrogate_parses():
    """Text decoded elsewhere with surrogateescape has no UTF-8 form: still rows, never a raw
    UnicodeEncodeError."""
    line = ESTAB_UNREAD.replace('(("python",', '(("caf\udce9",', 1)
    got = same_in_every_engine("\n".join([line, TIME_WAIT]))
    assert got.frame["owners"].iloc[0][0][0] == "caf\udce9" and not got.errors


def test_a_name_split_by_a_newline_is_joined_and_kept_as_backslash_n():
    """ss prints `users:(("a` and `b",pid=...` on two lines; collect.sh writes the same name as
    the two characters \n: both give one row and the same name."""
    head = 'ESTAB 0 0 127.0.0.1:5 127.0.0.1:6 users:(("'
    tail = '",pid=7,fd=8)) ino:9 sk:a cgroup:/ <-> skmem:(r0,rb1,t0,tb1,f0,w0,o0,bl0,d0) cwnd:10'
    raw = "\n".join([TIME_WAIT, head + "a\n\nb" + tail, TIME_WAIT])
    escaped = "\n".join([TIME_WAIT, head + "a\\n\\nb" + tail, TIME_WAIT])
    got = same_in_every_engine(raw)
    assert not got.errors and got.line_numbers.tolist() == [1, 2, 5]
    assert got.frame["owners"].iloc[1] == (("a\\n\\nb", 7, 8),)
    assert got.frame["cwnd"].iloc[1] == 10 and got.frame["skmem_rb"].iloc[1] == 1
    pd.testing.assert_frame_equal(got.frame, same_in_every_engine(escaped).frame)


@pytest.mark.parametrize(
    ("users", "owners"),
    [
        ('(("a)b",pid=1,fd=2))', (("a)b", 1, 2),)),
        ('(("a),(b",pid=1,fd=2),("c",pid=3,fd=4))', (("a),(b", 1, 2), ("c", 3, 4))),
        ('(("q"u,o",pid=1,fd=2))', (('q"u,o', 1, 2),)),
        ('(("x",pid=1",pid=2,fd=3))', (('x",pid=1', 2, 3),)),
        ('(("",pid=1,fd=2))', (("", 1, 2),)),
        ('(("ino:5 mss:1",pid=1,fd=2))', (("ino:5 mss:1", 1, 2),)),
    ],
)
def test_names_with_quotes_commas_parentheses_parse(users, owners):
    line = f"ESTAB 0 0 127.0.0.1:5 127.0.0.1:6 users:{users} ino:9 sk:a mss:7"
    row = same_in_every_engine(line).frame.iloc[0]
    assert row["owners"] == owners and row["inode"] == 9 and row["mss"] == 7


def test_one_bad_line_never_costs_the_file(tmp_path):
    text = "\n".join(
        [LISTEN_SHARED, "garbage here", ESTAB_UNREAD, 'ESTAB 0 0 a:1 b:2 users:(("x', TIME_WAIT]
    )
    got = same_in_every_engine(text)
    assert got.line_numbers.tolist() == [1, 3, 5]
    assert [(e.path, e.line_no) for e in got.errors] == [("f", 2), ("f", 4)]
    assert got.errors[0].line == "garbage here" and "users:(" in got.errors[1].reason
    with pytest.raises(ParseError) as exc:
        read_ss(text)
    assert exc.value.line_no == 2  # read_ss: the first bad record, as documented


def test_clean_and_odd_texts_give_the_same_dtypes():
    """Mixed clean and odd files load together (#10.6: `dtype of categories must be the same`):
    every category column has str categories, even when all NA or empty."""
    odd = (FIXTURES / "iproute2-6.1.0_kernel-6.18_odd_names" / "names_sorted.txt").read_bytes()
    texts = [
        read_text(FIXTURES / "iproute2-6.1.0_kernel-6.18" / "tuanmieOpH_netid.txt")[1],
        read_text(odd)[1],
        "",
        "garbage\n",
        TIME_WAIT,
    ]
    cats = ss_mod.STRING_COLUMNS
    frames = [same_in_every_engine(t, cats).frame for t in texts]
    assert len({tuple(map(str, f.dtypes)) for f in frames}) == 1
    for col in ("netid", "state", *cats):
        dtypes = {f[col].dtype.categories.dtype for f in frames}
        assert len(dtypes) == 1 and str(dtypes.pop()) == "str", col
        merged = pd.api.types.union_categoricals([f[col] for f in frames])
        assert len(merged) == sum(len(f) for f in frames)
    assert frames[0]["netid"].notna().all() and frames[1]["netid"].isna().all()


def test_live_names_made_with_prctl_cost_no_row():
    """Real processes renamed with prctl to names holding newlines, bytes that are not UTF-8,
    quotes and commas, each holding a socket: every socket is a row with its name escaped."""
    wl = _load_workload()
    names = [b"a\nb", b"caf\xe9", b"\n\n", b'q"u,o', b"\xff\n\tz"]
    with wl.Loopback(max_life_s=60) as lb:
        lst = lb.listener()
        port = lst.getsockname()[1]
        held = {}
        for name in names:
            (p,) = lb.pairs(lst, 1)
            held[p.client_port] = (name, lb.hold([p.client], name), p.client.fileno())
            p.client.close()
        raw = subprocess.run(
            ["ss", "-tanmieOpH", f"sport = :{port} or dport = :{port}"],
            check=True,
            capture_output=True,
            timeout=60,
        ).stdout
    got = same_in_every_engine(read_text(raw)[1])
    assert not got.errors and len(got.frame) == 1 + 2 * len(names)
    for cport, (name, pid, fd) in held.items():
        row = got.frame[got.frame["local_port"] == str(cport)].iloc[0]
        want = name.decode("utf-8", "backslashreplace").replace("\n", "\\n")
        assert row["owners"] == ((want, pid, fd),) and pd.isna(row["unparsed"])


def test_read_numbered_contract():
    got = read_numbered(None, "\n".join(["", LISTEN_SHARED, "\t skmem:(r0,rb1,t0,tb1,f0,w0,o0)"]))
    assert isinstance(got, SsRead) and got.line_numbers.dtype == "int64"
    assert got.line_numbers.tolist() == [2] and got.errors == []
    assert tuple(got.frame.columns) == COLUMNS
    with pytest.raises(ValueError, match="categories"):
        read_numbered(None, "", ("recv_q",))
    with pytest.raises(ValueError, match="engine"):
        read_numbered(None, "", engine="numpy")
    empty = read_numbered(None, "", ss_mod.STRING_COLUMNS)
    assert len(empty.frame) == 0 and len(empty.line_numbers) == 0


def test_starts_record_tells_when_texts_can_be_read_joined():
    open_end = 'ESTAB 0 0 127.0.0.1:5 127.0.0.1:6 users:(("a\n'
    rest = 'b",pid=7,fd=8)) ino:9 sk:a\n'
    assert not ss_mod.starts_record(rest) and not ss_mod.starts_record("\t skmem:(r0)\n")
    assert not ss_mod.starts_record("\n" + TIME_WAIT) and not ss_mod.starts_record("garbage\n")
    assert ss_mod.starts_record(TIME_WAIT + "\n") and ss_mod.starts_record("tcp " + ESTAB_UNREAD)
    assert ss_mod.starts_record("State  Recv-Q Send-Q Local Address:Port Peer Address:Port\n")
    joined = same_in_every_engine(open_end + rest)  # (what a text not starting a record risks)
    assert joined.line_numbers.tolist() == [1] and joined.frame["inode"].iloc[0] == 9
    apart = same_in_every_engine(open_end + TIME_WAIT + "\n")
    assert apart.line_numbers.tolist() == [2] and [e.line_no for e in apart.errors] == [1]
