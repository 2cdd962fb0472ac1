"""A network namespace of our own, for the per-namespace sysctls (``net.ipv4.tcp_wmem``): the host's
sysctls are never changed. Requires root (``ip netns add``) and util-linux ``nsenter``.

Inside a namespace, /proc/sys/net shows that namespace's per-namespace sysctls (``tcp_wmem``,
``tcp_rmem``); the global ones (``net.ipv4.tcp_mem``, ``udp_mem``, ``net.core.mem_pcpu_rsv``) are
absent there, and /proc/net/sockstat's ``mem`` stays box-wide while its ``inuse`` counts are the
namespace's own: collect.sh records exactly that."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


class NetNs:
    """``with NetNs(sysctls={"net.ipv4.tcp_wmem": "4096 16384 262144"}) as ns:`` creates the
    namespace, brings loopback up, sets the sysctls inside it; ``ns.prefix`` runs a command in it;
    the namespace is deleted on exit (its processes must be stopped first)."""

    def __init__(self, name: str | None = None, sysctls: dict[str, str] | None = None) -> None:
        self.name = name or f"tcpmem-rs-{os.getpid()}"
        self.sysctls = dict(sysctls or {})

    @property
    def prefix(self) -> list[str]:
        """Run a command in the namespace. ``nsenter --net`` rather than ``ip netns exec``: the latter
        also remounts /sys, which hides the cgroup hierarchy from collect.sh and ss."""
        return ["nsenter", f"--net=/run/netns/{self.name}"]

    def sysctl(self, key: str) -> str:
        path = "/proc/sys/" + key.replace(".", "/")
        out = subprocess.run(
            [*self.prefix, "cat", path], capture_output=True, text=True, check=True
        )
        return " ".join(out.stdout.split())

    def __enter__(self) -> NetNs:
        if Path(f"/run/netns/{self.name}").exists():
            raise RuntimeError(f"network namespace {self.name} already exists")
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        try:
            subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
            for key, value in self.sysctls.items():
                subprocess.run(
                    [*self.prefix, "sysctl", "-q", "-w", f"{key}={value}"],
                    check=True,
                    capture_output=True,
                )
                got = self.sysctl(key)
                if got != " ".join(value.split()):
                    raise RuntimeError(f"{key} in {self.name} is {got!r}, wanted {value!r}")
        except BaseException:
            self.delete()
            raise
        return self

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], check=False, capture_output=True)

    def __exit__(self, *exc: object) -> None:
        self.delete()
