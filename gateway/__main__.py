"""``python -m gateway``: serve and migrate. Maintenance commands live in ``python -m ops``."""

from __future__ import annotations

import argparse
import sys

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

    from migrations import partitions, runner

    dsn = _admin_primary(settings)
    applied = runner.migrate(dsn)
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        # The width only matters for partitions created from now on; existing ones keep theirs.
        partitions.set_width(conn, settings.partition_width)
        created = partitions.ensure_ahead(conn, 1)
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing (up to date)"
    print(f"migrated: {names}; partitions created: {', '.join(created) or 'none'}")
    return 0


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
