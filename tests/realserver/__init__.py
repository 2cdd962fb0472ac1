"""Real server software on loopback for the test suite and the bundled sample.

Workloads built on Debian's ``redis-server`` and ``nginx`` (installed by ``make test`` through
``scripts/system-deps.sh``), each run as one bounded subprocess that takes its own collect.sh
snapshots and reads the ground truth (Redis ``CLIENT LIST``/``INFO memory``, ``/proc/PID/status``,
``ss -tanmp``, nginx ``stub_status``) right before and after each snapshot:

- ``procs``: processes with bounded lifetimes (stopped by pid, dying with their parent), named
  (comm); UTC timestamps; one collect.sh snapshot.
- ``netns``: a network namespace of our own, for per-namespace sysctls (``net.ipv4.tcp_wmem``).
- ``resp``: a minimal Redis protocol client (commands, replies; no dependency).
- ``truth``: ground-truth readers (ss lines, /proc RSS, CLIENT LIST, INFO).
- ``clients``: the client process (pub/sub subscribers, idle HTTP keep-alive clients).
- ``redis_run``, ``nginx_run``: the workload drivers (``python -m realserver.redis_run -h``).
- ``workloads``: what tests and scripts call: run a driver in a namespace of its own (Redis always,
  nginx when asked), after waiting for TCP memory headroom, and return its ``truth.json``.
- ``summary``: the ground-truth figures per snapshot (what data/README.md and the tests quote).
- ``loaded``: a capture loaded by tcpmemlib beside its ground truth, snapshot by snapshot (tests).

Everything but ``loaded`` uses only the standard library (``scripts/make-real-sample.py`` runs
without the venv).
"""
