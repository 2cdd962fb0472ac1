"""What a page of new memory costs on this machine: first touch, then touch again.

Run: `.venv/bin/python bench/bench_vm_pages.py [--gib N]`

Maps N GiB of anonymous memory and writes one byte per 4 KiB page, twice (unmapped in between),
printing microseconds per page for each GiB. On a VM whose balloon reports free pages to the host,
the first pass pays the host's fault for every page the guest has not touched lately (10-50 us);
the second, the guest's own fault only (~1 us). A load's time moves with it (bench/README.md).
"""

from __future__ import annotations

import argparse
import mmap
import time

PAGE = 4096
GIB = 1 << 30


def touch(gib: int) -> list[float]:
    """Microseconds per page for each GiB of a fresh mapping of ``gib`` GiB."""
    area = mmap.mmap(-1, gib * GIB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    out = []
    try:
        for k in range(gib):
            start = time.perf_counter()
            for offset in range(k * GIB, (k + 1) * GIB, PAGE):
                area[offset] = 1
            out.append((time.perf_counter() - start) / (GIB // PAGE) * 1e6)
    finally:
        area.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--gib", type=int, default=4, help="GiB to map and touch (keep it under free RAM)"
    )
    args = ap.parse_args()
    for label in ("first touch", "touched again"):
        print(
            f"{label}: " + ", ".join(f"{us:.2f}" for us in touch(args.gib)) + " us per page, by GiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
