#!/usr/bin/env python3
"""Regenerate the real-server sample captures in data/real/ (see data/README.md, "Real servers").

    sudo python3 scripts/make-real-sample.py [-o data/real/] [--subscribers 1000] [--slow 200]

Runs, one after the other, with the repository's collect.sh (about 2 minutes; root: network
namespaces; needs redis-server and nginx, installed by `make system-deps`):

1. ``redis-before.tar.gz``: Debian redis-server, ``--subscribers`` pub/sub subscribers of which
   ``--slow`` never read, 6 MiB published to each, in a network namespace of its own with
   ``net.ipv4.tcp_wmem = 4096 16384 4194304`` (the kernel default, set explicitly);
2. ``redis-after.tar.gz``: the same with ``tcp_wmem`` max lowered to 256 KiB;
3. ``nginx-idle.tar.gz``: Debian nginx, 2 workers, ``--clients`` idle keep-alive clients, in a
   namespace of its own (so the capture holds only its sockets).

Beside each bundle, ``<name>.truth.json``: the run's description (versions, kernel, pids, ports,
phases, the collect.sh sha256) and the ground truth per snapshot (``realserver.summary`` figures read
right after each snapshot: CLIENT LIST omem, INFO used_memory, /proc VmRSS, ss skmem; nginx: each
worker's connections, stub_status). The bundles are written only when every run succeeded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from realserver import summary  # noqa: E402  (tests/ is not a package on the path by default)
from realserver.workloads import DEFAULT_WMEM, LOW_WMEM, run_nginx, run_redis  # noqa: E402

DROP = ("snapshots", "fast_ports", "client_ports")  # per-snapshot detail: kept as summary rows


def describe(truth: dict[str, Any], collect_sha: str, commit: str) -> dict[str, Any]:
    meta = {k: v for k, v in truth.items() if k not in DROP}
    meta["collect_sh_sha256"] = collect_sha
    meta["repo_commit"] = commit
    return {"run": meta, "snapshots": summary.rows(truth)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", type=Path, default=REPO / "data" / "real")
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument(
        "--keep",
        type=Path,
        help="also keep the work directories here (capture directories, server configs and logs, "
        "the full truth.json: every socket and client before and after each snapshot)",
    )
    args = ap.parse_args(argv)
    if args.keep is not None and args.keep.exists():
        ap.error(f"{args.keep} exists")
    collect_sha = hashlib.sha256((REPO / "collect.sh").read_bytes()).hexdigest()
    commit = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    made: list[tuple[Path, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="tcpmem-real-sample-") as tmp:
        work = Path(tmp)
        for name, wmem in (("redis-before", DEFAULT_WMEM), ("redis-after", LOW_WMEM)):
            truth = run_redis(
                work / name,
                wmem,
                subscribers=args.subscribers,
                slow=args.slow,
                per_sub_mib=6,
                rate_mib_s=0.75,
                snapshots=(3, 5, 3),
                load_interval_s=2.0,
                name=name,
                bundle=True,
                timeout_s=400,
            )
            made.append((work / name / f"{name}.tar.gz", describe(truth, collect_sha, commit)))
        name = "nginx-idle"
        truth = run_nginx(
            work / name,
            clients=args.clients,
            snapshots=(2, 6, 2),
            name=name,
            bundle=True,
            netns=True,
            timeout_s=200,
        )
        made.append((work / name / f"{name}.tar.gz", describe(truth, collect_sha, commit)))
        args.out.mkdir(parents=True, exist_ok=True)
        for bundle, described in made:
            shutil.copyfile(bundle, args.out / bundle.name)
            stem = bundle.name.removesuffix(".tar.gz")
            (args.out / f"{stem}.truth.json").write_text(json.dumps(described, indent=1) + "\n")
            size = (args.out / bundle.name).stat().st_size
            print(f"{args.out / bundle.name}: {size / 1e6:.2f} MB", file=sys.stderr)
        if args.keep is not None:
            shutil.copytree(work, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
