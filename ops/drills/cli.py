"""``python -m ops drill replica-loss|primary-failover|promote|reattach``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ops import stack
from ops.drills.options import DEFAULT_REPORTS, DrillError, DrillOptions
from ops.drills.report import format_report
from ops.drills.run import run_drill


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default=str(stack.DEFAULT_DIR), help="stack folder (default: the dev stack)")
    parser.add_argument("--base-port", type=int, default=stack.DEFAULT_BASE_PORT, help="for a new stack only")


def _drill_parser(kind: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m ops drill {kind}", description=__doc__.split("\n\n")[0])
    _common(parser)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--fault-at", type=float, default=1 / 3, help="fraction of the duration")
    parser.add_argument("--pages", type=int, default=20_000, help="corpus to load when the database is empty")
    parser.add_argument("--reports", default=str(DEFAULT_REPORTS), help="where the JSON and PNG go")
    parser.add_argument("--port", type=int, default=0, help="gateway port (default: a free one)")
    parser.add_argument("--health-interval", type=float, default=0.5, help="gateway health poll, seconds")
    parser.add_argument("--name", help="stem of the report files")
    if kind == "replica-loss":
        parser.add_argument("--down", type=float, default=10.0, help="seconds the replica stays down")
        parser.add_argument("--node", help="the replica to stop (default: the last one)")
        parser.add_argument("--writers", type=int, default=0, help="clients that write")
    else:
        parser.add_argument(
            "--sync", action="store_true", help="synchronous replication (ANY 1) during the drill"
        )
        parser.add_argument("--writers", type=int, default=5, help="clients (of --clients) that write")
        parser.add_argument("--reattach", choices=["auto", "follow", "rewind", "clone"], default="auto")
    return parser


def _options(kind: str, args: argparse.Namespace) -> DrillOptions:
    if args.clients < 1 or not 1 <= args.duration <= 3600 or not 0 < args.fault_at < 1:
        raise DrillError("--clients >= 1, --duration between 1 and 3600 s, --fault-at between 0 and 1")
    return DrillOptions(
        directory=Path(args.dir),
        base_port=args.base_port,
        clients=args.clients,
        writers=args.writers,
        duration_s=args.duration,
        fault_at=args.fault_at,
        down_s=getattr(args, "down", 10.0),
        sync=getattr(args, "sync", False),
        pages=args.pages,
        reports=Path(args.reports),
        port=args.port,
        node=getattr(args, "node", None),
        reattach=getattr(args, "reattach", "auto"),
        health_interval_s=args.health_interval,
        name=args.name,
    )


def _promote_cli(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops drill promote",
        description="Promote a standby after the primary died (default: the one holding the most WAL).",
    )
    _common(parser)
    parser.add_argument("--node", help="the standby to promote")
    parser.add_argument("--force", action="store_true", help="promote even though a primary still answers")
    args = parser.parse_args(rest)
    layout = _existing(Path(args.dir))
    primary = stack.current_primary(layout)
    if primary is not None and not args.force:
        print(
            f"{primary} is up and primary: promoting another node would split the brain (--force to insist)",
            file=sys.stderr,
        )
        return 1
    standbys = {n: stack.wal_position(layout, n) for n in layout.node_names if n != primary}
    alive = {n: p for n, p in standbys.items() if p is not None}
    target = args.node or (max(alive, key=lambda n: alive[n]) if alive else None)
    if target is None or target not in alive:
        print(f"no running standby to promote (WAL positions: {standbys})", file=sys.stderr)
        return 1
    stack.promote(layout, target)
    print(
        f"{target} promoted (WAL positions were {standbys}); reattach the others with "
        f"'python -m ops drill reattach --dir {args.dir} --node NAME'"
    )
    return 0


def _reattach_cli(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops drill reattach",
        description="Make a node a streaming standby of the current primary (follow, pg_rewind or base backup).",
    )
    _common(parser)
    parser.add_argument("--node", required=True)
    parser.add_argument("--method", choices=["auto", "follow", "rewind", "clone"], default="auto")
    args = parser.parse_args(rest)
    layout = _existing(Path(args.dir))
    primary = stack.current_primary(layout)
    if primary is None:
        print("no primary is running: promote one first ('python -m ops drill promote')", file=sys.stderr)
        return 1
    method = stack.reattach(layout, args.node, primary=primary, method=args.method)
    print(f"{args.node} streams from {primary} ({method})")
    return 0


def _existing(directory: Path) -> stack.StackLayout:
    layout = stack.StackLayout.load(directory.resolve())
    if layout is None:
        raise DrillError(f"no stack in {directory}: run 'python -m ops stack up --dir {directory}'")
    return layout


def main(what: str, rest: list[str]) -> int:
    """``python -m ops drill <replica-loss|primary-failover|promote|reattach> [options]``."""
    if what == "promote":
        return _promote_cli(rest)
    if what == "reattach":
        return _reattach_cli(rest)
    if what not in ("replica-loss", "primary-failover"):
        print(
            f"unknown drill {what!r}: choose replica-loss, primary-failover, promote or reattach",
            file=sys.stderr,
        )
        return 2
    opts = _options(what, _drill_parser(what).parse_args(rest))
    report = run_drill(what, opts)
    print(format_report(report))
    return 0 if all(t["met"] for t in report["targets"]) else 1
