"""``python -m ops drill replica-loss|node-loss|rejoin|crash|switchover|repack``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ops import stack
from ops.drills.faults import SCRIPTS
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
    if kind in ("replica-loss", "rejoin"):
        parser.add_argument(
            "--down", type=float, default=10.0, help="seconds the node stays down (rejoin: after the promotion)"
        )
    if kind == "replica-loss":
        parser.add_argument("--node", help="the replica to kill (default: the last one)")
        parser.add_argument("--writers", type=int, default=0, help="clients that write")
    else:
        parser.add_argument(
            "--sync", action="store_true", help="Patroni's synchronous_mode during the drill"
        )
        parser.add_argument("--writers", type=int, default=5, help="clients (of --clients) that write")
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
        health_interval_s=args.health_interval,
        name=args.name,
    )


def main(what: str, rest: list[str]) -> int:
    """``python -m ops drill <replica-loss|node-loss|rejoin|crash|switchover|repack> [options]``."""
    if what == "repack":
        from ops.drills import repack

        return repack.main(rest)
    if what not in SCRIPTS:
        print(f"unknown drill {what!r}: choose {', '.join(SCRIPTS)} or repack", file=sys.stderr)
        return 2
    opts = _options(what, _drill_parser(what).parse_args(rest))
    report = run_drill(what, opts)
    print(format_report(report))
    return 0 if all(t["met"] for t in report["targets"]) else 1

