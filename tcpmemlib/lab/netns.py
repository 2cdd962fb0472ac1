"""``LabNetns``: a network namespace of the lab's own, the container case (issue 12).

On a box whose servers run in containers, each server and its connections live in a network
namespace of their own: ``ss`` run on the host does not list them, while sockstat ``mem`` counts
them. ``LabNetns`` makes that case on loopback: ``ip netns add`` a namespace (a bind mount in
/run/netns, the way ``ip netns`` and many container runtimes keep one), bring its loopback up, and
give the command prefix that runs a lab process inside it (``nsenter --net=/run/netns/NAME``:
nsenter enters the namespace and execs the command, so the pid is the lab process's own; ``ip netns
exec`` would also remount /sys). Closing it deletes the namespace it created (``ip netns del``),
never one it did not create. Root only (``CAP_SYS_ADMIN``).

```python
with LabNetns() as ns, LabRun(connections=200, netns=ns) as lab:
    ns.name, ns.inode        # tcpmem-lab-<pid>, the inode tcpmem's netns frame shows
    lab.scenario("recv_backlog", bytes_per_conn=65536)
```

The namespace's sysctls (``net.ipv4.tcp_rmem``, ``tcp_wmem``: per namespace) start at the kernel
defaults, not the host's; ``sysctl`` sets them inside it without touching the host's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from tcpmemlib.errors import TcpmemError

__all__ = ["NETNS_DIR", "LabNetns", "NetnsError", "netns_inode"]

NETNS_DIR = "/run/netns"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class NetnsError(TcpmemError):
    """The lab's network namespace could not be made, entered or removed."""


def netns_inode(path: str) -> int:
    """The inode of the network namespace at ``path`` (a /run/netns entry or /proc/PID/ns/net):
    the number tcpmem's ``netns`` column and frame carry (``net:[INODE]``)."""
    try:
        return os.stat(path).st_ino
    except OSError as err:
        raise NetnsError(f"cannot read the network namespace {path}: {err}") from err


def _run(args: list[str], what: str, timeout_s: float = 30.0) -> None:
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NetnsError(f"{what}: {' '.join(args)}: {err}") from err
    if r.returncode != 0:
        raise NetnsError(f"{what}: {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")


class LabNetns:
    """A network namespace named ``name`` (default ``tcpmem-lab-<pid>``), loopback up.

    ``sysctls``: ``{"net.ipv4.tcp_wmem": "4096 16384 4194304", ...}`` set inside it (never on the
    host). An existing namespace of that name is an error: the lab deletes what it made only.
    """

    def __init__(self, name: str | None = None, sysctls: dict[str, str] | None = None) -> None:
        self.name = name or f"tcpmem-lab-{os.getpid()}"
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"not a usable network namespace name: {self.name!r}")
        self.sysctls = dict(sysctls or {})
        self.path = f"{NETNS_DIR}/{self.name}"
        self.inode = 0
        self._made = False

    def __enter__(self) -> LabNetns:
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self) -> None:
        """``ip netns add``, loopback up, the sysctls; ``inode`` is then known."""
        for tool in ("ip", "nsenter"):
            if shutil.which(tool) is None:
                raise NetnsError(
                    f"the lab's --netns needs the {tool} command (iproute2, util-linux)"
                )
        if os.geteuid() != 0:
            raise NetnsError("the lab's --netns needs root (ip netns add, nsenter: CAP_SYS_ADMIN)")
        if os.path.lexists(self.path):
            raise NetnsError(f"network namespace {self.name} exists already ({self.path})")
        _run(["ip", "netns", "add", self.name], "cannot create the lab's network namespace")
        self._made = True
        _run(["ip", "-n", self.name, "link", "set", "lo", "up"], "cannot bring its loopback up")
        for key, value in self.sysctls.items():
            _run(
                [*self.prefix(), "sysctl", "-q", "-w", f"{key}={value}"],
                f"cannot set {key} in {self.name}",
            )
        self.inode = netns_inode(self.path)

    def prefix(self) -> list[str]:
        """The command words that run a program inside the namespace (then its own argv)."""
        return ["nsenter", f"--net={self.path}"]

    def close(self) -> None:
        """Delete the namespace if this object made it (its sockets go with their processes)."""
        if self._made:
            self._made = False
            _run(["ip", "netns", "del", self.name], "cannot delete the lab's network namespace")
