"""The ``tcpmem`` command (also ``python -m tcpmemlib``).

``tcpmem report CAPTURE [--before CAPTURE] [-o DIR] [--with-code]`` builds the HTML reports.
Exit status: 0 when every notebook ran, 1 when one failed (its HTML still shows the error), 2 on bad
usage (e.g. a capture path that does not exist).

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
    rep.add_argument("capture", help="a collect.sh output directory or a .tar.gz bundle of one")
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


def report_command(args: argparse.Namespace) -> int:
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
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
