"""The lab's server process (comm ``tcpmem-server``): listens and accepts N connections.

Run by ``LabRun``: ``python -m tcpmemlib.lab.server --address 127.0.0.1 --connections N``; it prints
``ok {"port": P, ...}`` and then obeys the line protocol of ``tcpmemlib.lab.worker``.
"""

from __future__ import annotations

import sys

from tcpmemlib.lab.worker import main

if __name__ == "__main__":
    sys.exit(main("server"))
