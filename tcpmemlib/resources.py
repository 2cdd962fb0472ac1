"""The files tcpmem ships besides its code: the report notebooks and the collector, collect.sh.

In a source checkout (``make``, an editable install, ``PYTHONPATH=.``) they are the repository's own
``notebooks/`` and ``collect.sh``, so an edited notebook is used at once. An installed wheel carries
copies in ``tcpmemlib/share/`` (setup.py's build_py puts them there at build time; they are not in the
repository). The checkout is recognised by ``pyproject.toml``, ``collect.sh`` and ``notebooks/`` beside
the package directory, and wins when both exist.

``notebook_dir()`` and ``collector_path()`` return the path or raise ``ResourceError`` naming every
place looked in (a broken install), never a path that does not exist.
"""

from __future__ import annotations

from pathlib import Path

from tcpmemlib.errors import ResourceError

__all__ = [
    "PACKAGE_DIR",
    "SHARE_DIR",
    "ResourceError",
    "checkout_dir",
    "collector_path",
    "notebook_dir",
]

PACKAGE_DIR = Path(__file__).resolve().parent
SHARE_DIR = PACKAGE_DIR / "share"


def checkout_dir() -> Path | None:
    """The source checkout this package is imported from, or None for an installed package."""
    root = PACKAGE_DIR.parent
    markers = (root / "pyproject.toml", root / "collect.sh")
    if all(p.is_file() for p in markers) and (root / "notebooks").is_dir():
        return root
    return None


def _candidates(rel: str) -> list[Path]:
    root = checkout_dir()
    return [*([root / rel] if root else []), SHARE_DIR / rel]


def notebook_dir() -> Path:
    """The directory holding the report notebooks (``*.ipynb``)."""
    places = _candidates("notebooks")
    for place in places:
        if place.is_dir() and any(place.glob("*.ipynb")):
            return place
    raise ResourceError(
        "no report notebooks in " + " or ".join(map(str, places)) + " (a broken install?)"
    )


def collector_path() -> Path:
    """The collector script, collect.sh."""
    places = _candidates("collect.sh")
    for place in places:
        if place.is_file():
            return place
    raise ResourceError("collect.sh not found in " + " or ".join(map(str, places)))
