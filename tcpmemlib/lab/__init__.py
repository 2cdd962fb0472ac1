"""The lab: reproduce the operator's problem (N persistent TCP connections) on loopback.

``LabRun`` starts a server process (``tcpmem-server``) and a client process (``tcpmem-client``)
holding N connections on 127.0.0.1 or ::1 and switches them between scenarios (idle, trickle,
recv_backlog, send_backlog, drained, tuned). ``python -m tcpmemlib.lab`` is its command line
(``run`` holds a scenario; ``experiment`` records a capture with collect.sh through every phase).
``LabNetns`` (``--netns``) runs both inside a network namespace the lab creates: the container case.
"""

from __future__ import annotations

from tcpmemlib.lab.control import SCENARIOS, LabError, LabRun
from tcpmemlib.lab.netns import LabNetns, NetnsError

__all__ = ["SCENARIOS", "LabError", "LabNetns", "LabRun", "NetnsError"]
