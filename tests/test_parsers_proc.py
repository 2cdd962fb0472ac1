"""The /proc and collector-file parsers (everything but ss): real fixtures, old kernels, bad input.

One generic test runs every fixture pair under tests/fixtures/proc/<kind>/<source>/: ``X`` parsed by
``tcpmemlib.parsers.<kind>.parse`` must equal ``X.expected.json`` (values and dtypes). Regenerate the
expected files after a deliberate change with ``python tests/test_parsers_proc.py --regen`` and review
the diff. The targeted tests below check values against the input text by hand, so a wrong parser
cannot pass by having written its own expectations.
"""

from __future__ import annotations

import gzip
import importlib
import json
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest

from tcpmemlib.errors import ParseError
from tcpmemlib.parsers import (
    cgroups,
    meminfo,
    meta,
    netstat,
    phases,
    protocols,
    ps,
    slab_aliases,
    slabinfo,
    sockstat,
    sysctl,
    zoneinfo,
)
from tcpmemlib.units import check_page_size, kib_to_bytes, pages_to_bytes

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "proc"
MODULES = {
    m.__name__.rsplit(".", 1)[1]: m
    for m in (
        cgroups,
        meminfo,
        meta,
        netstat,
        phases,
        protocols,
        ps,
        slab_aliases,
        slabinfo,
        sockstat,
        sysctl,
        zoneinfo,
    )
}


def _inputs() -> list[Path]:
    return sorted(
        p
        for p in FIXTURES.glob("*/*/*")
        if p.is_file() and p.name != "SOURCE.md" and not p.name.endswith(".expected.json")
    )


def _as_json(frame: pd.DataFrame) -> dict[str, object]:
    return {
        "dtypes": {c: str(t) for c, t in frame.dtypes.items()},
        "records": json.loads(frame.to_json(orient="records", date_format="iso", date_unit="ns")),
    }


def _parse_fixture(path: Path) -> pd.DataFrame:
    kind = path.parent.parent.name
    return MODULES[kind].parse(path)


def test_every_fixture_folder_has_a_source_and_inputs():
    folders = sorted({p.parent for p in _inputs()})
    assert len(folders) >= 15
    for folder in folders:
        assert (folder / "SOURCE.md").is_file(), f"{folder} has no SOURCE.md"
        assert folder.parent.name in MODULES, f"{folder}: unknown kind"


@pytest.mark.parametrize("path", _inputs(), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_fixture_pair(path: Path):
    expected_path = path.with_name(path.name + ".expected.json")
    assert expected_path.is_file(), f"run: python {__file__} --regen"
    frame = _parse_fixture(path)
    expected = json.loads(expected_path.read_text())
    got = _as_json(frame)
    assert got["dtypes"] == expected["dtypes"]
    assert got["records"] == expected["records"]
    schema = MODULES[path.parent.parent.name].SCHEMA
    assert {c: str(frame[c].dtype) for c in schema} == {
        c: str(pd.Series([], dtype=d).dtype) for c, d in schema.items()
    }


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_empty_input_gives_every_column(kind: str):
    frame = MODULES[kind].parse("")
    schema = MODULES[kind].SCHEMA
    assert frame.empty
    assert list(frame.columns) == list(schema)
    for column, dtype in schema.items():
        assert str(frame[column].dtype) == str(pd.Series([], dtype=dtype).dtype), column


# ---------------------------------------------------------------------------------------------
# sockstat


def test_sockstat_real_values_and_bytes():
    path = FIXTURES / "sockstat/kernel-6.18/sockstat.txt"
    text = path.read_text()
    mem_pages = int(text.split("TCP:")[1].split("mem")[1].split()[0])
    row = sockstat.parse(path, page_size_bytes=4096).iloc[0]
    assert row["tcp_mem_pages"] == mem_pages
    assert row["tcp_mem_bytes"] == mem_pages * 4096
    assert pd.isna(row["tcp6_inuse"])  # sockstat, not sockstat6
    big = sockstat.parse(path, page_size_bytes=65536).iloc[0]
    assert big["tcp_mem_bytes"] == mem_pages * 65536
    assert pd.isna(sockstat.parse(path).iloc[0]["tcp_mem_bytes"])


def test_sockstat_old_kernel_without_udplite_or_udp_mem():
    row = sockstat.parse(FIXTURES / "sockstat/kernel-2.6.9-rhel4/sockstat.txt", 4096).iloc[0]
    assert row["sockets_used"] == 229 and row["tcp_tw"] == 4 and row["tcp_alloc"] == 17
    assert row["tcp_mem_pages"] == 1 and row["tcp_mem_bytes"] == 4096
    assert pd.isna(row["udplite_inuse"]) and pd.isna(row["udp_mem_pages"])
    assert pd.isna(row["udp_mem_bytes"])
    assert row["frag_memory_bytes"] == 0


def test_sockstat_merge_v4_v6():
    v4 = sockstat.parse(FIXTURES / "sockstat/kernel-2.6.9-rhel4/sockstat.txt")
    v6 = sockstat.parse(FIXTURES / "sockstat/kernel-2.6.9-rhel4/sockstat6.txt")
    row = sockstat.merge(v4, v6).iloc[0]
    assert row["tcp_inuse"] == 4 and row["tcp6_inuse"] == 3 and row["frag6_memory_bytes"] == 0


def test_sockstat_unknown_field_warns_once_and_keeps_the_rest():
    text = (
        "sockets: used 5\nTCP: inuse 1 orphan 0 tw 0 alloc 1 mem 2 newthing 7\nQUIC: inuse 3 x 1\n"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = sockstat.parse(text).iloc[0]
    assert len(caught) == 1
    assert "TCP newthing" in str(caught[0].message) and "QUIC inuse" in str(caught[0].message)
    assert row["tcp_mem_pages"] == 2


@pytest.mark.parametrize(
    ("text", "line_no"),
    [
        ("sockets: used 5\nTCP: inuse 1 orphan\n", 2),
        ("sockets: used five\n", 1),
        ("garbage without colon\n", 1),
    ],
)
def test_sockstat_malformed_line(text: str, line_no: int):
    with pytest.raises(ParseError) as info:
        sockstat.parse(text)
    assert info.value.line_no == line_no
    assert f"<text>:{line_no}:" in str(info.value)


def test_truncated_gzip_and_binary_name_the_file(tmp_path: Path):
    data = gzip.compress((FIXTURES / "sockstat/kernel-6.18/sockstat.txt").read_bytes())
    bad = tmp_path / "sockstat.txt.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ParseError) as info:
        sockstat.parse(bad)
    assert str(bad) in str(info.value)
    garbage = tmp_path / "meminfo.txt"
    garbage.write_bytes(b"MemTotal: 1 kB\n\x00\x01\x02\xff")
    with pytest.raises(ParseError) as info:
        meminfo.parse(garbage)
    assert str(garbage) in str(info.value) and info.value.line_no == 2


# ---------------------------------------------------------------------------------------------
# meminfo


def test_meminfo_kb_to_bytes_and_counts():
    frame = meminfo.parse(FIXTURES / "meminfo/kernel-3.10-rhel7/meminfo.txt")
    values = dict(zip(frame["field"], frame["value"], strict=True))
    units = dict(zip(frame["field"], frame["unit"], strict=True))
    assert values["MemTotal"] == 1882064 * 1024
    assert values["SReclaimable"] == 25456 * 1024
    assert values["HugePages_Total"] == 0 and units["HugePages_Total"] == "count"
    assert units["Hugepagesize"] == "bytes" and values["Hugepagesize"] == 2048 * 1024
    assert "KReclaimable" not in values  # 4.20+: absent, not 0
    new = meminfo.parse(FIXTURES / "meminfo/kernel-6.18/meminfo.txt")
    assert "KReclaimable" in set(new["field"])
    assert new["field"].dtype == "category" and new["unit"].dtype == "category"


def test_meminfo_bad_unit_names_line():
    with pytest.raises(ParseError) as info:
        meminfo.parse("MemTotal: 1 kB\nMemFree: 2 MB\n")
    assert info.value.line_no == 2 and "MB" in info.value.reason


# ---------------------------------------------------------------------------------------------
# slabinfo and aliases


def test_slabinfo_values_and_bytes():
    frame = slabinfo.parse(FIXTURES / "slabinfo/node_exporter-fixture/slabinfo.txt", 4096)
    row = frame.set_index("name").loc["dmaengine-unmap-128"]
    assert row["active_objs"] == 1206 and row["num_objs"] == 1320
    assert row["objsize_bytes"] == 1088 and row["pagesperslab"] == 8 and row["num_slabs"] == 44
    assert row["active_bytes"] == 1206 * 1088
    assert row["slab_bytes"] == 44 * 8 * 4096
    big = slabinfo.parse(FIXTURES / "slabinfo/node_exporter-fixture/slabinfo.txt", 65536)
    assert big.set_index("name").loc["kmem_cache", "slab_bytes"] == 10 * 2 * 65536
    assert slabinfo.parse(FIXTURES / "slabinfo/kernel-6.18/slabinfo.txt")["slab_bytes"].isna().all()


def test_slabinfo_version_and_truncated_row():
    with pytest.raises(ParseError, match="unsupported slabinfo version"):
        slabinfo.parse("slabinfo - version: 1.1\n")
    text = (FIXTURES / "slabinfo/node_exporter-fixture/slabinfo.txt").read_text()
    cut = text[: text.index("kmalloc-8192") + 30]
    with pytest.raises(ParseError) as info:
        slabinfo.parse(cut)
    assert info.value.line_no == 5


def test_slab_aliases_resolve_shown_as():
    text = "tcp_bind_bucket :A-0000128\neventpoll_epi :A-0000128\nTCP TCP\nfoo :0000064\n"
    frame = slab_aliases.parse(text, slab_names=["eventpoll_epi", "TCP", "dentry"])
    shown = dict(zip(frame["cache"], frame["shown_as"], strict=True))
    assert shown["tcp_bind_bucket"] == "eventpoll_epi"
    assert shown["eventpoll_epi"] == "eventpoll_epi"
    assert pd.isna(shown["foo"])
    real = slab_aliases.parse(FIXTURES / "slab_aliases/kernel-6.18/slab_aliases.txt")
    assert len(real) > 50 and real["target"].str.startswith(":").any()


# ---------------------------------------------------------------------------------------------
# protocols, netstat/snmp


def test_protocols_values():
    frame = protocols.parse(FIXTURES / "protocols/node_exporter-fixture/protocols.txt")
    tcp = frame.set_index("protocol").loc["TCP"]
    assert tcp["size_bytes"] == 1984 and tcp["sockets"] == 93064
    assert tcp["memory_pages"] == 1225378 and tcp["press"] == "yes" and tcp["maxhdr_bytes"] == 320
    assert bool(tcp["slab"]) is True
    packet = frame.set_index("protocol").loc["PACKET"]
    assert pd.isna(packet["memory_pages"]) and bool(packet["slab"]) is False


def test_netstat_pairs_and_mismatch():
    frame = netstat.parse(FIXTURES / "netstat/kernel-6.18/snmp.txt")
    assert set(frame["file"]) == {"snmp"}
    tcp = frame[frame["group"] == "Tcp"].set_index("counter")["value"]
    assert tcp["MaxConn"] == -1  # a negative counter survives
    with pytest.raises(ParseError) as info:
        netstat.parse("Tcp: A B C\nTcp: 1 2\n")
    assert info.value.line_no == 2 and "2 values for 3 names" in info.value.reason
    with pytest.raises(ParseError) as info:
        netstat.parse("Tcp: A B\nUdp: 1 2\n")
    assert info.value.line_no == 2
    with pytest.raises(ParseError) as info:
        netstat.parse("Tcp: A B\nTcp: 1 2\nUdp: X\n")
    assert info.value.line_no == 3


def test_netstat_values_match_text():
    path = FIXTURES / "netstat/kernel-6.18/netstat.txt"
    lines = path.read_text().splitlines()
    names, values = lines[0].split()[1:], lines[1].split()[1:]
    frame = netstat.parse(path)
    got = frame[frame["group"] == "TcpExt"].set_index("counter")["value"]
    for name, value in zip(names, values, strict=True):
        assert got[name] == int(value)


# ---------------------------------------------------------------------------------------------
# zoneinfo


def test_zoneinfo_pagesets_and_free():
    frame = zoneinfo.parse(FIXTURES / "zoneinfo/kernel-pre-6.7-node_exporter/zoneinfo.txt")
    pcp = frame[frame["cpu"].notna()]
    assert len(pcp) == 24  # 3 populated zones x 8 CPUs
    normal = pcp[pcp["zone"] == "Normal"].set_index("cpu")
    assert normal.loc[6, "count_pages"] == 488 and normal.loc[6, "high_pages"] == 378
    assert normal.loc[6, "batch_pages"] == 63
    zones = frame[frame["cpu"].isna()].set_index("zone")
    assert zones.loc["Normal", "count_pages"] == 4539739
    assert zones.loc["Movable", "count_pages"] == 0  # 'pages free 0', no nr_free_pages line
    assert zones["high_pages"].isna().all()
    real = zoneinfo.parse(FIXTURES / "zoneinfo/kernel-6.18/zoneinfo.txt")
    assert set(real.loc[real["cpu"].notna(), "cpu"]) == {0, 1}


# ---------------------------------------------------------------------------------------------
# sysctl, ps, cgroups, meta, phases


def test_sysctl_values():
    frame = sysctl.parse(FIXTURES / "sysctl/kernel-6.18/sysctl.txt")
    assert sysctl.values(frame, "net.ipv4.tcp_mem") is not None
    assert len(sysctl.values(frame, "net.ipv4.tcp_mem") or []) == 3
    assert sysctl.values(frame, "no.such") is None
    with pytest.raises(ParseError) as info:
        sysctl.parse("a.b = 1\nthis line has no equals\n")
    assert info.value.line_no == 2


def test_ps_hostile_names_survive():
    frame = ps.parse(FIXTURES / "ps/kernel-6.18/ps.txt")
    comms = set(frame["comm"])
    assert {"<img src=x oner", 'a b,"c" (x)', "it's ok"} <= comms
    row = frame[frame["comm"] == 'a b,"c" (x)'].iloc[0]
    assert row["rss_bytes"] == 13444 * 1024 and row["vsz_bytes"] == 16568 * 1024
    assert row["uid"] == 0 and frame["args"].isna().all()
    one = ps.parse(
        "  PID  PPID   RSS    VSZ   UID COMMAND\n   7     1    4     8  1000   two  spaces \n"
    )
    assert one["comm"].iloc[0] == "two  spaces "
    with pytest.raises(ParseError) as info:
        ps.parse("  PID  PPID   RSS    VSZ   UID COMMAND\n 1 0 x 3 0 init\n")
    assert info.value.line_no == 2
    args = ps.parse_args("    PID COMMAND\n      1 /sbin/init splash  --x='a b'\n")
    assert args["args"].iloc[0] == "/sbin/init splash  --x='a b'"


def test_cgroups_records():
    text = "pid\t42\t/user.slice/a b.service\nstat\t/user.slice/a b.service\tsock\t8192\nstat\t/x\tmemory.current\tmax\n"
    stats, pids = cgroups.parse_both(text)
    assert pids.iloc[0].to_dict() == {"pid": 42, "cgroup": "/user.slice/a b.service"}
    assert stats.iloc[0]["value_bytes"] == 8192 and pd.isna(stats.iloc[1]["value_bytes"])
    with pytest.raises(ParseError) as info:
        cgroups.parse("pid\t1\t/\nbogus record\n")
    assert info.value.line_no == 2
    real_stats, real_pids = cgroups.parse_both(FIXTURES / "cgroups/kernel-6.18/cgroups.txt")
    assert len(real_pids) > 0 and len(real_stats) > 0


def test_meta_values_and_problems():
    text = (
        "collector_version=1\nhostname=db 1\npage_size=65536\ncpus=8\n"
        "start=2026-11-25T23:17:00.123456789Z\nend=2026-11-25T23:17:01Z\nss_oneline=0\nargs=1\n"
        "interval_s=10\ncgroup_version=2\nfuture_key=whatever\n"
        "missing=slabinfo.txt: not root\nfailed=ss -uanmieOpH: exit 1: oops: more\n"
    )
    frame, problems = meta.parse_both(text)
    row = frame.iloc[0]
    assert row["page_size_bytes"] == 65536 and row["cpus"] == 8 and row["hostname"] == "db 1"
    assert row["start"] == pd.Timestamp("2026-11-25T23:17:00.123456789Z")
    assert row["start"].nanosecond == 789
    assert bool(row["ss_oneline"]) is False and bool(row["args_collected"]) is True
    assert row["interval_s"] == 10.0 and row["cgroup_version"] == "2"
    assert problems.to_dict("records") == [
        {"kind": "missing", "item": "slabinfo.txt", "reason": "not root"},
        {"kind": "failed", "item": "ss -uanmieOpH", "reason": "exit 1: oops: more"},
    ]
    with pytest.raises(ParseError) as info:
        meta.parse("page_size=4096\ncpus=two\n")
    assert info.value.line_no == 2
    with pytest.raises(ParseError, match="time zone"):
        meta.parse("start=2026-11-25T23:17:00\n")


def test_phases():
    frame = phases.parse(FIXTURES / "phases/lab/phases.tsv")
    assert list(frame["phase"]) == ["baseline", "idle 1k connections", "queued data"]
    assert frame["end"].iloc[0] == frame["start"].iloc[1]
    assert pd.isna(frame["end"].iloc[-1])
    with pytest.raises(ParseError) as info:
        phases.parse("2026-11-25T23:17:00Z\tok\nnot-a-time\tx\n")
    assert info.value.line_no == 2


def test_units():
    assert kib_to_bytes(3) == 3072
    assert pages_to_bytes(2, 65536) == 131072
    with pytest.raises(ValueError):
        check_page_size(4000)
    with pytest.raises(ValueError):
        check_page_size(None)
    series = pd.Series([1, pd.NA], dtype="Int64")
    got = pages_to_bytes(series, pd.Series([4096, 16384]))
    assert got.iloc[0] == 4096 and pd.isna(got.iloc[1])


def _regen() -> None:
    for path in _inputs():
        frame = _parse_fixture(path)
        out = path.with_name(path.name + ".expected.json")
        out.write_text(json.dumps(_as_json(frame), indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {out.relative_to(FIXTURES)} ({len(frame)} rows)")


if __name__ == "__main__":
    if "--regen" in sys.argv:
        importlib.import_module("tcpmemlib")
        _regen()
