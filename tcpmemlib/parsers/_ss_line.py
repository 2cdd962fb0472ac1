"""The reference engine of ``read_ss``: ss text -> socket records -> one dict of raw values each.

``records(text)`` cuts the text into socket records (a physical line, the TAB-led continuation lines
ss prints without ``-O``, and the rest of a process name that held a raw newline); ``parse_line``
reads one record, or raises ``BadLine`` saying why it is not one. The C engine (``_sstok.c``) does
the same for the common records and hands every other one to ``parse_line``; the tests check that
both engines give the same frames. The vocabulary below is what iproute2's ``misc/ss.c`` prints
for TCP/UDP sockets (``-eimopO``) from v3.x to v6.x; a token outside it is kept in ``unparsed``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "STRING_FIELDS",
    "BadLine",
    "can_start",
    "is_header",
    "is_open",
    "parse_line",
    "records",
]

INT_MAX = (1 << 63) - 1
INT32_MAX = (1 << 31) - 1


class BadLine(ValueError):
    """A record that is not an ss socket line; the message says why."""


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
# A physical line that can start a socket record: [netid] state recv-q send-q.
START_RE = re.compile(
    rf"^{WS}*(?:[a-z][a-z0-9_]*{WS}+)?[A-Z][A-Z0-9_-]*{WS}+[0-9]+{WS}+[0-9]+(?:{WS}|$)"
)
# Where a process name in users:(("NAME",pid=N,fd=N)...) ends (ss prints the name raw).
OWNER_END_RE = re.compile(r'",pid=[0-9]+,fd=[0-9]+\)')
BLANK_RE = re.compile(rf"^{WS}*$")
# users:(("comm",pid=1,fd=2),("comm",pid=3,fd=4)) right after the peer address (ss prints it first).
USERS_RE = re.compile(
    rf"^{WS}+users:\((?P<body>\(\".*?\",pid=[0-9]+,fd=[0-9]+\)(?:,\(\".*?\",pid=[0-9]+,fd=[0-9]+\))*)\)"
    rf"(?={WS}|$)",
    re.DOTALL,
)
OWNER_RE = re.compile(r"\(\"(.*?)\",pid=([0-9]+),fd=([0-9]+)\)(?:,|$)", re.DOTALL)
ADDR_BRACKET_RE = re.compile(r"^\[(?P<addr>[^\]]*)\](?P<scope>%[^:]*)?:(?P<port>[^:\]]+)$")
ADDR_PLAIN_RE = re.compile(r"^(?P<addr>.+):(?P<port>[^:\]]+)$")
SKMEM_PART_RE = re.compile(r"^(rb|tb|bl|r|t|f|w|o|d)([0-9]+)$")
MEM_RE = re.compile(r"^\(r([0-9]+),w([0-9]+),f([0-9]+),t([0-9]+)\)$")
RTT_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)/[0-9]+(?:\.[0-9]+)?$")
UINT_RE = re.compile(r"^[0-9]+$")
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

# (capture.py's SOCKET_CATEGORIES; ss.STRING_COLUMNS is the public name, with "unparsed")
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


def can_start(line: str) -> bool:
    """True when the physical ``line`` can start a socket record (``START_RE``) or is a header."""
    return START_RE.match(line) is not None or is_header(line)


def is_open(record: str) -> bool:
    """True when the record's ``users:((`` block runs off its end inside a process name (ss printed
    a name holding a newline raw). From the first ``users:((``, owners are ``("NAME",pid=N,fd=N)``
    separated by ``,``, each name ending at the first ``",pid=N,fd=N)`` after it."""
    u = record.find("users:((")
    if u < 0:
        return False
    p = u + 7
    while record.startswith('("', p):
        m = OWNER_END_RE.search(record, p + 2)
        if m is None:
            return True
        p = m.end()
        if not record.startswith(",", p):
            return False
        p += 1
    return False


def records(text: str) -> list[tuple[int, int, int]]:
    """The socket records of ``text`` as ``(start, end, line_no)``: ``text[start:end]`` is a
    physical line (without its newline), plus the lines that continue it -- TAB-led lines (ss
    without ``-O``) and, after a record whose ``users:((`` block is open (``is_open``), lines that
    cannot start a record (``START_RE``): the rest of a process name that held a raw newline.
    ``line_no`` is the 1-based number of its first physical line. Blank and header records are
    left out."""
    out: list[tuple[int, int, int]] = []
    rec: list[int] | None = None  # [start, end, line_no]

    def close() -> None:
        if rec is not None:
            piece = text[rec[0] : rec[1]]
            if not BLANK_RE.match(piece) and not is_header(piece):
                out.append((rec[0], rec[1], rec[2]))

    pos = 0
    physical = text.split("\n")
    if physical and physical[-1] == "":
        physical.pop()
    for no, line in enumerate(physical, start=1):
        end = pos + len(line)
        if rec is not None and (
            line.startswith("\t")
            or (not START_RE.match(line) and not is_header(line) and is_open(text[rec[0] : rec[1]]))
        ):
            rec[1] = end
        else:
            close()
            rec = [pos, end, no]
        pos = end + 1
    close()
    return out


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


def _number(digits: str, what: str) -> int:
    """``digits`` (ASCII, as UINT_RE matched) as an int; BadLine above 2**63-1."""
    value = int(digits)
    if value > INT_MAX:
        raise BadLine(f"{what} {digits} is above 2**63-1")
    return value


def _int(value: str, what: str) -> int | None:
    return _number(value, what) if UINT_RE.match(value) else None


def _skmem(body: str, out: dict[str, Any]) -> bool:
    """Fill skmem_* from ``r0,rb131072,...``; False if any part is not ``<key><digits>``."""
    found: dict[str, int] = {}
    for part in body.split(","):
        m = SKMEM_PART_RE.match(part)
        if m is None or m[1] in found:
            return False
        found[m[1]] = _number(m[2], f"skmem {m[1]}")
    if not {"r", "rb", "t", "tb", "f", "w", "o"} <= found.keys():
        return False
    for key, value in found.items():
        out.setdefault(SKMEM_KEYS[key], value)
    return True


def _owners(rest: str) -> tuple[tuple[tuple[str, int, int], ...], str]:
    """The ``users:((...))`` block at the start of ``rest`` (after the peer) -> the owner tuples
    and what follows the block. A raw newline in a name is kept as the two characters ``\n``."""
    um = USERS_RE.match(rest)
    if um is None:
        if re.match(rf"{WS}+users:\(", rest):
            raise BadLine("users:(...) block cut or malformed (a process name with a newline?)")
        return (), rest
    owners = []
    for comm, pid, fd in OWNER_RE.findall(um["body"]):
        if int(pid) > INT32_MAX or int(fd) > INT32_MAX:
            raise BadLine(f"pid={pid},fd={fd}: above 2**31-1 (pid_t and fds are C ints)")
        owners.append((comm.replace("\n", "\\n"), int(pid), int(fd)))
    return tuple(owners), rest[um.end() :]


def parse_line(line: str) -> dict[str, Any]:
    """Parse one socket record (as ``records`` cut it). Raises ``BadLine`` if it is not one.

    Returns every column of ``read_ss`` that the line gives (missing ones are absent), ``owners`` as a
    tuple of ``(comm, pid, fd)`` and ``unparsed`` (space-joined unknown tokens, or None).
    """
    m = HEAD_RE.match(line)
    if m is None:
        raise BadLine("not an ss socket line")
    local = split_address(m["local"])
    peer = split_address(m["peer"])
    if local is None or peer is None:
        raise BadLine("not an ss socket line (an address without a port)")
    out: dict[str, Any] = {
        "netid": m["netid"],
        "state": m["state"],
        "recv_q": _number(m["recv_q"], "Recv-Q"),
        "send_q": _number(m["send_q"], "Send-Q"),
        "local_address": local[0],
        "local_port": local[1],
        "peer_address": peer[0],
        "peer_port": peer[1],
    }
    out["owners"], rest = _owners(m["rest"])
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
            number = _int(value, key)
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
            if mm is None:
                unknown.append(tok)
            else:
                for name, g in zip(
                    ("skmem_r", "skmem_w", "skmem_f", "skmem_t"), mm.groups(), strict=True
                ):
                    out.setdefault(name, _number(g, "mem"))
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
