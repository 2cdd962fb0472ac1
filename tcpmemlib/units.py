"""Unit conversion: the one place where kB, pages and bytes meet.

The page size always comes from the snapshot's own ``meta.txt`` (``page_size``, from
``getconf PAGESIZE``): arm64 and ppc64 boxes use 16 KiB or 64 KiB pages, so 4096 is never assumed.
``/proc`` "kB" means KiB (1024 bytes): ``/proc/meminfo`` and ``ps`` rss/vsz.
"""

from __future__ import annotations

from typing import TypeVar

import pandas as pd

__all__ = ["KIB", "check_page_size", "kib_to_bytes", "pages_to_bytes"]

KIB = 1024

T = TypeVar("T", int, pd.Series)


def check_page_size(page_size_bytes: object) -> int:
    """Return the page size as an int, or raise ``ValueError`` if it is not a power of two >= 512."""
    if page_size_bytes is None or page_size_bytes is pd.NA:
        raise ValueError("page size unknown (meta.txt has no page_size)")
    size = int(page_size_bytes)  # type: ignore[call-overload]
    if size < 512 or size & (size - 1):
        raise ValueError(f"implausible page size {size} (not a power of two >= 512)")
    return size


def kib_to_bytes(value: T) -> T:
    """KiB ("kB" in /proc, KiB in ps) -> bytes. Works on ints and nullable Series (NA stays NA)."""
    return value * KIB


def pages_to_bytes(pages: T, page_size_bytes: int | pd.Series) -> T:
    """Pages -> bytes with the snapshot's page size (see ``check_page_size``).

    ``page_size_bytes`` is one size, or a Series aligned with ``pages`` (one size per row, e.g. each
    row's snapshot page size); every size is checked.
    """
    if isinstance(page_size_bytes, pd.Series):
        for size in page_size_bytes.dropna().unique():
            check_page_size(size)
        sizes = page_size_bytes.astype("Int64").to_numpy()
        return (pages * sizes).astype("Int64") if isinstance(pages, pd.Series) else pages * sizes
    return pages * check_page_size(page_size_bytes)
