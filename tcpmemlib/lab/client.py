"""The lab's client process (comm ``tcpmem-client``): opens N connections to the server.

Run by ``LabRun``: ``python -m tcpmemlib.lab.client --address 127.0.0.1 --port P --connections N``;
it prints ``ok {...}`` and then obeys the line protocol of ``tcpmemlib.lab.worker``.
"""

from __future__ import annotations

import sys

from tcpmemlib.lab.worker import main

if __name__ == "__main__":
    sys.exit(main("client"))
