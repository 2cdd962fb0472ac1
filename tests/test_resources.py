"""tcpmemlib.resources: the checkout's notebooks and collect.sh, or the copies an installed package
carries in tcpmemlib/share/. The installed layouts are made here by copying the package directory
out of the checkout (tests/test_packaging.py installs a real wheel)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tcpmemlib import resources

ROOT = Path(__file__).resolve().parents[1]
SHOW = (
    "import tcpmemlib.resources as r\n"
    "print(r.checkout_dir())\n"
    "for f in (r.notebook_dir, r.collector_path):\n"
    "    try:\n"
    "        print(f())\n"
    "    except r.ResourceError as err:\n"
    "        print('ResourceError:', err)\n"
)


def _package_copy(site: Path, share: bool) -> Path:
    """tcpmemlib copied into ``site`` (outside any checkout), with or without its share/ files."""
    pkg = site / "tcpmemlib"
    shutil.copytree(
        ROOT / "tcpmemlib", pkg, ignore=shutil.ignore_patterns("__pycache__", "share", "*.so")
    )
    if share:
        (pkg / "share" / "notebooks").mkdir(parents=True)
        shutil.copy2(ROOT / "collect.sh", pkg / "share" / "collect.sh")
        for nb in (ROOT / "notebooks").glob("*.ipynb"):
            shutil.copy2(nb, pkg / "share" / "notebooks" / nb.name)
    return pkg


def _show(site: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout.splitlines()


def test_checkout_gives_the_repository_files():
    assert resources.checkout_dir() == ROOT
    assert resources.notebook_dir() == ROOT / "notebooks"
    assert resources.collector_path() == ROOT / "collect.sh"


def test_installed_layout_gives_the_share_copies(tmp_path):
    pkg = _package_copy(tmp_path, share=True)
    assert _show(tmp_path) == [
        "None",
        str(pkg / "share" / "notebooks"),
        str(pkg / "share" / "collect.sh"),
    ]


def test_installed_layout_without_share_names_the_places_looked_in(tmp_path):
    pkg = _package_copy(tmp_path, share=False)
    checkout, notebooks, collector = _show(tmp_path)
    assert checkout == "None"
    assert notebooks.startswith("ResourceError: no report notebooks in ")
    assert str(pkg / "share" / "notebooks") in notebooks
    assert collector == f"ResourceError: collect.sh not found in {pkg / 'share' / 'collect.sh'}"


def test_a_directory_that_only_looks_like_a_checkout_half_way_is_not_one(tmp_path):
    """pyproject.toml beside an installed package (a project vendoring it) is not a checkout
    unless collect.sh and notebooks/ are there too: the share copies are used."""
    pkg = _package_copy(tmp_path, share=True)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'other'\n")
    assert _show(tmp_path)[:2] == ["None", str(pkg / "share" / "notebooks")]
