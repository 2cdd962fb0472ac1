"""tcpmem: where does a Linux box's TCP socket memory go?

Public API (see docs/design.md for the frames and results):

- ``read_ss(source)``: ``ss`` output (path or text) -> one row per socket.
- ``load_capture(path)``: a collect.sh directory or ``.tar.gz`` bundle -> ``Capture`` of tidy frames.
- ``where_is_it``, ``by_process``, ``reconcile``, ``idle_cost``, ``growth``, ``compare``,
  ``pressure``: the analyses behind the three questions; ``by_namespace``, ``by_container``: the
  same sockets per network namespace and per container (``tcpmemlib.analysis.namespaces``).

Names are imported lazily so that ``import tcpmemlib`` stays cheap and one broken module does not
hide the others.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "TcpmemError": "tcpmemlib.errors",
    "ParseError": "tcpmemlib.errors",
    "CaptureError": "tcpmemlib.errors",
    "read_ss": "tcpmemlib.parsers.ss",
    "load_capture": "tcpmemlib.capture",
    "Capture": "tcpmemlib.capture",
    "Verdict": "tcpmemlib.analysis.verdict",
    "where_is_it": "tcpmemlib.analysis.where",
    "by_process": "tcpmemlib.analysis.process",
    "top_process": "tcpmemlib.analysis.process",
    "reconcile": "tcpmemlib.analysis.reconcile",
    "by_namespace": "tcpmemlib.analysis.namespaces",
    "by_container": "tcpmemlib.analysis.namespaces",
    "idle_cost": "tcpmemlib.analysis.idle",
    "growth": "tcpmemlib.analysis.growth",
    "compare": "tcpmemlib.analysis.compare",
    "pressure": "tcpmemlib.analysis.pressure",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'tcpmemlib' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
