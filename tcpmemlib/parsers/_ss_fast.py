"""Vectorized ``ss`` parsing with pyarrow string kernels (RE2): the hot path of ``read_ss``.

No Python loop per line: the text is cut into lines by numpy (continuation lines, which start with a
TAB, stay inside their socket's line), and each field is pulled out of all lines at once with
``pyarrow.compute`` kernels, in two threads (the kernels release the GIL).

The fast path only vouches for *canonical* lines: lines that match ``GRAMMAR``, a whole-line regular
expression of the tokens ss prints (every token known and well formed, process names without ``:``
or ``"``). Every other line is flagged ``slow`` and parsed by the reference per-line parser
``_ss_line.parse_line``, so both paths give the same answer (the tests check this on every fixture
line and on mutated lines).
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tcpmemlib.parsers import _ss_line as L

__all__ = ["GATES", "Chunk", "parse_chunk", "parse_lines", "split_lines"]

WS = "[ \\t\\n\\f\\r]"
NWS = "[^ \\t\\n\\f\\r]"
NUM = "[0-9]{1,18}"
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
_OWNER = f'\\("[^:"]*",pid={NUM},fd={NUM}\\)'
_ADDR = "(?:\\[[^\\]\\s]*\\](?:%[^:\\s]*)?:[^:\\]\\s]+|[^\\s\\[\\]]+:[^:\\]\\s]+)"


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
_TIMER = "timer:\\([^ \\t\\n\\f\\r)]*\\)"
_HEAD = f"^ *(?:[a-z][a-z0-9_]* +)?[A-Z][A-Z0-9_-]* +{NUM} +{NUM} +{_ADDR} +{_ADDR}"
_REST = f"(?:{SEP}{_OTHER})*"
# Whole-line grammar of a canonical socket line: the blocks in the order ss prints them (timer right
# after the owners, skmem or the old mem at most once, between the details and the -i blocks).
GRAMMAR = (
    f"{_HEAD}(?: +users:\\({_OWNER}(?:,{_OWNER})*\\))?(?:{SEP}{_TIMER})?{_REST}"
    f"(?:{SEP}{_DET}{_REST})?(?:{SEP}(?:{_SKMEM}|{_MEM}){_REST})?"
    f"(?:{SEP}{_G1}{_REST})?(?:{SEP}{_G3}{_REST})?{WS}*$"
)
HEAD_A = (
    f"^ *(?:(?P<netid>[a-z][a-z0-9_]*) +)?(?P<state>[A-Z][A-Z0-9_-]*) +(?P<recv_q>{NUM}) +"
    f"(?P<send_q>{NUM})"
)
HEAD_B = (
    f"^ *(?:[a-z][a-z0-9_]* +)?[A-Z][A-Z0-9_-]* +{NUM} +{NUM} +(?P<local>{NWS}+) +(?P<peer>{NWS}+)"
    f"(?: +users:\\((?P<users>{_OWNER}(?:,{_OWNER})*)\\))?"
)
X_DET_NO_UID = " " + _named(_DET.replace(f"(?:uid:({NUM}) )?", ""), _DET_NAMES[1:])
# The G1 block in two cheaper passes (fewer groups each): in a canonical line mss/cwnd/bytes_* occur
# only in that block, at most once, so these find exactly what the block holds.
X_G1A = f" mss:(?P<mss>{NUM}) (?:pmtu:{_V} )?rcvmss:(?P<rcvmss>{NUM}) advmss:(?P<advmss>{NUM}) "
X_G1B = (
    f" cwnd:(?P<cwnd>{NUM})(?: (?:ssthresh:{_V}|bytes_(?:sent:(?P<bytes_sent>{NUM})|"
    f"acked:(?P<bytes_acked>{NUM})|re(?:trans:{_V}|ceived:(?P<bytes_received>{NUM})))))*"
)
X_G3 = " " + _named(_G3, _G3_NAMES)
X_SKMEM = "^" + _named(_SKMEM, _SKMEM_NAMES).removeprefix("skmem:\\(")
X_MEM = " " + _named(_MEM, ["r", "w", "f", "t"])
X_UID = f" uid:(?P<v>{NUM})"
X_RTT = " rtt:(?P<v>[0-9]+(?:\\.[0-9]+)?)/"
X_TIMER = " timer:\\((?P<v>[^ \\t\\n\\f\\r)]*)\\)"
OWNER_PIECE = f'^\\(?"(?P<comm>[^"]*)",pid=(?P<pid>{NUM}),fd=(?P<fd>{NUM})\\)?$'
SKIP = f"^{WS}*$|^{WS}*(?:Netid{WS}+)?State{WS}+Recv-Q{WS}+Send-Q{WS}"

# Substrings whose absence from the whole text lets a kernel be skipped.
# Only for the costly kernels: an absent gate costs one scan of the text, about a cheap kernel.
GATES = ("ino:", "skmem:(", "cwnd:", "rcv_s")


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
    comm = pc.struct_field(parts, "comm").to_pylist()
    # (pieces that did not parse are null here; their rows went to the per-line parser)
    pid = pc.fill_null(pc.cast(pc.struct_field(parts, "pid"), pa.int64()), 0).to_numpy().tolist()
    fd = pc.fill_null(pc.cast(pc.struct_field(parts, "fd"), pa.int64()), 0).to_numpy().tolist()
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


def _split_at_skmem(lines: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(text before " skmem:(", text after it or null): later kernels scan shorter strings."""
    parts = pc.split_pattern(lines, " skmem:(", max_splits=1)
    flat = parts.flatten()
    offsets = parts.offsets.to_numpy()[:-1] if len(parts) else np.zeros(0, dtype=np.int64)
    counts = pc.fill_null(pc.list_value_length(parts), 0).to_numpy(zero_copy_only=False)
    first = pa.array(offsets, mask=counts == 0)
    second = pa.array(offsets + 1, mask=counts < 2)
    return flat.take(first), flat.take(second)


def _fields(lines: pa.Array, pattern: str, names: list[str]) -> dict[str, pa.Array]:
    m = pc.extract_regex(lines, pattern)
    return {name: pc.struct_field(m, name) for name in names}


def parse_chunk(lines: pa.Array, text_has: frozenset[str]) -> Chunk:
    """Parse one chunk of logical lines (header/blank lines already removed)."""
    canon = pc.fill_null(pc.match_substring_regex(lines, GRAMMAR), False)
    slow = ~canon.to_numpy(zero_copy_only=False)
    good = lines if not slow.any() else pc.if_else(canon, lines, pa.scalar("", lines.type))
    cols: dict[str, pa.Array] = {}
    a = _fields(good, HEAD_A, ["netid", "state", "recv_q", "send_q"])
    cols["netid"] = _nonempty(a["netid"])
    cols["state"] = a["state"]
    cols["recv_q"] = _ints(a["recv_q"])
    cols["send_q"] = _ints(a["send_q"])
    pre, post = _split_at_skmem(good)
    b = _fields(pre, HEAD_B, ["local", "peer", "users"])
    for side in ("local", "peer"):
        cols[f"{side}_address"], cols[f"{side}_port"] = _address(b[side])
    if "ino:" in text_has:
        for name, arr in _fields(pre, X_DET_NO_UID, _DET_NAMES[1:]).items():
            cols[name] = _ints(arr) if name == "inode" else _nonempty(arr)
    cols["uid"] = _ints(_group(pre, X_UID))
    cols["rtt_ms"] = pc.cast(_nonempty(_group(good, X_RTT)), pa.float64())
    cols["timer"] = _group(pre, X_TIMER)
    tail = pc.coalesce(post, pre)  # the -i blocks follow skmem, or are in the line if it has none
    if "cwnd:" in text_has:
        for name, arr in _fields(tail, X_G1A, _G1_NAMES[:3]).items():
            cols[name] = _ints(arr)
        for name, arr in _fields(tail, X_G1B, _G1_NAMES[3:]).items():
            cols[name] = _ints(arr)
    if "rcv_s" in text_has:
        g3 = {k: _ints(v) for k, v in _fields(tail, X_G3, _G3_NAMES).items()}
        g3["rcv_ssthresh"] = pc.coalesce(g3["rcv_ssthresh"], g3.pop("rcv_ssthresh2"))
        cols.update(g3)
    if "skmem:(" in text_has:
        for name, arr in _fields(post, X_SKMEM, _SKMEM_NAMES).items():
            cols[f"skmem_{name}"] = _ints(arr)
    for name, arr in _fields(pre, X_MEM, ["r", "w", "f", "t"]).items():
        old, new = cols.get(f"skmem_{name}"), _ints(arr)
        cols[f"skmem_{name}"] = new if old is None else pc.coalesce(old, new)
    owners = _owners(b["users"], slow)
    return Chunk(cols, owners, slow)


BATCH = 1 << 16  # lines per parse_chunk call: keeps each kernel's arrays small and cache-warm


def parse_lines(lines: pa.Array, text_has: frozenset[str], threads: int = 2) -> list[Chunk]:
    """``parse_chunk`` over batches of ``BATCH`` lines, ``threads`` at a time, in order."""
    n = len(lines)
    slices = [lines.slice(i, BATCH) for i in range(0, n, BATCH)] or [lines]
    if threads <= 1 or len(slices) == 1:
        return [parse_chunk(s, text_has) for s in slices]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda s: parse_chunk(s, text_has), slices))
