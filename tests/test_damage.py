"""Random damage to a real capture never crashes, hangs, or costs an untouched snapshot's rows.

One real capture is made by collect.sh (4 snapshots, 15 loopback pairs held by 2 processes, so a
few dozen sockets). Every example copies it, damages the copy (``damage_helpers.Damage``: files
cut at any byte or inside their gzip member, garbage with and without NUL, emptied, removed,
unreadable, replaced by a FIFO, a device or a symlink out of the capture; snapshots duplicated,
symlinked or unreadable; stray FIFOs, sockets and directories) and loads it as user ``nobody``
(root reads a mode-000 file: the loads run unprivileged so that permissions are real), with and
without the cache, with ``workers=2`` and without. Every load runs in a loader process with a
timeout and an address-space limit (``damage_helpers.Loader``): a hang or a runaway read fails
the example instead of stopping the suite. The properties:

- only ``TcpmemError`` subclasses escape, and a capture that still has untouched snapshots loads;
- every damaged file is named in ``problems`` (snapshot and file) by a row the undamaged load does
  not have; a new snapshot (a duplicate or a symlink) is loaded or named;
- every untouched snapshot keeps exactly its rows in every frame: per snapshot (``ts``), the sorted
  rows of each frame are compared with the undamaged load (``owners`` joined to their socket's
  identity: ``sock_id`` is numbered across the load, so it is not compared);
- a load from the cache gives what the first load gave.
"""

from __future__ import annotations

import itertools
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from damage_helpers import (
    FILE_KINDS,
    PRISTINE_SNAPSHOTS,
    SNAPSHOT_KINDS,
    STRAY_KINDS,
    Damage,
    Loader,
    Result,
    apply_damage,
    chown_tree,
    finish_damage,
    named,
    new_problems,
    snapshot_dirs,
    world_dir,
)
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

N_SNAPSHOTS = PRISTINE_SNAPSHOTS  # the shared ``pristine`` capture (tests/conftest.py)
MAX_EXAMPLES = 50
SEED = 20261204  # fixed: every run damages the same way

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    path = world_dir("tcpmem-damage-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def loader() -> Iterator[Loader]:
    with Loader(user="nobody") as ld:
        yield ld


@pytest.fixture(scope="module")
def baseline(base: Path, pristine: Path, loader: Loader) -> dict[str, Any]:
    """The undamaged load (no cache, no workers): what every untouched snapshot must keep."""
    copy = base / "baseline"
    shutil.copytree(pristine, copy, symlinks=True)
    chown_tree(copy)
    res = loader.load(copy, cache=False, workers=1)
    assert res.ok, res.describe()
    summary = res.summary
    assert len(summary["snapshots"]) == N_SNAPSHOTS
    assert sum(summary["counts"]["sockets"].values()) > 4 * 30
    return summary


_counter = itertools.count()


def damaged_copy(base: Path, pristine: Path, damages: list[Damage]) -> tuple[Path, list[dict]]:
    work = base / f"ex-{next(_counter)}"
    cap, outside = work / "capture", work / "outside"
    shutil.copytree(pristine, cap, symlinks=True)
    outside.mkdir()
    names = [p.name for p in snapshot_dirs(cap)]
    # snapshot-level damage first: copying a snapshot that holds a FIFO would block the copy
    ordered = sorted(damages, key=lambda d: d.kind not in SNAPSHOT_KINDS)
    expect = [apply_damage(cap, d, outside, names) for d in ordered]
    chown_tree(work)
    for d in damages:
        finish_damage(cap, d, names)
    return cap, [e for e in expect if e]


class Hang(AssertionError):
    """A load that did not end within its timeout: the random test stops at once."""


def check(res: Result, expect: list[dict], damages: list[Damage], baseline: dict[str, Any]) -> None:
    if res.hung:
        raise Hang(f"{res.describe()}\ndamage: {damages}")
    assert not res.died, f"{res.describe()}\ndamage: {damages}"
    assert res.ok or res.tcpmem, f"a foreign exception escaped: {res.describe()}\ndamage: {damages}"
    assert res.ok, f"untouched snapshots remain, yet the load failed: {res.describe()}"
    summary = res.summary
    fresh = new_problems(res.problems, baseline["problems"])
    for e in expect:
        if e.get("new"):
            assert e["snapshot"] in summary["snapshots"] or named(fresh, e["snapshot"]), (
                f"new snapshot {e['snapshot']} neither loaded nor named in problems: {fresh}\n"
                f"damage: {damages}"
            )
        else:
            assert named(fresh, e["snapshot"], e["file"]), (
                f"damaged {e['snapshot']}/{e['file']} not named in problems: {fresh}\n"
                f"damage: {damages}"
            )
    touched = {e["snapshot"] for e in expect if not e.get("new")}
    for snap, ts in baseline["snapshots"].items():
        if snap in touched:
            continue
        for frame, digests in baseline["frames"].items():
            want = digests.get(ts)
            have = summary["frames"].get(frame, {}).get(ts)
            assert have == want, (
                f"untouched snapshot {snap}: frame {frame} changed "
                f"({baseline['counts'][frame].get(ts, 0)} rows before, "
                f"{summary['counts'].get(frame, {}).get(ts, 0)} after)\ndamage: {damages}"
            )
    if "*" in baseline["frames"].get("phases", {}):
        assert summary["frames"]["phases"].get("*") == baseline["frames"]["phases"]["*"]


def load_and_check(
    loader: Loader,
    cap: Path,
    expect: list[dict],
    damages: list[Damage],
    baseline: dict[str, Any],
    cache: bool,
    workers: int,
) -> None:
    res = loader.load(cap, cache=cache, workers=workers)
    check(res, expect, damages, baseline)
    if cache:  # the second load reads the cache entry the first one wrote
        again = loader.load(cap, cache=True, workers=workers)
        check(again, expect, damages, baseline)
        assert again.summary["frames"] == res.summary["frames"], "the cached load differs"
        assert sorted(map(str, again.problems)) == sorted(map(str, res.problems)), (
            "the cached load's problems differ"
        )


# --- one damage of each kind, on the files that matter most


TARGETS = ("ss_tcp.txt.gz", "meta.txt", "sockstat.txt")
GARBAGE = {"garbage_nul": b"\x00\x17junk\x00", "garbage_text": b"junk \xff\xfe text"}
ONE_DAMAGE = [
    *(Damage(k, 1, f, 0.5, GARBAGE.get(k, b"")) for k in FILE_KINDS for f in TARGETS),
    *(Damage(k, 1) for k in SNAPSHOT_KINDS),
    *(Damage(k, s) for k, s in (("stray_fifo", 1), ("stray_fifo", -1), ("stray_socket", 1))),
    Damage("stray_dir", -1),
]


@pytest.mark.parametrize("damage", ONE_DAMAGE, ids=lambda d: f"{d.kind}-{d.file or d.snap}")
def test_one_damage(
    damage: Damage, base: Path, pristine: Path, loader: Loader, baseline: dict[str, Any]
) -> None:
    cap, expect = damaged_copy(base, pristine, [damage])
    try:
        load_and_check(loader, cap, expect, [damage], baseline, cache=False, workers=1)
    finally:
        shutil.rmtree(cap.parent, ignore_errors=True)


# --- random damage


def damage_plan(rng: random.Random, files: list[str]) -> list[Damage]:
    """1-3 damages on at most 2 of the 4 snapshots (so untouched ones remain), each file at most
    once, each snapshot at most one snapshot-level damage. Drawn from a ``random.Random`` that
    hypothesis seeds: kinds, files and cut positions come out uniform (hypothesis' own
    strategies favour the simplest values: cuts at byte 0, no cache, no workers)."""
    snaps = rng.sample(range(N_SNAPSHOTS), rng.randint(1, 2))
    plan: list[Damage] = []
    used: set[tuple[int, str]] = set()
    for _ in range(rng.randint(1, 3)):
        snap = rng.choice(snaps)
        kind = rng.choice((*FILE_KINDS, *SNAPSHOT_KINDS, *STRAY_KINDS))
        if kind in SNAPSHOT_KINDS:
            if (snap, "") not in used:
                used.add((snap, ""))
                plan.append(Damage(kind, snap))
        elif kind in STRAY_KINDS:
            where = rng.choice((snap, -1))
            if (where, kind) not in used:
                used.add((where, kind))
                plan.append(Damage(kind, where))
        else:
            name = rng.choice(files)
            if (snap, name) in used:
                continue
            used.add((snap, name))
            data = b""
            if kind == "garbage_nul":
                data = bytearray(rng.randbytes(rng.randint(0, 40)))
                data.insert(rng.randint(0, len(data)), 0)
            elif kind == "garbage_text":
                data = bytearray(rng.randint(1, 255) for _ in range(rng.randint(1, 40)))
            plan.append(Damage(kind, snap, name, rng.random(), bytes(data)))
    return plan


@pytest.fixture(scope="module")
def files(pristine: Path) -> list[str]:
    return sorted(p.name for p in snapshot_dirs(pristine)[0].iterdir())


@pytest.mark.slow
def test_random_damage(
    base: Path, pristine: Path, loader: Loader, baseline: dict[str, Any], files: list[str]
) -> None:
    """Every example runs (failures are collected, so one run lists every failing example and
    the run time stays the same whether the loader is fixed or not); a hang stops the test."""
    failures: list[str] = []

    @seed(SEED)
    @settings(
        database=None,
        deadline=None,
        max_examples=MAX_EXAMPLES,
        phases=(Phase.generate,),  # no shrinking: an example may be a 2-minute hang
        suppress_health_check=list(HealthCheck),
    )
    @given(rng=st.randoms(use_true_random=True))
    def run(rng: random.Random) -> None:
        plan = damage_plan(rng, files)
        cache = rng.random() < 0.5
        workers = 2 if rng.random() < 0.25 else 1  # workers=2 costs ~1.5 s a load
        cap, expect = damaged_copy(base, pristine, plan)
        try:
            load_and_check(loader, cap, expect, plan, baseline, cache=cache, workers=workers)
        except Hang:
            raise
        except AssertionError as err:
            failures.append(
                f"cache={cache} workers={workers}: {str(err).splitlines()[0]}\n  {plan}"
            )
        finally:
            shutil.rmtree(cap.parent, ignore_errors=True)

    run()
    assert not failures, f"{len(failures)} of {MAX_EXAMPLES} damaged copies failed:\n" + "\n".join(
        failures
    )
