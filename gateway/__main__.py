"""``python -m gateway``: serve, migrate, and manage partitions."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from gateway.settings import Settings, SettingsError, load_settings


def _admin_primary(settings: Settings) -> str:
    from routing.discovery import find_primary_dsn

    dsns = settings.admin_dsns or settings.node_dsns
    return find_primary_dsn(dsns)


def _cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.server import serve

    return serve(settings, host=args.host, port=args.port, workers=args.workers)


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from gateway import partitions
    from migrations import runner

    dsn = _admin_primary(settings)
    applied = runner.migrate(dsn)
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        # The width only matters for partitions created from now on; existing ones keep theirs.
        partitions.set_width(conn, settings.partition_width)
        created = partitions.ensure_ahead(conn, 1)
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing (up to date)"
    print(f"migrated: {names}; partitions created: {', '.join(created) or 'none'}")
    return 0


def _cmd_partitions(args: argparse.Namespace, settings: Settings) -> int:
    import psycopg

    from gateway import partitions

    dsn = _admin_primary(settings)
    if args.action == "archive":
        from gateway import archive

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
            created = partitions.ensure_ahead(conn, args.ahead)
            created += partitions.drain_default(conn)
            print(f"created: {', '.join(created) or 'none'}")
        elif args.action == "list":
            print(f"{'partition':<28} {'from':<10} {'to':<10} {'rows':>12} {'size':>10}")
            for p in partitions.list_partitions(conn, exact=args.exact):
                frm = p.start.isoformat() if p.start else "DEFAULT"
                to = p.end.isoformat() if p.end else ""
                print(f"{p.name:<28} {frm:<10} {to:<10} {p.rows:>12,} {p.bytes / 1048576:>8.1f}MB")
    return 0


def _cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    import time

    import psycopg

    with psycopg.connect(_admin_primary(settings), autocommit=True, prepare_threshold=None) as conn:
        started = time.monotonic()
        # CONCURRENTLY: readers of popularSearches are never blocked by the refresh.
        conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY public.popular_search")
        pruned = conn.execute("DELETE FROM public.search_log WHERE logged_at < now() - interval '90 days'").rowcount
        row = conn.execute("SELECT count(*) FROM public.popular_search").fetchone()
    print(
        f"popular_search refreshed in {time.monotonic() - started:.2f} s: {row[0] if row else 0} queries; "
        f"{pruned} log rows older than 90 days pruned"
    )
    return 0


def _cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.ingest import cli as ingest_cli

    return ingest_cli.run(args, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the GraphQL gateway with uvicorn")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers", type=int, help="serving processes (default: GATEWAY_WORKERS, else one per CPU)"
    )
    serve.set_defaults(func=_cmd_serve)
    mig = sub.add_parser("migrate", help="apply pending migrations to the primary")
    mig.set_defaults(func=_cmd_migrate)
    part = sub.add_parser("partitions", help="partition lifecycle of meeting_page")
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
    part.set_defaults(func=_cmd_partitions)
    stats = sub.add_parser("stats", help="search statistics")
    stats.add_argument("action", choices=["refresh"], help="refresh the popular-searches view (CONCURRENTLY)")
    stats.set_defaults(func=_cmd_stats)
    from gateway.ingest import cli as ingest_cli  # light: argparse only; the loader is imported inside run()

    ingest = sub.add_parser("ingest", help="bulk-ingest meeting pages from JSONL files or a civic.band Datasette")
    ingest_cli.add_arguments(ingest)
    ingest.set_defaults(func=_cmd_ingest)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    return int(args.func(args, settings))


if __name__ == "__main__":
    sys.exit(main())
