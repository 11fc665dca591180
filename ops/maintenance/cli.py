"""The command line of the maintenance commands: ``python -m ops partitions …`` and ``python -m ops stats …``.

Options are the ones ``python -m gateway`` had for these commands, so runbooks only change the module name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from gateway.settings import Settings


def admin_primary(settings: Settings) -> str:
    """The primary among the admin DSNs (the node DSNs when no admin ones are configured)."""
    from routing.discovery import find_primary_dsn

    return find_primary_dsn(settings.admin_dsns or settings.node_dsns)


def add_partitions_arguments(part: argparse.ArgumentParser) -> None:
    part.add_argument("action", choices=["ensure", "list", "archive"])
    part.add_argument("--ahead", type=int, default=3, help="periods to create after the current one")
    part.add_argument("--exact", action="store_true", help="count rows exactly instead of estimating")
    arch = part.add_argument_group("archive (detach, dump, verify the dump restores, then drop)")
    arch.add_argument("--older-than", metavar="AGE", help="partitions whose range ended this long ago: 2y, 18m, 90d")
    arch.add_argument(
        "--before", metavar="DATE", type=dt.date.fromisoformat, help="or whose range ends on or before DATE"
    )
    arch.add_argument("--to", metavar="DIR", type=Path, help="folder for the dumps and their manifests")
    arch.add_argument("--partition", metavar="NAME", action="append", help="only this partition (repeatable)")
    arch.add_argument("--strategy", choices=["swap-default", "lock-timeout"], default="swap-default")
    arch.add_argument(
        "--restore-dsn", metavar="DSN", help="server for the scratch restore check (default: the primary itself)"
    )
    arch.add_argument("--dry-run", action="store_true", help="list what would be archived, change nothing")


def run_partitions(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from ops.maintenance import partitions

    dsn = admin_primary(settings)
    if args.action == "archive":
        from ops.maintenance import archive

        return archive.run_cli(
            dsn,
            dest=args.to,
            older_than=args.older_than,
            before=args.before,
            names=args.partition,
            strategy=args.strategy,
            dry_run=args.dry_run,
            restore_dsn=args.restore_dsn,
        )
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        if args.action == "ensure":
            partitions.ensure(conn, ahead=args.ahead, out=sys.stdout)
        else:
            partitions.show(conn, exact=args.exact, out=sys.stdout)
    return 0


def add_stats_arguments(stats: argparse.ArgumentParser) -> None:
    stats.add_argument("action", choices=["refresh"], help="refresh the popular-searches view (CONCURRENTLY)")


def run_stats(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from ops.maintenance import stats

    with psycopg.connect(admin_primary(settings), autocommit=True, prepare_threshold=None) as conn:
        stats.refresh(conn, out=sys.stdout)
    return 0


def add_apq_arguments(apq: argparse.ArgumentParser) -> None:
    apq.add_argument("action", choices=["show", "prune"], help="what the table holds; delete old documents")
    apq.add_argument("--older-than", metavar="AGE", default="30d", help="prune documents registered this long ago")


def run_apq(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from ops.maintenance import persisted
    from ops.maintenance.archive_model import cutoff_date

    with psycopg.connect(admin_primary(settings), autocommit=True, prepare_threshold=None) as conn:
        if args.action == "show":
            persisted.show(conn, out=sys.stdout)
            return 0
        try:
            day = cutoff_date(args.older_than)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        persisted.prune(conn, before=dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC), out=sys.stdout)
    return 0


def add_repack_arguments(repack: argparse.ArgumentParser) -> None:
    repack.add_argument("--partition", metavar="NAME", action="append", help="only this partition (repeatable)")
    repack.add_argument("--min-bloat-ratio", type=float, default=0.2, help="estimated bloat / heap, to be chosen")
    repack.add_argument("--min-bloat-mb", type=float, default=8.0, help="and at least this much bloat, MB")
    repack.add_argument(
        "--space-factor", type=float, default=2.0,
        help="disk a partition's repack needs, as a multiple of its size (the copy, plus as much WAL)",
    )
    repack.add_argument(
        "--reserve-percent", type=float, default=10.0, help="of the disk that must stay free after that; else refuse"
    )
    repack.add_argument("--wait-timeout", type=int, default=60, help="seconds to wait for a lock (never kills)")
    repack.add_argument("--dry-run", action="store_true", help="say what would be repacked, change nothing")
    repack.add_argument("--report", metavar="FILE", type=Path, help="write the outcome as JSON")


def run_repack(args: argparse.Namespace, settings: Settings) -> int:
    from ops.maintenance import repack

    try:
        status, outcomes = repack.run(
            admin_primary(settings),
            names=args.partition,
            min_bloat_ratio=args.min_bloat_ratio,
            min_bloat_mb=args.min_bloat_mb,
            space_factor=args.space_factor,
            reserve_percent=args.reserve_percent,
            wait_timeout_s=args.wait_timeout,
            dry_run=args.dry_run,
            out=sys.stdout,
        )
    except repack.RepackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.report is not None:
        repack.write_report(args.report, outcomes, status)
    return status
