"""Many boxes' captures in one analysis: a Parquet dataset, asked on DuckDB or Dask.

- ``ingest(sources, into)`` (``tcpmem ingest CAPTURE... --into DATASET``): captures -> a
  Hive-partitioned Parquet dataset (``layout``: tables, paths; ``catalog``: what is in it);
  ``dask=`` runs each capture as a task on a Dask cluster.
- ``open_fleet(dataset, engine="duckdb"|"dask")`` and the questions of ``queries``:
  ``host_ranking``, ``top_holders``, ``host_verdicts``, ``socket_rows``; ``rollout``.

Modules, from the bottom up: ``layout`` (paths, atomic writes), ``catalog`` (the one writer of the
catalog), ``sockets`` (one pass over a capture's socket rows), ``figures`` (a capture's other tables
and verdicts), ``ingest``, ``engines`` (DuckDB / Dask over the catalog's files), ``queries``, ``rollout``.
"""

from __future__ import annotations

from tcpmemlib.fleet.engines import ENGINES, Fleet, FleetError, open_fleet
from tcpmemlib.fleet.ingest import IngestResult, ingest
from tcpmemlib.fleet.queries import host_ranking, host_verdicts, socket_rows, top_holders
from tcpmemlib.fleet.rollout import RolloutResult, rollout

__all__ = [
    "ENGINES",
    "Fleet",
    "FleetError",
    "IngestResult",
    "RolloutResult",
    "host_ranking",
    "host_verdicts",
    "ingest",
    "open_fleet",
    "rollout",
    "socket_rows",
    "top_holders",
]
