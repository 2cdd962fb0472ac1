"""One ``ss`` socket line -> a dict of raw values: the reference parser of ``tcpmemlib.parsers.ss``.

``read_ss`` parses the common case with vectorized pyarrow kernels (``_ss_fast``) and hands every
line the fast path cannot vouch for (an unknown token, a process name that could spoof a token, an
odd format) to :func:`parse_line`. The tests check that both give the same result on every fixture
line. The vocabulary below is what iproute2's ``misc/ss.c`` prints for TCP/UDP sockets (``-eimopO``)
from v3.x to v6.x; a token outside it is kept aside in ``unparsed``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "FLOAT_FIELDS",
    "INT_FIELDS",
    "STRING_FIELDS",
    "is_header",
    "parse_line",
]

INT_MAX = (1 << 63) - 1
INT32_MAX = (1 << 31) - 1

# Head of a socket line: [Netid] State Recv-Q Send-Q Local Peer, then the rest.
# Whitespace is what ss and RE2 (the fast path) call whitespace: ASCII only, as are digits.
WS = r"[ \t\n\f\r]"
NWS = r"[^ \t\n\f\r]"
HEAD_RE = re.compile(
    rf"^{WS}*(?:(?P<netid>[a-z][a-z0-9_]*){WS}+)?(?P<state>[A-Z][A-Z0-9_-]*){WS}+"
    rf"(?P<recv_q>[0-9]+){WS}+(?P<send_q>[0-9]+){WS}+(?P<local>{NWS}+){WS}+(?P<peer>{NWS}+)"
    rf"(?P<rest>(?:{WS}.*)?)$",
    re.DOTALL,
)
SPLIT_RE = re.compile(f"{WS}+")
# The header ss prints unless -H: "[Netid] State Recv-Q Send-Q Local Address:Port Peer Address:Port[ Process]"
HEADER_RE = re.compile(rf"^{WS}*(?:Netid{WS}+)?State{WS}+Recv-Q{WS}+Send-Q{WS}")
# users:(("comm",pid=1,fd=2),("comm",pid=3,fd=4)) right after the peer address (ss prints it first).
USERS_RE = re.compile(
    rf"^{WS}+users:\((?P<body>\(\".*?\",pid=[0-9]+,fd=[0-9]+\)(?:,\(\".*?\",pid=[0-9]+,fd=[0-9]+\))*)\)"
    rf"(?={WS}|$)",
    re.DOTALL,
)
OWNER_RE = re.compile(r"\(\"(.*?)\",pid=([0-9]{1,18}),fd=([0-9]{1,18})\)(?:,|$)", re.DOTALL)
ADDR_BRACKET_RE = re.compile(r"^\[(?P<addr>[^\]]*)\](?P<scope>%[^:]*)?:(?P<port>[^:\]]+)$")
ADDR_PLAIN_RE = re.compile(r"^(?P<addr>.+):(?P<port>[^:\]]+)$")
SKMEM_PART_RE = re.compile(r"^(rb|tb|bl|r|t|f|w|o|d)([0-9]+)$")
MEM_RE = re.compile(r"^\(r([0-9]+),w([0-9]+),f([0-9]+),t([0-9]+)\)$")
RTT_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)/[0-9]+(?:\.[0-9]+)?$")
UINT_RE = re.compile(r"^[0-9]{1,18}$")
BARE_WORD_RE = re.compile(r"^[a-z][a-z0-9_-]*$")  # flags (ts, sack, ecn, app_limited) and cc names
RATE_RE = re.compile(r"^[0-9]+(?:\.[0-9]+)?[KMGT]?bps(?:/[0-9]+(?:\.[0-9]+)?[KMGT]?bps)?$")
SHUTDOWN_TOKENS = frozenset({"<->", "-->", "<--", "---"})

# ss -i / -e tokens whose value becomes a column (Int64), keyed by the ss token name.
INT_KEYS = {
    "uid": "uid",
    "ino": "inode",
    "rcv_space": "rcv_space",
    "rcv_ssthresh": "rcv_ssthresh",
    "notsent": "notsent",
    "bytes_sent": "bytes_sent",
    "bytes_acked": "bytes_acked",
    "bytes_received": "bytes_received",
    "snd_wnd": "snd_wnd",
    "rcv_wnd": "rcv_wnd",
    "cwnd": "cwnd",
    "mss": "mss",
    "advmss": "advmss",
    "rcvmss": "rcvmss",
}
SKMEM_KEYS = {
    "r": "skmem_r",
    "rb": "skmem_rb",
    "t": "skmem_t",
    "tb": "skmem_tb",
    "f": "skmem_f",
    "w": "skmem_w",
    "o": "skmem_o",
    "bl": "skmem_bl",
    "d": "skmem_d",
}
# key:value tokens ss prints that read_ss knowingly does not keep (misc/ss.c, tcp_show_info & co).
_IGNORED_KEYS_TEXT = """
    v6only fwmark mark tos tclass class_id priority wscale rto backoff ato qack pmtu ssthresh
    bytes_retrans segs_out segs_in data_segs_out data_segs_in lastsnd lastrcv lastack delivered
    delivered_ce busy rwnd_limited sndbuf_limited unacked retrans lost sacked dsack_dups fackets
    reordering reord_seen rcv_rtt rcv_ooopack minrtt bbr dctcp bbr2 tcp-ulp-tls tcp-ulp-mptcp md5keys
    rcv_nxt snd_una ecn_flags ecnseen fastopen bpf_filter tcp-ulp iface mptcp subflows add_addr_signal
    add_addr_accepted subflows_max add_addr_signal_max add_addr_accepted_max remote_key token
    write_seq snd_una rcv_nxt sock_ctx proc_ctx tx_ring rx_ring pacing_rate_max
    rehash tcp-ulp-smc ecn ce
"""
IGNORED_KEYS = frozenset(_IGNORED_KEYS_TEXT.split())
# Two-token fields: "send 1.2Mbps", "pacing_rate 2Gbps[/3Gbps]", "delivery_rate 1Mbps".
RATE_WORDS = frozenset({"send", "pacing_rate", "delivery_rate"})

INT_FIELDS = (
    "recv_q",
    "send_q",
    "inode",
    "uid",
    *SKMEM_KEYS.values(),
    "rcv_space",
    "rcv_ssthresh",
    "notsent",
    "bytes_sent",
    "bytes_acked",
    "bytes_received",
    "snd_wnd",
    "rcv_wnd",
    "cwnd",
    "mss",
    "advmss",
    "rcvmss",
)
FLOAT_FIELDS = ("rtt_ms",)
STRING_FIELDS = (
    "local_address",
    "local_port",
    "peer_address",
    "peer_port",
    "sk",
    "cgroup",
    "timer",
)


def is_header(line: str) -> bool:
    return HEADER_RE.match(line) is not None


def split_address(token: str) -> tuple[str, str] | None:
    """``[::1]:80`` -> (``::1``, ``80``); ``[fe80::1]%eth0:22`` -> (``fe80::1%eth0``, ``22``);
    ``127.0.0.1:http`` -> (``127.0.0.1``, ``http``); ``*:*`` -> (``*``, ``*``). None if no port."""
    if token.startswith("["):
        m = ADDR_BRACKET_RE.match(token)
        if m is None:
            return None
        return m["addr"] + (m["scope"] or ""), m["port"]
    m = ADDR_PLAIN_RE.match(token)
    if m is None:
        return None
    return m["addr"], m["port"]


def _int(value: str) -> int | None:
    return int(value) if UINT_RE.match(value) else None


def _skmem(body: str, out: dict[str, Any]) -> bool:
    """Fill skmem_* from ``r0,rb131072,...``; False if any part is not ``<key><digits>``."""
    found: dict[str, int] = {}
    for part in body.split(","):
        m = SKMEM_PART_RE.match(part)
        if m is None or m[1] in found or len(m[2]) > 18:
            return False
        found[m[1]] = int(m[2])
    if not {"r", "rb", "t", "tb", "f", "w", "o"} <= found.keys():
        return False
    for key, value in found.items():
        out.setdefault(SKMEM_KEYS[key], value)
    return True


def parse_line(line: str) -> dict[str, Any] | None:
    """Parse one socket line (continuation already joined). None if it cannot be a socket line.

    Returns every column of ``read_ss`` that the line gives (missing ones are absent), ``owners`` as a
    tuple of ``(comm, pid, fd)`` and ``unparsed`` (space-joined unknown tokens, or None).
    """
    m = HEAD_RE.match(line)
    if m is None:
        return None
    local = split_address(m["local"])
    peer = split_address(m["peer"])
    if local is None or peer is None or len(m["recv_q"]) > 18 or len(m["send_q"]) > 18:
        return None
    out: dict[str, Any] = {
        "netid": m["netid"],
        "state": m["state"],
        "recv_q": int(m["recv_q"]),
        "send_q": int(m["send_q"]),
        "local_address": local[0],
        "local_port": local[1],
        "peer_address": peer[0],
        "peer_port": peer[1],
    }
    rest = m["rest"]
    owners: tuple[tuple[str, int, int], ...] = ()
    um = USERS_RE.match(rest)
    if um is not None:
        owners = tuple((c, int(p), int(f)) for c, p, f in OWNER_RE.findall(um["body"]))
        if any(p > INT32_MAX or f > INT32_MAX for _c, p, f in owners):
            return None  # pid_t and fds are C ints: not what ss prints
        rest = rest[um.end() :]
    out["owners"] = owners
    unknown: list[str] = []
    tokens = [t for t in SPLIT_RE.split(rest) if t]
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if tok in RATE_WORDS and i < len(tokens) and RATE_RE.match(tokens[i]):
            i += 1  # "send 1.2Mbps": the rate is the next token
            continue
        if tok in SHUTDOWN_TOKENS:
            continue
        key, sep, value = tok.partition(":")
        if not sep:
            if not BARE_WORD_RE.match(tok):
                unknown.append(tok)
            continue
        if key in INT_KEYS:
            number = _int(value)
            if number is None:
                unknown.append(tok)
            else:
                out.setdefault(INT_KEYS[key], number)
        elif key == "skmem":
            if not (
                len(value) >= 2
                and value[0] == "("
                and value[-1] == ")"
                and _skmem(value[1:-1], out)
            ):
                unknown.append(tok)
        elif key == "mem":
            mm = MEM_RE.match(value)
            if mm is None or any(len(g) > 18 for g in mm.groups()):
                unknown.append(tok)
            else:
                for name, g in zip(
                    ("skmem_r", "skmem_w", "skmem_f", "skmem_t"), mm.groups(), strict=True
                ):
                    out.setdefault(name, int(g))
        elif key == "rtt":
            rm = RTT_RE.match(value)
            if rm is None:
                unknown.append(tok)
            else:
                out.setdefault("rtt_ms", float(rm[1]))
        elif key == "timer":
            if len(value) >= 2 and value.startswith("(") and value.endswith(")"):
                out.setdefault("timer", value[1:-1])
            else:
                unknown.append(tok)
        elif key == "sk":
            out.setdefault("sk", value)
        elif key == "cgroup":
            out.setdefault("cgroup", value)
        elif key in IGNORED_KEYS:
            pass
        else:
            unknown.append(tok)
    out["unparsed"] = " ".join(unknown) if unknown else None
    return out
