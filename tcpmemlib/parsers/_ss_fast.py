"""The hot path of ``read_ss``: no Python loop per line, two engines that give the same frames.

The text is cut into lines by numpy (continuation lines, which start with a TAB, stay inside their
socket's line). Then:

- engine ``"c"`` (the default where ``_sstok.c`` was built): ``parse_all_c`` runs the C extractor
  over every line, two threads filling disjoint ranges of one set of arrays without the GIL. It
  takes each line as the reference parser does, or flags it ``slow`` (see ``_sstok.c``). Integer
  columns go from its arrays straight to pandas, strings are cut from the text once per column
  (``_spans``), owner tuples are built once per distinct (pid, fd) (``_owners_c``).
- engine ``"numpy"`` (the fallback without a compiler): batches of lines are parsed in two threads
  with numpy and pyarrow kernels, and in each batch:

1. one RE2 pass (``GRAMMAR``, on the bytes) decides which lines are *canonical*: every token known
   and well formed, in the order ss prints them, process names without ``:`` or ``"``;
2. one numpy pass cuts the batch into tokens (runs of bytes > 0x20); the head tokens are taken by
   position, the ``key:value`` tokens after it are found by their first bytes (read 8 at a time),
   and their digits are read 8 at a time (SWAR) -- no regex per field;
3. a short anchored regex cuts the ``users:(...)`` block right after the peer; ``_owners`` builds
   the owner tuples.

With either engine, every line it cannot vouch for is flagged ``slow`` and parsed by the reference
per-line parser ``_ss_line.parse_line``, so both give the reference parser's answer (the tests check
this on every fixture line, on mutated real lines and on random token soup, for both engines).
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tcpmemlib.parsers import _ss_line as L

try:  # the C field extractor (setup.py builds it; optional: without it, the numpy path below)
    from tcpmemlib.parsers import _sstok
except ImportError:  # pragma: no cover - exercised only where no C compiler was available
    _sstok = None
if _sstok is not None and getattr(_sstok, "ABI", None) != 2:  # a stale build: rebuild with pip
    _sstok = None
if _sstok is not None:
    _sstok.configure(sorted(L.IGNORED_KEYS))

__all__ = ["ENGINES", "Chunk", "parse_chunk", "parse_lines", "split_lines"]

# "c": _sstok takes each line as the reference parser would, or flags it for it (no GRAMMAR pass);
# "numpy": GRAMMAR picks the canonical lines and _columns cuts them. Same frames; the C one is
# faster per line and runs without the GIL, so two threads use two CPUs.
ENGINES = ("c", "numpy") if _sstok is not None else ("numpy",)

WS = "[ \\t\\n\\f\\r]"
# Control bytes that are not whitespace: no token of a canonical line holds one, so the tokenizer
# (token_columns) can take every byte <= 0x20 as a separator.
CTL = "\\x00-\\x08\\x0b\\x0e-\\x1f"
NWS = f"[^ \\t\\n\\f\\r{CTL}]"
# The grammar takes any run of digits (a bounded count makes that RE2 pass ~20% slower); values
# of more than 18 digits (which the per-line parser leaves in ``unparsed``) are found when the
# numbers are read (``_columns``), and their lines go to the per-line parser.
NUM = "[0-9]+"
NUM18 = "[0-9]{1,18}"
# Between two tokens ss prints spaces, or (without -O) a newline, a TAB and a space.
SEP = "(?: *\\r?\\n\\t +| +)"
_V = f"{NWS}*"  # the value of a key the fast path skips

# Keys whose values are columns appear only inside the "blocks" below, in the order ss prints them;
# a line with such a key anywhere else is not canonical (the per-line parser takes it).
_BLOCK_KEYS = {"uid", "ino", "sk", "cgroup", *L.INT_KEYS}
_IGNORED = "|".join(
    sorted((k.replace("-", "\\-") for k in L.IGNORED_KEYS - _BLOCK_KEYS), key=len, reverse=True)
)
_RATE = "[0-9]+(?:\\.[0-9]+)?[KMGT]?bps(?:/[0-9]+(?:\\.[0-9]+)?[KMGT]?bps)?"
_OWNER = f'\\("[^:"{CTL}]*",pid={NUM},fd={NUM}\\)'
_ADDR = (
    f"(?:\\[[^\\]\\s{CTL}]*\\](?:%[^:\\s{CTL}]*)?:[^:\\]\\s{CTL}]+"
    f"|[^\\s\\[\\]{CTL}]+:[^:\\]\\s{CTL}]+)"
)


def _named(pattern: str, names: list[str]) -> str:
    """Name the groups ``(`` ... in order (RE2 via pyarrow wants named groups)."""
    out, i, k = [], 0, 0
    while i < len(pattern):
        if pattern.startswith("\\\\", i) or pattern.startswith("\\(", i):
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if pattern[i] == "(" and not pattern.startswith("(?", i):
            out.append(f"(?P<{names[k]}>")
            k += 1
        else:
            out.append(pattern[i])
        i += 1
    assert k == len(names), (pattern, names)
    return "".join(out)


_SKMEM = (
    f"skmem:\\(r({NUM}),rb({NUM}),t({NUM}),tb({NUM}),f({NUM}),w({NUM}),o({NUM})"
    f"(?:,bl({NUM}))?(?:,d({NUM}))?\\)"
)
_SKMEM_NAMES = ["r", "rb", "t", "tb", "f", "w", "o", "bl", "d"]
_MEM = f"mem:\\(r({NUM}),w({NUM}),f({NUM}),t({NUM})\\)"
_DET = f"(?:uid:({NUM}) )?ino:({NUM}) sk:({NWS}+)(?: fwmark:{_V})?(?: cgroup:({NWS}+))?"
_DET_NAMES = ["uid", "inode", "sk", "cgroup"]
_G1 = (
    f"(?:mss:({NUM})(?: pmtu:{_V})? rcvmss:({NUM}) advmss:({NUM}) )?cwnd:({NUM})"
    f"(?: ssthresh:{_V})?(?: bytes_sent:({NUM}))?(?: bytes_retrans:{_V})?"
    f"(?: bytes_acked:({NUM}))?(?: bytes_received:({NUM}))?"
)
_G1_NAMES = ["mss", "rcvmss", "advmss", "cwnd", "bytes_sent", "bytes_acked", "bytes_received"]
_G3 = (
    f"(?:rcv_space:({NUM})(?: rcv_ssthresh:({NUM}))?|rcv_ssthresh:({NUM}))"
    f"(?: notsent:({NUM}))?(?: minrtt:{_V})?(?: rcv_ooopack:{_V})?"
    f"(?: snd_wnd:({NUM}))?(?: rcv_wnd:({NUM}))?"
)
_G3_NAMES = ["rcv_space", "rcv_ssthresh", "rcv_ssthresh2", "notsent", "snd_wnd", "rcv_wnd"]
_OTHER = (
    "(?:"
    f"(?:{_IGNORED}):{_V}"
    "|rtt:[0-9]+(?:\\.[0-9]+)?/[0-9]+(?:\\.[0-9]+)?"
    "|<->|-->|<--|---"
    f"|(?:send|pacing_rate|delivery_rate) +{_RATE}"
    "|[a-z][a-z0-9_-]*"
    ")"
)
_TIMER = f"timer:\\([^ \\t\\n\\f\\r){CTL}]*\\)"
_HEAD = f"^ *(?:[a-z][a-z0-9_]* +)?[A-Z][A-Z0-9_-]* +{NUM} +{NUM} +{_ADDR} +{_ADDR}"
_REST = f"(?:{SEP}{_OTHER})*"
# Whole-line grammar of a canonical socket line: the blocks in the order ss prints them (timer right
# after the owners, skmem or the old mem at most once, between the details and the -i blocks).
GRAMMAR = (
    f"{_HEAD}(?: +users:\\({_OWNER}(?:,{_OWNER})*\\))?(?:{SEP}{_TIMER})?{_REST}"
    f"(?:{SEP}{_DET}{_REST})?(?:{SEP}(?:{_SKMEM}|{_MEM}){_REST})?"
    f"(?:{SEP}{_G1}{_REST})?(?:{SEP}{_G3}{_REST})?{WS}*$"
)
X_MEM = f"^r(?P<r>{NUM18}),w(?P<w>{NUM18}),f(?P<f>{NUM18}),t(?P<t>{NUM18})\\)"
X_USERS = f"^ +users:\\((?P<users>{_OWNER}(?:,{_OWNER})*)\\)"
# skmem fields always printed, in order, with the length of their letter prefix.
_SKMEM_FIXED = (("r", 1), ("rb", 2), ("t", 1), ("tb", 2), ("f", 1), ("w", 1), ("o", 1))
OWNER_PIECE = f'^\\(?"(?P<comm>[^"]*)",pid=(?P<pid>{NUM18}),fd=(?P<fd>{NUM18})\\)?$'
SKIP = f"^{WS}*$|^{WS}*(?:Netid{WS}+)?State{WS}+Recv-Q{WS}+Send-Q{WS}"


def _newlines(buf: np.ndarray, block: int = 1 << 22) -> np.ndarray:
    """Positions of b"\\n" in ``buf``, scanned in blocks through one reused scratch array (a
    whole-buffer comparison would page-fault a fresh array as large as the input)."""
    scratch = np.empty(min(block, len(buf)), dtype=bool)
    found = []
    for i in range(0, len(buf), block):
        part = buf[i : i + block]
        eq = scratch[: len(part)]
        np.equal(part, 10, out=eq)
        found.append(np.flatnonzero(eq) + i)
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def split_lines(data: bytes) -> tuple[pa.LargeStringArray, np.ndarray]:
    """Logical socket lines of ``data`` (a line plus its TAB-led continuation lines, newlines kept
    inside; they are whitespace to every pattern) and the 1-based physical number of each."""
    buf = np.frombuffer(data, dtype=np.uint8)
    starts = np.concatenate([np.zeros(1, dtype=np.int64), _newlines(buf).astype(np.int64) + 1])
    if len(starts) and starts[-1] == len(data):
        starts = starts[:-1]
    numbers = np.arange(1, len(starts) + 1, dtype=np.int64)
    if len(starts) > 1:
        cont = np.zeros(len(starts), dtype=bool)
        cont[1:] = buf[starts[1:]] == 9
        starts, numbers = starts[~cont], numbers[~cont]
    offsets = np.append(starts, np.int64(len(data)))
    lines = pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(data))
    return lines, numbers


def _nonempty(arr: pa.Array) -> pa.Array:
    """'' (a group that did not take part) -> null."""
    return pc.if_else(pc.equal(pc.binary_length(arr), 0), pa.scalar(None, arr.type), arr)


def _group(lines: pa.Array, pattern: str) -> pa.Array:
    """The one named group of ``pattern`` in each line (null where it does not match)."""
    return pc.struct_field(pc.extract_regex(lines, pattern), 0)


def _text(arr: pa.Array) -> pa.Array:
    """Bytes cut out of UTF-8 text at ASCII boundaries -> strings (checked, no copy)."""
    return arr.cast(pa.large_string())


def _ints(arr: pa.Array) -> pa.Array:
    return pc.cast(_nonempty(arr), pa.int64())


@dataclass
class Chunk:
    """Columns (arrow) for the lines of one chunk; ``slow`` marks lines for the per-line parser."""

    columns: dict[str, pa.Array]
    owners: np.ndarray
    slow: np.ndarray


def _owners(users: pa.Array, slow: np.ndarray) -> np.ndarray:
    """Tuple of (comm, pid, fd) per line, () where there is no users:(...) block."""
    n = len(users)
    out = np.empty(n, dtype=object)
    out.fill(())
    has = pc.fill_null(pc.greater(pc.binary_length(users), 0), False)
    idx = np.flatnonzero(has.to_numpy(zero_copy_only=False) & ~slow)
    if len(idx) == 0:
        return out
    body = users.take(pa.array(idx))
    pieces = pc.split_pattern(body, "),(")
    flat = pieces.flatten()
    parts = pc.extract_regex(flat, OWNER_PIECE)
    bad = pc.is_null(parts).to_numpy(zero_copy_only=False)
    counts = pc.list_value_length(pieces).to_numpy(zero_copy_only=False)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    if bad.any():  # a comm that the piece regex cannot take apart: per-line parser
        bad_rows = np.unique(np.searchsorted(bounds, np.flatnonzero(bad), side="right") - 1)
        slow[idx[bad_rows]] = True
    comm = _text(pc.struct_field(parts, "comm")).to_pylist()
    # (pieces that did not parse are null here; their rows went to the per-line parser)
    pid_a = pc.fill_null(_ints(_text(pc.struct_field(parts, "pid"))), 0).to_numpy()
    fd_a = pc.fill_null(_ints(_text(pc.struct_field(parts, "fd"))), 0).to_numpy()
    big = (pid_a > L.INT32_MAX) | (fd_a > L.INT32_MAX)
    if big.any():  # not a pid/fd ss prints: the per-line parser says so
        slow[idx[np.unique(np.searchsorted(bounds, np.flatnonzero(big), side="right") - 1)]] = True
    pid, fd = pid_a.tolist(), fd_a.tolist()
    if int(counts.max()) == 1:  # one owner per socket: 1-tuples of triples, built in C
        rows = list(zip(zip(comm, pid, fd, strict=True)))
    else:
        triples = list(zip(comm, pid, fd, strict=True))
        rows = [tuple(triples[a:b]) for a, b in itertools.pairwise(bounds)]
    out[idx] = np.fromiter(rows, dtype=object, count=len(rows))
    return out


def _address(col: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``[fe80::1]%eth0:22`` -> (``fe80::1%eth0``, ``22``); ``1.2.3.4:80`` -> (``1.2.3.4``, ``80``).
    Only for tokens the grammar accepted (so the port is after the last ``:``)."""
    parts = pc.split_pattern(col, ":", max_splits=1, reverse=True)
    addr = pc.list_element(parts, 0)
    port = pc.list_element(parts, 1)
    if pc.any(pc.starts_with(col, "[")).as_py():
        addr = pc.replace_substring(addr, "[", "", max_replacements=1)
        addr = pc.replace_substring(addr, "]", "", max_replacements=1)
    return addr, port


# Tokens after the head whose value is a column, by the key that starts them. In a canonical line
# each occurs at most once (rtt: excepted: the first one counts, as in the per-line parser), and
# the grammar vouched for its value (digits for these).
_INT_TOKENS = {
    "ino:": "inode",
    "uid:": "uid",
    "mss:": "mss",
    "rcvmss:": "rcvmss",
    "advmss:": "advmss",
    "cwnd:": "cwnd",
    "bytes_sent:": "bytes_sent",
    "bytes_acked:": "bytes_acked",
    "bytes_received:": "bytes_received",
    "rcv_space:": "rcv_space",
    "rcv_ssthresh:": "rcv_ssthresh",
    "notsent:": "notsent",
    "snd_wnd:": "snd_wnd",
    "rcv_wnd:": "rcv_wnd",
}
_KEYS = [*_INT_TOKENS, "sk:", "cgroup:", "timer:(", "rtt:", "skmem:(", "mem:("]
_U64 = np.uint64


def _le(b: bytes) -> int:
    """The first 8 bytes of ``b`` (zero-padded) as a little-endian integer."""
    return int.from_bytes(b[:8].ljust(8, b"\0"), "little")


def _mask(k: int) -> int:
    """Mask of the low ``k`` bytes (at most 8)."""
    return (1 << (8 * min(k, 8))) - 1


_SPECS = [
    (
        k,
        _U64(_le(k.encode())),
        _U64(_mask(len(k))),
        _U64(_le(k.encode()[8:])),
        _U64(_mask(max(len(k) - 8, 0))),
    )
    for k in _KEYS
]
_PREFIX4 = sorted({_le(k.encode()[:4]) for k in _KEYS if len(k) >= 4})
_SK3 = _le(b"sk:")
_ZEROS = _U64(0x3030303030303030)


def _words(seg: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The 8 bytes of ``seg`` at each position in ``pos``, as little-endian uint64 (``seg`` must
    have 8 readable bytes after the last position)."""
    view = np.ndarray(shape=(len(seg) - 7,), dtype="<u8", buffer=seg, strides=(1,))
    return view[pos]


def _swar8(w: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Value of the ``n`` (0-8) ASCII digits in the low bytes of each ``w`` (the first digit in the
    lowest byte): shifted to the top, leading bytes become zeros, then pairs, quads and octets of
    digits are combined in three multiply-adds."""
    shift = (np.minimum(8 - n, 7) * 8).astype(np.uint64)
    x = (w - _ZEROS) << shift
    x = (x * _U64(10) + (x >> _U64(8))) & _U64(0x00FF00FF00FF00FF)
    x = (x * _U64(100) + (x >> _U64(16))) & _U64(0x0000FFFF0000FFFF)
    x = (x * _U64(10000) + (x >> _U64(32))) & _U64(0xFFFFFFFF)
    return np.where(n > 0, x, _U64(0))


def _uints(seg: np.ndarray, vs: np.ndarray, ve: np.ndarray) -> np.ndarray:
    """int64 value of the digits ``seg[vs[i]:ve[i]]`` (1 to 18 digits, as the grammar vouched)."""
    L = ve - vs
    n = np.minimum(L, 8)
    val = _swar8(_words(seg, ve - n), n)
    if len(L) and L.max() > 8:
        n2 = np.clip(L - 8, 0, 8)
        val = val + _swar8(_words(seg, np.maximum(ve - 8 - n2, 0)), n2) * _U64(10**8)
        if L.max() > 16:
            n3 = np.clip(L - 16, 0, 8)
            val = val + _swar8(_words(seg, np.maximum(ve - 16 - n3, 0)), n3) * _U64(10**16)
    return val.astype(np.int64)


def _substrings(buf: pa.Buffer, vs: np.ndarray, ve: np.ndarray) -> pa.Array:
    """buf[vs[i]:ve[i]] as strings; the ranges are disjoint and in increasing order."""
    m = len(vs)
    if m == 0:
        return pa.array([], type=pa.large_string())
    offsets = np.empty(2 * m, dtype=np.int64)
    offsets[0::2] = vs
    offsets[1::2] = ve
    both = pa.LargeStringArray.from_buffers(2 * m - 1, pa.py_buffer(offsets), buf)
    return both.take(pa.array(np.arange(0, 2 * m - 1, 2)))


def _scatter(values: pa.Array, rows: np.ndarray, n: int) -> pa.Array:
    """An ``n``-row array with ``values[i]`` at row ``rows[i]``, null elsewhere."""
    idx = np.zeros(n, dtype=np.int64)
    absent = np.ones(n, dtype=bool)
    idx[rows] = np.arange(len(rows))
    absent[rows] = False
    return values.take(pa.array(idx, mask=absent))


def _int_column(vals: np.ndarray, rows: np.ndarray, n: int) -> pa.Array:
    """``_scatter`` for numpy int64 values."""
    out = np.zeros(n, dtype=np.int64)
    absent = np.ones(n, dtype=bool)
    out[rows] = vals
    absent[rows] = False
    return pa.array(out, mask=absent)


def _skmem(
    buf: pa.Buffer, vs: np.ndarray, ve: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """skmem values ``r1,rb2,t3,tb4,f5,w6,o7[,bl8][,d9])`` (the grammar vouched for the form) ->
    {name: (values, rows that have it)}: cut at the commas, digits read by ``_uints``."""
    m = len(vs)
    sub = _substrings(buf, vs, ve)
    offs = np.frombuffer(sub.buffers()[1], dtype=np.int64)[sub.offset : sub.offset + m + 1]
    size = int(offs[-1])
    data = np.empty(size + 16, dtype=np.uint8)
    data[:size] = np.frombuffer(sub.buffers()[2], dtype=np.uint8, count=size)
    data[size:] = 32
    seps = np.flatnonzero((data[:size] == 44) | (data[:size] == 41))  # "," and the closing ")"
    j0 = np.searchsorted(seps, offs[:-1])
    nf = np.searchsorted(seps, offs[1:]) - j0  # fields per row: 7, 8 or 9
    rows = np.arange(m)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    long = np.zeros(m, dtype=bool)
    for f, (name, plen) in enumerate(_SKMEM_FIXED):
        start = offs[:-1] if f == 0 else seps[j0 + f - 1] + 1
        end = seps[j0 + f]
        long |= end - start - plen > 18
        out[name] = (_uints(data, start + plen, end), rows)
    has7 = np.flatnonzero(nf >= 8)
    if len(has7):
        start = seps[j0[has7] + 6] + 1
        is_bl = data[start] == 98  # "b"
        for name, plen, pick in (("bl", 2, is_bl), ("d", 1, ~is_bl)):
            r = has7[pick]
            end = seps[j0[r] + 7]
            long[r[end - start[pick] - plen > 18]] = True
            out[name] = (_uints(data, start[pick] + plen, end), r)
    has8 = np.flatnonzero(nf >= 9)
    if len(has8):
        start, end = seps[j0[has8] + 7] + 2, seps[j0[has8] + 8]
        long[has8[end - start > 18]] = True
        d = _uints(data, start, end)
        if "d" in out:  # a row has d as its 8th or its 9th field, never both
            v, r = out["d"]
            order = np.argsort(np.concatenate([r, has8]), kind="stable")
            out["d"] = (np.concatenate([v, d])[order], np.concatenate([r, has8])[order])
        else:
            out["d"] = (d, has8)
    out["long"] = (np.zeros(0, dtype=np.int64), np.flatnonzero(long))
    return out


def _columns(lines: pa.Array, slow: np.ndarray) -> tuple[dict[str, pa.Array], pa.Array]:
    """Every column but ``owners`` for the canonical lines (null on the others), and the body of
    each line's ``users:(...)`` block (bytes; null where there is none)."""
    n = len(lines)
    offs = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + n + 1]
    o0, o1 = int(offs[0]), int(offs[-1])
    size = o1 - o0
    # seg: the chunk's bytes between a leading space and 32 trailing ones (for 8-byte reads).
    seg = np.empty(size + 33, dtype=np.uint8)
    seg[0] = 32
    seg[1 : size + 1] = np.frombuffer(lines.buffers()[2], dtype=np.uint8, count=size, offset=o0)
    seg[size + 1 :] = 32
    buf = pa.py_buffer(seg)
    lstart = offs[:-1] - (o0 - 1)
    # Tokens: runs of bytes > 0x20 (a canonical line has no other byte <= 0x20 than whitespace).
    nws = seg > 32
    edges = np.flatnonzero(nws[1:] != nws[:-1]) + 1
    starts, ends = edges[0::2], edges[1::2]
    first = np.searchsorted(starts, lstart)  # each line's first token
    canon = ~slow
    rows = np.flatnonzero(canon)
    cols: dict[str, pa.Array] = {}
    # The head: [netid] state recv-q send-q local peer.
    f = first[rows]
    netid = (seg[starts[f]] >= 97) & (seg[starts[f]] <= 122)  # a lowercase first token
    head = f + netid  # index of the state token
    body = np.zeros(n, dtype=np.int64)
    body[rows] = head + 5  # the first token after the head
    nrows = rows[netid]
    cols["netid"] = _scatter(_substrings(buf, starts[f[netid]], ends[f[netid]]), nrows, n)
    cols["state"] = _scatter(_substrings(buf, starts[head], ends[head]), rows, n)
    for i, name in ((1, "recv_q"), (2, "send_q")):
        vs, ve = starts[head + i], ends[head + i]
        slow[rows[ve - vs > 18]] = True  # (every number: see NUM)
        cols[name] = _int_column(_uints(seg, vs, ve), rows, n)
    for i, side in ((3, "local"), (4, "peer")):
        token = _scatter(_substrings(buf, starts[head + i], ends[head + i]), rows, n)
        cols[f"{side}_address"], cols[f"{side}_port"] = _address(token)
    # users:(...) right after the peer: rows from the end of the peer to the next one's (the regex
    # is anchored, the rest of the row does not matter).
    peer_end = np.append(ends[head + 4], len(seg))
    after = pa.Array.from_buffers(pa.large_binary(), len(rows), [None, pa.py_buffer(peer_end), buf])
    users = _scatter(pc.struct_field(pc.extract_regex(after, X_USERS), 0), rows, n)
    # key:value tokens after the head, found by their first 4 (or 3) bytes, then the whole key.
    w = _words(seg, starts)
    w4 = w & _U64(0xFFFFFFFF)
    hit = (w4 & _U64(0xFFFFFF)) == _U64(_SK3)
    for p in _PREFIX4:
        hit |= w4 == _U64(p)
    cand = np.flatnonzero(hit)
    row = np.searchsorted(first, cand, side="right") - 1
    keep = canon[row] & (cand >= body[row])
    cand, row = cand[keep], row[keep]
    w1 = w[cand]
    w2 = _words(seg, starts[cand] + 8)
    cs, ce = starts[cand], ends[cand]
    for key, lo, lo_m, hi, hi_m in _SPECS:
        sel = (w1 & lo_m) == lo
        if len(key) > 8:
            sel &= (w2 & hi_m) == hi
        k = np.flatnonzero(sel)
        r = row[k]
        if len(r) > 1:  # first occurrence in a line (only rtt: can repeat in a canonical line)
            first_in = np.empty(len(r), dtype=bool)
            first_in[0] = True
            np.not_equal(r[1:], r[:-1], out=first_in[1:])
            k, r = k[first_in], r[first_in]
        vs, ve = cs[k] + len(key), ce[k]
        if key in _INT_TOKENS:
            slow[r[ve - vs > 18]] = True
            cols[_INT_TOKENS[key]] = _int_column(_uints(seg, vs, ve), r, n)
        elif key == "sk:" or key == "cgroup:":
            cols[key[:-1]] = _scatter(_substrings(buf, vs, ve), r, n)
        elif key == "timer:(":
            cols["timer"] = _scatter(_substrings(buf, vs, ve - 1), r, n)
        elif key == "rtt:":
            s = _substrings(buf, vs, ve)
            cut = pc.find_substring(s, "/").to_numpy(zero_copy_only=False)
            x = pc.cast(_substrings(buf, vs, vs + cut), pa.float64())
            cols["rtt_ms"] = _scatter(x, r, n)
        elif key == "skmem:(" and len(r):
            fields = _skmem(buf, vs, ve)
            slow[r[fields.pop("long")[1]]] = True
            for name, (v, i) in fields.items():
                cols[f"skmem_{name}"] = _int_column(v, r[i], n)
        elif key == "mem:(" and len(r):
            m = pc.extract_regex(_substrings(buf, vs, ve).view(pa.large_binary()), X_MEM)
            slow[r[pc.is_null(m).to_numpy(zero_copy_only=False)]] = True
            for name in ("r", "w", "f", "t"):
                mem = _scatter(_ints(_text(pc.struct_field(m, name))), r, n)
                old = cols.get(f"skmem_{name}")
                cols[f"skmem_{name}"] = mem if old is None else pc.coalesce(old, mem)
    return cols, users


# The C extractor's columns, in the order of its arrays (_sstok.c: the I_* and S_* enums).
C_INT_COLUMNS = (
    "recv_q", "send_q", "inode", "uid", "mss", "rcvmss", "advmss", "cwnd", "bytes_sent",
    "bytes_acked", "bytes_received", "rcv_space", "rcv_ssthresh", "notsent", "snd_wnd", "rcv_wnd",
    *(f"skmem_{k}" for k in _SKMEM_NAMES),
)  # fmt: skip
C_SPANS = (
    "netid", "state", "local_address", "local_port", "peer_address", "peer_port", "sk", "cgroup",
    "timer", "rtt_ms", "users",
)  # fmt: skip


def _spans(buf: pa.Buffer, vs: np.ndarray, ve: np.ndarray) -> pa.Array:
    """``buf[vs[i]:ve[i]]`` as strings, null where ``vs[i] < 0``; the present spans are disjoint
    and in increasing order (one per line)."""
    n = len(vs)
    absent = vs < 0
    if n == 0 or absent.all():
        return pa.nulls(n, pa.large_string())
    if absent.any():  # an empty span at the last end so far keeps the offsets increasing
        fill = np.maximum.accumulate(np.where(absent, 0, ve))
        vs, ve = np.where(absent, fill, vs), np.where(absent, fill, ve)
    offsets = np.empty(2 * n, dtype=np.int64)
    offsets[0::2] = vs
    offsets[1::2] = ve
    both = pa.LargeStringArray.from_buffers(2 * n - 1, pa.py_buffer(offsets), buf)
    even = np.arange(0, 2 * n - 1, 2)
    return both.take(pa.array(even, mask=absent) if absent.any() else pa.array(even))


def _owners_c(buf: pa.Buffer, us: np.ndarray, ue: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Owner tuples from the ``users:(...)`` spans the C extractor found (``count`` per line)."""
    out = np.empty(len(us), dtype=object)
    out.fill(())
    m = int(count.sum())
    if m == 0:
        return out
    cs, ce, pid, fd = (np.empty(m, dtype=np.int64) for _ in range(4))
    _sstok.owners(buf, us, ue, cs, ce, pid, fd)
    comm = _spans(buf, cs, ce).dictionary_encode()  # few distinct names: decode each once
    codes = comm.indices.to_numpy()
    idx = np.flatnonzero(count)
    per = count[idx]
    if int(per.max()) == 1:
        # One owner per socket: one tuple per distinct (pid, fd) (pid and fd < 2**31, as the C
        # extractor checked), unless a (pid, fd) shows up with two names (an exec between rows).
        key = (pid << 31) | fd
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        if np.array_equal(codes[first][inverse], codes):
            names = comm.dictionary.to_pylist()
            objects = np.fromiter(
                (((names[c], p, f),) for c, p, f in zip(
                    codes[first].tolist(), pid[first].tolist(), fd[first].tolist(), strict=True
                )),
                dtype=object,
                count=len(first),
            )  # fmt: skip
            out[idx] = objects[inverse]
            return out
    # several owners on some socket (a listener shared by forked workers)
    names = np.array(comm.dictionary.to_pylist(), dtype=object)[codes]
    flat = list(zip(names.tolist(), pid.tolist(), fd.tolist(), strict=True))
    bounds = np.concatenate([[0], np.cumsum(per)]).tolist()
    rows = [tuple(flat[a:b]) for a, b in itertools.pairwise(bounds)]
    out[idx] = np.fromiter(rows, dtype=object, count=len(rows))
    return out


@dataclass
class CColumns:
    """What the C extractor wrote for every line of a text (``C_INT_COLUMNS``/``C_SPANS`` order):
    ``ints`` (int64, -1 = absent), ``spans`` (start, end byte offsets into ``buf``, -1 = absent),
    owners per line in ``count``, and ``slow`` for the lines the per-line parser must take."""

    buf: pa.Buffer
    ints: np.ndarray
    spans: np.ndarray
    count: np.ndarray
    slow: np.ndarray

    def span(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        k = C_SPANS.index(name)
        return self.spans[2 * k], self.spans[2 * k + 1]

    def strings(self, name: str) -> pa.Array:
        return _spans(self.buf, *self.span(name))

    def owners(self) -> np.ndarray:
        return _owners_c(self.buf, *self.span("users"), self.count)


def parse_all_c(lines: pa.Array, threads: int = 2) -> CColumns:
    """The C extractor over all ``lines`` at once: one set of arrays, filled by ``threads`` threads
    in disjoint ranges of ``BATCH`` lines (no per-batch arrays to concatenate afterwards)."""
    if _sstok is None:
        raise RuntimeError(
            "tcpmemlib.parsers._sstok is not built (pip install -e . with a compiler)"
        )
    n = len(lines)
    offs = np.ascontiguousarray(
        np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + n + 1]
    )
    buf = lines.buffers()[2]
    out = CColumns(
        buf,
        np.empty((len(C_INT_COLUMNS), n), dtype=np.int64),
        np.empty((2 * len(C_SPANS), n), dtype=np.int64),
        np.empty(n, dtype=np.int64),
        np.zeros(n, dtype=bool),
    )
    flags = out.slow.view(np.uint8)

    def run(start: int) -> None:
        end = min(start + BATCH, n)
        _sstok.columns(buf, offs, flags, out.ints, out.spans, out.count, start, end)

    starts = range(0, n, BATCH)
    if threads <= 1 or n <= BATCH:
        for start in starts:
            run(start)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(run, starts))
    return out


def parse_chunk(lines: pa.Array) -> Chunk:
    """The numpy engine on one chunk of logical lines (header/blank lines already removed)."""
    # The regexes run on the bytes (RE2 in Latin-1 mode). On UTF-8 text this matches exactly as on
    # the characters: every class in these patterns is ASCII or a negated set of ASCII bytes, and a
    # multi-byte character holds no ASCII byte.
    raw = lines.view(pa.large_binary())
    canon = pc.fill_null(pc.match_substring_regex(raw, GRAMMAR), False)
    slow = ~canon.to_numpy(zero_copy_only=False)
    cols, users = _columns(lines, slow)
    owners = _owners(users, slow)
    return Chunk(cols, owners, slow)


BATCH = 1 << 14  # lines per parse_chunk call / C range: keeps each kernel's arrays cache-warm


def parse_lines(lines: pa.Array, threads: int = 2) -> list[Chunk]:
    """The numpy engine: ``parse_chunk`` over batches of ``BATCH`` lines, ``threads`` at a time,
    in order (``parse_all_c`` is the C engine's counterpart)."""
    n = len(lines)
    slices = [lines.slice(i, BATCH) for i in range(0, n, BATCH)] or [lines]
    if threads <= 1 or len(slices) == 1:
        return [parse_chunk(s) for s in slices]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(parse_chunk, slices))
