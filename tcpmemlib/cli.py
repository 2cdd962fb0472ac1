"""The ``tcpmem`` command (also ``python -m tcpmemlib``).

``tcpmem report CAPTURE [--before CAPTURE] [-o DIR] [--with-code]`` builds the HTML reports.
Exit status: 0 when every notebook ran, 1 when one failed (its HTML still shows the error), 2 on bad
usage (e.g. a capture path that does not exist).

``tcpmem report --fleet DATASET [-o DIR]`` builds the fleet report (notebook 04_fleet) of a dataset.

``tcpmem ingest CAPTURE... --into DATASET [--dask SCHEDULER]`` adds captures (directories, bundles,
or folders of them) to a fleet dataset (``tcpmemlib.fleet``); one line per capture. Exit status 0
when every capture was ingested or unchanged, 1 when one failed (listed with its error; the others
are ingested), 2 on bad usage.

``tcpmem collector [-o PATH] [--force]`` writes the collector, collect.sh, to copy to a box: to
stdout (no ``-o``, or ``-o -``), or to PATH (a file, or a directory to write ``collect.sh`` in) with mode 0755. An existing
PATH is kept unless ``--force``; the file is written beside it and renamed into place, so a failed
write leaves nothing half-written. Exit status 0, or 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tcpmemlib import resources


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tcpmem",
        description="Where does this Linux box's TCP socket memory go? Reports from a capture.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    rep = sub.add_parser(
        "report",
        help="run the notebooks on a capture and write HTML reports",
        description="Run every notebook on CAPTURE with papermill, convert each to HTML and write "
        "an index.html that links them with a summary of the answers.",
    )
    rep.add_argument(
        "capture", nargs="?", help="a collect.sh output directory or a .tar.gz bundle of one"
    )
    rep.add_argument(
        "--fleet",
        metavar="DATASET",
        help="instead of a capture: the fleet report of a dataset made by `tcpmem ingest`",
    )
    rep.add_argument(
        "--before", metavar="CAPTURE", help="a capture taken before a change, to compare"
    )
    rep.add_argument("-o", "--out", default="reports", metavar="DIR", help="output directory")
    rep.add_argument("--with-code", action="store_true", help="show the code cells in the HTML")
    rep.add_argument(
        "--notebooks", metavar="DIR", help="run the notebooks in DIR instead of the bundled ones"
    )
    rep.add_argument(
        "--only", action="append", metavar="NAME", help="run only this notebook (repeatable)"
    )
    ing = sub.add_parser(
        "ingest",
        help="add captures to a fleet dataset (Parquet), for `tcpmem report --fleet`",
        description="Read each capture (a collect.sh directory, a .tar.gz bundle, or a folder "
        "holding them) and add it to DATASET, a Hive-partitioned Parquet dataset (host=/date=). "
        "Ingesting a capture again changes nothing; a capture that grew replaces its rows.",
    )
    ing.add_argument("captures", nargs="+", metavar="CAPTURE", help="capture, bundle or folder")
    ing.add_argument("--into", required=True, metavar="DATASET", help="the dataset directory")
    ing.add_argument(
        "--dask",
        metavar="SCHEDULER",
        help="run each capture as a task on this Dask scheduler (e.g. tcp://10.0.0.5:8786; its "
        "workers must see the captures and DATASET at the same paths), or on a local cluster of "
        "N worker processes started for this run: local[:N] (default N: CPUs - 1)",
    )
    ing.add_argument(
        "--workers", type=int, metavar="N", help="parse workers per capture (default: automatic)"
    )
    col = sub.add_parser(
        "collector",
        help="write collect.sh, the collector to run on the box",
        description="Write collect.sh (one POSIX sh file) to copy to the box you want to examine; "
        "run it there as `sudo sh collect.sh -h` for its options. Without -o it goes to stdout.",
    )
    col.add_argument(
        "-o",
        "--out",
        metavar="PATH",
        help="write it to PATH (mode 0755); a directory gets PATH/collect.sh; - is stdout",
    )
    col.add_argument("--force", action="store_true", help="replace PATH if it exists")
    return parser


def _fail(message: str) -> int:
    print(f"tcpmem: error: {message}", file=sys.stderr)
    return 2


def fleet_report_command(args: argparse.Namespace) -> int:
    if args.capture is not None or args.before is not None:
        return _fail("--fleet takes a dataset instead of a capture (no CAPTURE, no --before)")
    from tcpmemlib.fleet.layout import CATALOG

    if not (Path(args.fleet) / CATALOG).is_file():
        return _fail(f"not a fleet dataset (no {CATALOG}; see `tcpmem ingest`): {args.fleet}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        return _fail(f"output path exists and is not a directory: {args.out}")
    try:
        notebooks = Path(args.notebooks) if args.notebooks else resources.notebook_dir()
    except resources.ResourceError as err:
        return _fail(str(err))
    from tcpmemlib.report import build_fleet_report

    report = build_fleet_report(
        args.fleet,
        out_dir=args.out,
        with_code=args.with_code,
        notebook_dir=notebooks,
        log=lambda line: print(line, flush=True),
    )
    if not report.runs:
        return _fail(f"no fleet notebook (04_fleet.ipynb) in {notebooks}")
    if report.failed:
        print(f"tcpmem: notebooks failed: {', '.join(report.failed)}", file=sys.stderr)
        return 1
    return 0


def ingest_command(args: argparse.Namespace) -> int:
    if Path(args.into).exists() and not Path(args.into).is_dir():
        return _fail(f"--into exists and is not a directory: {args.into}")
    if args.workers is not None and args.workers < 1:
        return _fail("--workers must be 1 or more")
    import warnings

    from tcpmemlib.errors import TcpmemError
    from tcpmemlib.fleet.ingest import ingest

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # each capture's problems go to the dataset and its line
        try:
            result = ingest(
                args.captures,
                args.into,
                dask=args.dask,
                workers=args.workers,
                log=lambda line: print(line, flush=True),
            )
        except TcpmemError as err:  # the dataset itself (a capture's failure is a row)
            return _fail(str(err))
    rows = result.rows
    counts = rows["outcome"].value_counts()
    summary = ", ".join(f"{int(n)} {what}" for what, n in counts.items())
    print(
        f"{args.into}: {summary}; the dataset holds {int((result.catalog['status'] == 'ok').sum())}"
        f" capture(s) of {result.catalog['host'].nunique()} host(s)"
    )
    return 1 if len(result.failed) else 0


def report_command(args: argparse.Namespace) -> int:
    if args.fleet is not None:
        return fleet_report_command(args)
    if args.capture is None:
        return _fail("report needs a CAPTURE (or --fleet DATASET)")
    for label, path in (("capture", args.capture), ("--before capture", args.before)):
        if path is not None and not Path(path).exists():
            return _fail(f"{label} not found: {path}")
    if args.notebooks and not Path(args.notebooks).is_dir():
        return _fail(f"notebook directory not found: {args.notebooks}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        return _fail(f"output path exists and is not a directory: {args.out}")
    try:
        notebooks = Path(args.notebooks) if args.notebooks else resources.notebook_dir()
    except resources.ResourceError as err:
        return _fail(str(err))

    def log(line: str) -> None:
        print(line, flush=True)

    # Read each capture once here: a path that is not a capture is one clear error (exit 2) instead
    # of four failed notebooks, and the notebooks then read the capture's cache.
    import warnings

    from tcpmemlib.capture import load_capture
    from tcpmemlib.errors import TcpmemError

    for label, path in (("capture", args.capture), ("--before capture", args.before)):
        if path is None:
            continue
        log(f"reading {label} {path}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the notebooks list the capture's problems
                cap = load_capture(path)
        except TcpmemError as err:
            return _fail(f"{label}: {err}")
        if len(cap.problems):
            log(f"  {len(cap.problems)} problem(s) while reading it (listed in the reports)")

    from tcpmemlib.report import build_report

    report = build_report(
        args.capture,
        before=args.before,
        out_dir=args.out,
        with_code=args.with_code,
        notebook_dir=notebooks,
        only=args.only,
        log=log,
    )
    if not report.runs:
        return _fail("no notebooks to run")
    if report.failed:
        print(f"tcpmem: notebooks failed: {', '.join(report.failed)}", file=sys.stderr)
        return 1
    return 0


def _write_beside(target: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a new file in ``target``'s directory, then rename it onto ``target``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def collector_command(args: argparse.Namespace) -> int:
    try:
        data = resources.collector_path().read_bytes()
    except (resources.ResourceError, OSError) as err:
        return _fail(str(err))
    if args.out is None or args.out == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    target = Path(args.out)
    if args.out.endswith(os.sep) and not target.is_dir():
        return _fail(f"no such directory: {args.out}")
    if target.is_dir():
        target = target / "collect.sh"
    if target.is_dir():
        return _fail(f"{target} is a directory")
    if os.path.lexists(target) and not args.force:
        return _fail(f"{target} exists (use --force to replace it)")
    if not target.parent.is_dir():
        return _fail(f"no such directory: {target.parent}")
    try:
        _write_beside(target, data, 0o755)
    except OSError as err:
        return _fail(f"cannot write {target}: {err.strerror or err}")
    print(f"wrote {target} ({len(data)} bytes); on the box: sudo sh {target.name} -h")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "report":
        return report_command(args)
    if args.command == "collector":
        return collector_command(args)
    if args.command == "ingest":
        return ingest_command(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
