"""``python -m ops ingest {jsonl,datasette}``: the command line of the bulk loader.

Examples::

    python -m ops ingest jsonl pages/*.jsonl
    python -m ops ingest jsonl alameda-agendas.jsonl --municipality alameda.ca --name Alameda --state CA
    python -m ops ingest datasette --municipality alameda.ca --since auto
    python -m ops ingest jsonl big.jsonl --resume          # after an interruption

The primary is found among ``GATEWAY_ADMIN_NODES`` (session-mode DSNs: the loader uses temporary tables and an
advisory lock, which transaction pooling would break). Bad rows are printed to stderr as they are met, with
their position; the summary goes to stdout. Exit status: 0 when the run finished (skipped rows included),
1 when it failed (resume it with ``--resume``), 2 for a usage or configuration error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from gateway.settings import Settings
    from ops.ingest.loader import IngestSummary
    from ops.ingest.records import BadRow

DEFAULT_CHECKPOINT = Path(".civic-ingest-checkpoint.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``jsonl`` and ``datasette`` subcommands and their options to ``parser`` (the ``ingest`` parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--municipality",
        metavar="SUBDOMAIN",
        help="the municipality (for JSONL: of lines without 'subdomain')",
    )
    common.add_argument("--name", help="create the municipality with this name if it does not exist")
    common.add_argument("--state", help="two-letter state of the municipality to create")
    common.add_argument(
        "--type", choices=["agenda", "minutes"], help="document type (JSONL: of lines without 'kind')"
    )
    common.add_argument(
        "--workers", type=int, default=os.cpu_count() or 2, help="parallel connections (default: CPU count)"
    )
    common.add_argument(
        "--checkpoint",
        type=Path,
        default=DEFAULT_CHECKPOINT,
        help=f"checkpoint file (default: {DEFAULT_CHECKPOINT})",
    )
    common.add_argument(
        "--resume", action="store_true", help="continue from the checkpoint instead of starting over"
    )
    common.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_argument("--max-batches", type=int, metavar="N", help="stop after N batches (resume later)")
    sub = parser.add_subparsers(dest="source", required=True, metavar="{jsonl,datasette}")
    jsonl = sub.add_parser("jsonl", parents=[common], help="ingest JSONL files of page rows")
    jsonl.add_argument("paths", nargs="+", type=Path, help="JSONL files, one page row per line")
    jsonl.add_argument("--batch-size", type=int, default=2000, help="lines per batch (default: 2000)")
    datasette = sub.add_parser("datasette", parents=[common], help="ingest a civic.band-style Datasette site")
    datasette.add_argument("--url", help="the site's base URL (default: https://{municipality}.civic.band)")
    datasette.add_argument(
        "--since", help="only pages dated on or after YYYY-MM-DD, or 'auto' (newest stored)"
    )
    datasette.add_argument(
        "--page-size", type=int, default=1000, help="rows per request, _size (default: 1000)"
    )


def _since(value: str | None) -> dt.date | Literal["auto"] | None:
    """``--since``: None, "auto" or a date; raises ValueError for anything else."""
    if value is None:
        return None
    if value == "auto":
        return "auto"
    return dt.date.fromisoformat(value)


def _print_bad(bad: BadRow) -> None:
    from tqdm import tqdm

    tqdm.write(f"skipped {bad}", file=sys.stderr)  # tqdm.write keeps the bar intact


def _report(summary: IngestSummary) -> None:
    print(summary.summary())
    for note in summary.notes:
        print(f"  {note}")
    for partial in summary.partly_indexed:
        print(f"warning: {partial}", file=sys.stderr)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the ingest that ``args`` describe against the primary among ``settings.admin_dsns``."""
    from ops.ingest import api
    from ops.ingest.loader import IngestError
    from routing.discovery import NoPrimaryError, find_primary_dsn

    if not settings.admin_dsns:
        print("GATEWAY_ADMIN_NODES is not set: ingest needs session-mode admin DSNs", file=sys.stderr)
        return 2
    if args.workers < 1 or getattr(args, "batch_size", 1) < 1 or getattr(args, "page_size", 1) < 1:
        print("--workers, --batch-size and --page-size must be at least 1", file=sys.stderr)
        return 2
    try:
        since = _since(getattr(args, "since", None))
    except ValueError:
        print(f"--since must be YYYY-MM-DD or 'auto', not {args.since!r}", file=sys.stderr)
        return 2
    try:
        dsn = find_primary_dsn(settings.admin_dsns)
    except NoPrimaryError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        if args.source == "jsonl":
            if args.municipality and (args.name or args.state):
                from ops.ingest.loader import connect, ensure_municipality
                from ops.ingest.records import RowError

                with connect(dsn) as conn:
                    try:
                        ensure_municipality(conn, args.municipality, name=args.name, state=args.state)
                    except RowError as exc:
                        print(exc, file=sys.stderr)
                        return 2
            summary = api.ingest_jsonl(
                dsn,
                args.paths,
                document_type=args.type,
                municipality=args.municipality,
                batch_size=args.batch_size,
                workers=args.workers,
                checkpoint=args.checkpoint,
                resume=args.resume,
                progress=not args.no_progress,
                max_batches=args.max_batches,
                on_bad_row=_print_bad,
            )
        else:
            if not args.municipality:
                print("datasette needs --municipality SUBDOMAIN", file=sys.stderr)
                return 2
            summary = api.ingest_datasette(
                dsn,
                args.url or f"https://{args.municipality}.civic.band",
                args.municipality,
                name=args.name,
                state=args.state,
                document_types=[args.type] if args.type else api.DOCUMENT_TYPES,
                since=since,
                page_size=args.page_size,
                workers=args.workers,
                checkpoint=args.checkpoint,
                resume=args.resume,
                progress=not args.no_progress,
                max_batches=args.max_batches,
                on_bad_row=_print_bad,
            )
    except IngestError as exc:
        print(f"ingest failed: {exc}", file=sys.stderr)
        print(
            f"what was committed is kept; continue with --resume (checkpoint: {args.checkpoint})",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with --resume (checkpoint: {args.checkpoint})", file=sys.stderr)
        return 130
    _report(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m ops.ingest.cli``); ``python -m ops ingest`` is the usual one."""
    from gateway.settings import SettingsError, load_settings

    parser = argparse.ArgumentParser(prog="python -m ops ingest", description="bulk-ingest meeting pages")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    return run(args, settings)


if __name__ == "__main__":
    sys.exit(main())
