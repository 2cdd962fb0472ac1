"""The frames of a ``Capture``: their names and the schemas the loader itself defines.

Each parser module's docstring is the schema of the columns it parses (docs/design.md §2). This
module holds what belongs to no single parser: the list of frames, ``problems``, the ``meta``
columns the loader adds, ``owners``, and the empty ``sockets`` frame with its dtypes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tcpmemlib.parsers import meta, ss
from tcpmemlib.tables import EMPTY_STR_CATEGORY, host_categorical

__all__ = [
    "FRAMES",
    "META_COLUMNS",
    "PROBLEMS_SCHEMA",
    "SEVERITIES",
    "SEVERITY_DTYPE",
    "SOCKET_CATEGORIES",
    "SOCKET_ROW_FRAMES",
    "socket_rows_template",
    "sockets_template",
]

# Every frame of a Capture, in the order the design doc lists them.
FRAMES: tuple[str, ...] = (
    "sockets",
    "owners",
    "sockstat",
    "meminfo",
    "processes",
    "slab",
    "slab_aliases",
    "protocols",
    "netstat",
    "zoneinfo",
    "sysctl",
    "cgroups",
    "proc_cgroups",
    "netns",
    "meta",
    "phases",
    "problems",
)
# The frames made of socket rows: kept in memory or on disk (tcpmemlib.sockstore).
SOCKET_ROW_FRAMES = ("sockets", "owners")

PROBLEMS_SCHEMA: dict[str, str] = {
    "snapshot": "string",
    "file": "string",
    "line": "Int64",
    "reason": "string",
    "severity": "category",
}
SEVERITIES = ("error", "warning", "collector")
SEVERITY_DTYPE = pd.CategoricalDtype(pd.Index(SEVERITIES, dtype="str"))
META_COLUMNS: dict[str, str] = {
    "snapshot": "string",
    **{c: d for c, d in meta.SCHEMA.items() if c != "hostname"},
    "phase": "string",
}

# Every read_ss string column, kept as a category in ``Capture.sockets``: the same few addresses,
# ports, cookies and cgroup paths repeat in every snapshot (2-4 bytes a row instead of ~15).
SOCKET_CATEGORIES: tuple[str, ...] = ss.STRING_COLUMNS


def socket_rows_template() -> pd.DataFrame:
    """The empty ``read_ss`` frame as the loader keeps it: ``SOCKET_CATEGORIES`` and ``netid``
    as categories with ``str`` categories."""
    frame = ss.empty_frame(SOCKET_CATEGORIES)
    frame["netid"] = frame["netid"].astype(EMPTY_STR_CATEGORY)
    frame["netns"] = pd.Series([], dtype="Int64")  # the socket's network namespace (inode)
    return frame


def sockets_template(host_dtype: Any = None) -> pd.DataFrame:
    """The empty ``Capture.sockets`` frame: every column with its dtype (``host_dtype``: the
    capture's host categories)."""
    frame = socket_rows_template()
    frame.insert(0, "sock_id", np.zeros(0, dtype=np.int64))
    host = pd.Series([], dtype=host_dtype or host_categorical(pd.Series([])).dtype)
    frame.insert(0, "host", host)
    frame.insert(0, "ts", pd.Series([], dtype="datetime64[ns, UTC]"))
    return frame
