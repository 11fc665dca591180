"""``python -m ops``: everything an operator runs besides the server.

The local stack, the demo corpus, bulk ingest, partition and statistics maintenance, online bloat repair
(pg_repack), benchmarks and drills.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ops import stack

if TYPE_CHECKING:
    from gateway.settings import Settings


def _cmd_stack(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if args.action == "up":
        layout = stack.up(
            directory, replicas=args.replicas, base_port=args.base_port, synchronous=True if args.sync else None
        )
        print(f"stack up in {layout.dir}")
        _print_status(directory)
        print("\nexport these to point a gateway at it:")
        for key, value in layout.gateway_env().items():
            print(f"export {key}='{value}'")
        return 0
    if args.action == "down":
        if not stack.down(directory):
            print(f"no stack in {directory}")
        else:
            print(f"stack in {directory} stopped (data kept; 'rm -rf {directory}' deletes it)")
        return 0
    if args.action == "env":
        found = stack.StackLayout.load(directory.resolve())
        if found is None:
            print(f"no stack in {directory}: run 'python -m ops stack up' first", file=sys.stderr)
            return 1
        for key, value in found.gateway_env().items():
            print(f"export {key}='{value}'")
        return 0
    return 0 if _print_status(directory) else 1


def _print_status(directory: Path) -> bool:
    layout = stack.StackLayout.load(directory.resolve())
    rows = stack.status(directory)
    if layout is None or rows is None:
        print(f"no stack in {directory}: run 'python -m ops stack up'")
        return False
    print(f"{'node':<7} {'port':>6} {'role':<8} {'tl':>3} {'lsn':<14} {'lag':>8}  logs")
    for r in rows:
        lag = "-" if r.lag_seconds is None else f"{r.lag_seconds:.3f}s"
        print(
            f"{r.name:<7} {r.port:>6} {r.role:<8} {r.timeline or '-':>3} {r.lsn or '-':<14} {lag:>8}  {r.log_dir}"
        )
    view = stack.cluster(layout)
    members = {str(m["name"]): m for m in (view or {}).get("members", [])}
    etcd = "running" if stack.etcd_running(layout) else "stopped"
    mode = "synchronous" if layout.synchronous else "asynchronous"
    print(f"etcd      127.0.0.1:{layout.etcd_port} {etcd}  log {layout.dir}/etcd.log  ({mode} replication)")
    for name, port in zip(layout.node_names, layout.patroni_ports, strict=True):
        member = members.get(name)
        said = f"{member.get('role')} {member.get('state')}" if member else "not in the cluster"
        alive = "running" if stack.patroni_running(layout, name) else "stopped"
        print(f"patroni   {name} 127.0.0.1:{port} {alive}: {said}  log {layout.dir}/patroni/{name}.log")
    bouncer = "running" if stack.pgbouncer_running(layout) else "stopped"
    print(f"pgbouncer 127.0.0.1:{layout.pgbouncer_port} {bouncer}  log {layout.dir}/pgbouncer.log")
    if layout.redis_port:
        redis = "running" if stack.redis_running(layout) else "stopped"
        print(f"redis     127.0.0.1:{layout.redis_port} {redis}  log {layout.dir}/redis.log")
    else:
        print("redis     not installed (apt-get install redis-server); the gateway caches in memory")
    return True


def _needs_ops_extra(exc: ImportError) -> int:
    """The operators' commands draw progress bars with tqdm, an extra the server alone does not install."""
    if exc.name != "tqdm":
        raise exc
    print("this command needs the operators' extra: pip install 'civic-search-gateway[ops]'", file=sys.stderr)
    return 2


def _cmd_corpus(args: argparse.Namespace) -> int:
    try:
        from ops import corpus
    except ImportError as exc:
        return _needs_ops_extra(exc)

    if args.deployment:
        return _with_settings(_corpus_into_deployment, args)
    corpus.main(pages=args.pages, seed=args.seed, directory=Path(args.dir), if_empty=args.if_empty)
    return 0


def _corpus_into_deployment(args: argparse.Namespace, settings: Settings) -> int:
    """The demo corpus into the primary of GATEWAY_ADMIN_NODES (docker-compose's first start), migrated first."""
    from migrations import runner
    from ops import corpus
    from ops.maintenance.cli import admin_primary

    dsn = admin_primary(settings)
    runner.migrate(dsn)
    if args.if_empty and corpus.has_pages(dsn):
        print("meeting_page already has pages: nothing to do (--if-empty)")
        return 0
    corpus.load(dsn, pages=args.pages, seed=args.seed, progress=False)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from ops.bench import cli as bench_cli

    return int(bench_cli.main(args.what, args.rest))


def _cmd_drill(args: argparse.Namespace) -> int:
    from ops.drills import cli as drills_cli

    return int(drills_cli.main(args.what, args.rest))


def _with_settings(run: Callable[[argparse.Namespace, Settings], int], args: argparse.Namespace) -> int:
    """Commands that work on a configured deployment read the gateway's settings (``GATEWAY_*``)."""
    from gateway.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    return int(run(args, settings))


def _cmd_ingest(args: argparse.Namespace) -> int:
    from ops.ingest import cli as ingest_cli

    try:
        import ops.ingest.loader  # noqa: F401  (its progress bar needs tqdm)
    except ImportError as exc:
        return _needs_ops_extra(exc)
    return _with_settings(ingest_cli.run, args)


def _cmd_partitions(args: argparse.Namespace) -> int:
    from ops.maintenance import cli as maintenance_cli

    return _with_settings(maintenance_cli.run_partitions, args)


def _cmd_apq(args: argparse.Namespace) -> int:
    from ops.maintenance import cli as maintenance_cli

    return _with_settings(maintenance_cli.run_apq, args)


def _cmd_repack(args: argparse.Namespace) -> int:
    from ops.maintenance import cli as maintenance_cli

    return _with_settings(maintenance_cli.run_repack, args)


def _cmd_stats(args: argparse.Namespace) -> int:
    from ops.maintenance import cli as maintenance_cli

    return _with_settings(maintenance_cli.run_stats, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    st = sub.add_parser("stack", help="boot, inspect or stop the local etcd/Patroni nodes/PgBouncer/Redis")
    st.add_argument("action", choices=["up", "down", "status", "env"])
    st.add_argument("--replicas", type=int, default=2)
    st.add_argument("--dir", default=str(stack.DEFAULT_DIR))
    st.add_argument(
        "--base-port",
        type=int,
        default=stack.DEFAULT_BASE_PORT,
        help="primary's port; replicas follow, Patroni's REST APIs are +800.., etcd +900/+901, Redis +950, "
        "PgBouncer +1000",
    )
    st.add_argument(
        "--sync", action="store_true", help="up: turn on Patroni's synchronous_mode (no acknowledged write lost)"
    )
    st.set_defaults(func=_cmd_stack)

    co = sub.add_parser("corpus", help="generate a synthetic meeting corpus and COPY it into the stack")
    co.add_argument("--pages", type=int, default=50_000)
    co.add_argument("--seed", type=int, default=1)
    co.add_argument("--dir", default=str(stack.DEFAULT_DIR))
    co.add_argument("--if-empty", action="store_true", help="do nothing when pages are already loaded")
    co.add_argument(
        "--deployment", action="store_true",
        help="load into the primary of GATEWAY_ADMIN_NODES (a deployment such as docker-compose), not --dir",
    )
    co.set_defaults(func=_cmd_corpus)

    be = sub.add_parser("bench", help="benchmarks (run by hand, never in CI)")
    be.add_argument("what")
    be.add_argument("rest", nargs=argparse.REMAINDER)
    be.set_defaults(func=_cmd_bench)

    dr = sub.add_parser("drill", help="failover drills against the local stack")
    dr.add_argument("what")
    dr.add_argument("rest", nargs=argparse.REMAINDER)
    dr.set_defaults(func=_cmd_drill)

    # argparse only: the loader, httpx and tqdm are imported when a command runs.
    from ops.ingest import cli as ingest_cli
    from ops.maintenance import cli as maintenance_cli

    ingest = sub.add_parser("ingest", help="bulk-ingest meeting pages from JSONL files or a civic.band Datasette")
    ingest_cli.add_arguments(ingest)
    ingest.set_defaults(func=_cmd_ingest)

    part = sub.add_parser("partitions", help="partition lifecycle of meeting_page")
    maintenance_cli.add_partitions_arguments(part)
    part.set_defaults(func=_cmd_partitions)

    repack = sub.add_parser("repack", help="online bloat repair of meeting_page's partitions with pg_repack")
    maintenance_cli.add_repack_arguments(repack)
    repack.set_defaults(func=_cmd_repack)

    stats = sub.add_parser("stats", help="search statistics")
    maintenance_cli.add_stats_arguments(stats)
    stats.set_defaults(func=_cmd_stats)

    apq = sub.add_parser("apq", help="the persisted-query table: show, prune")
    maintenance_cli.add_apq_arguments(apq)
    apq.set_defaults(func=_cmd_apq)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except stack.StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
