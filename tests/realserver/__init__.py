"""Real server software on loopback for the test suite and the bundled sample.

Workloads built on Debian's ``redis-server`` and ``nginx`` (installed by ``make test`` through
``scripts/system-deps.sh``), each run as one bounded subprocess that takes its own collect.sh
snapshots and reads the ground truth (Redis ``CLIENT LIST``/``INFO memory``, ``/proc/PID/status``,
``ss -tanmp``, nginx ``stub_status``) right before and after each snapshot:

- ``procs``: processes with bounded lifetimes, stopped by pid; UTC timestamps.
- ``netns``: a network namespace of our own, for per-namespace sysctls (``net.ipv4.tcp_wmem``).
- ``resp``: a minimal Redis protocol client (commands, replies; no dependency).
- ``truth``: ground-truth readers (ss lines, /proc RSS, CLIENT LIST, INFO).
- ``clients``: the client process (pub/sub subscribers, idle HTTP keep-alive clients).
- ``redis_run``, ``nginx_run``: the workload drivers (``python -m realserver.redis_run -h``).
- ``workloads``: what tests and scripts call: run a driver (in a namespace when asked) and load its
  ``truth.json``.
"""
