"""``python -m ops bench serving-cpu``: the CPU per request of versions of the gateway, side by side, in F.

Several versions of the code (git commits, or the working tree as ``.``) are each exported to a folder of their
own and served at the same time from one stack (``--dir``), one worker each, with the same environment except
a Redis database each (a version must not hit what another stored). Each round measures F, then sends every kind of request to every gateway in turn, the order of the gateways rotated
from round to round, and reads the CPU of each gateway's process tree (see :mod:`ops.bench.serving_cpu`). The
figure of a kind is the median over rounds, in F of the same run, so versions compare with each other under the
same load, and ratios against the first version (the baseline) are what to read on a shared machine.

Kinds: those of the CPU gate (``{ __typename }``, a 20-result search as a miss and as a hit, the search page's
query), plus the hit sent by a client that does not accept gzip (``Accept-Encoding: identity``).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

from ops import stack
from ops.bench.report import machine, say, write_report
from ops.bench.serving_cpu import ServedProcess, cpu_per_request, measure_f, request_kinds, served_gateway
from ops.stack import PROJECT_DIR

#: Cheap requests are measured over more of them (a /proc clock tick is 10 ms), as the CPU gate does.
REQUESTS_BY_KIND = {"typename": 600, "search_hit": 600, "search_hit_identity": 600}
IDENTITY = {"accept-encoding": "identity"}


def export(ref: str, into: Path) -> Path:
    """The tree of ``ref`` (a commit, or ``.`` for the working tree as it is) as a folder to serve from."""
    if ref == ".":
        return PROJECT_DIR
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "gateway", "schema", "routing", "migrations"],
        cwd=PROJECT_DIR, capture_output=True, check=True,
    ).stdout
    into.mkdir(parents=True)
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _own_cache(env: dict[str, str], index: int) -> dict[str, str]:
    """``env`` with a Redis database of the version's own: a version must neither hit the entries another one
    stored (its misses would be hits) nor be served entries in another version's format."""
    url = env.get("GATEWAY_REDIS_URL", "")
    if not url:
        return env  # the in-process cache: already one per gateway
    base, _, _ = url.rpartition("/")
    return {**env, "GATEWAY_REDIS_URL": f"{base}/{index + 1}"}


def run(args: argparse.Namespace) -> int:
    layout = stack.StackLayout.load(Path(args.dir).resolve())
    if layout is None:
        say(f"no stack in {args.dir}: run 'python -m ops stack up' and load a corpus first")
        return 2
    versions: dict[str, str] = {}
    for item in args.ref:
        name, _, ref = item.partition("=")
        versions[name] = ref or name
    env = {**layout.gateway_env(), "GATEWAY_ROUTING_METADATA": "false", "GATEWAY_SEARCH_LOG_SAMPLE": "0"}
    kinds = request_kinds(unique=args.rounds * (args.requests + 40) + 40)
    kinds["search_hit_identity"] = kinds["search_hit"]
    report: dict[str, Any] = {"machine": machine(), "method": __doc__, "versions": versions, "rounds": args.rounds}
    figures: dict[str, dict[str, list[float]]] = {v: {k: [] for k in kinds} for v in versions}
    f_samples: list[float] = []
    loads: list[list[float]] = []
    with tempfile.TemporaryDirectory(prefix="civic-cpu-compare-") as tmp, contextlib.ExitStack() as running:
        served: dict[str, ServedProcess] = {}
        for index, (name, ref) in enumerate(versions.items()):
            tree = export(ref, Path(tmp) / name)
            served[name] = running.enter_context(served_gateway(_own_cache(env, index), workers=1, project_dir=tree))
        order = list(versions)
        for round_no in range(args.rounds):
            f_samples.append(measure_f(repeats=200, rounds=3))
            loads.append(machine()["load_average"])
            offset = round_no * (args.requests + 40)
            for kind, bodies in kinds.items():
                rotated = bodies[offset:] + bodies[:offset]  # misses never repeat a key across rounds
                for name in order[round_no % len(order):] + order[: round_no % len(order)]:
                    per = cpu_per_request(
                        served[name], rotated, requests=REQUESTS_BY_KIND.get(kind, args.requests),
                        headers=IDENTITY if kind == "search_hit_identity" else None,
                    )
                    figures[name][kind].append(per)
            say(f"round {round_no + 1}/{args.rounds} done, load average {loads[-1]}")
    f_s = statistics.median(f_samples)
    baseline = order[0]
    table: dict[str, dict[str, Any]] = {}
    for name in order:
        table[name] = {}
        for kind, samples in figures[name].items():
            in_f = statistics.median(samples) / f_s
            base = statistics.median(figures[baseline][kind]) / f_s
            table[name][kind] = {
                "F": round(in_f, 3),
                "ms": round(statistics.median(samples) * 1000, 3),
                "rounds_F": [round(s / f_s, 3) for s in samples],
                f"vs_{baseline}": round(in_f / base, 3),
            }
            say(f"{name:12s} {kind:20s} {in_f:6.2f} F  {in_f / base:5.2f}x {baseline}")
    report.update({"F_ms": round(f_s * 1000, 4), "F_ms_rounds": [round(f * 1000, 4) for f in f_samples],
                   "load_average_per_round": loads, "cpu_per_request": table})
    path = write_report(args.out or "serving_cpu", report)
    say(f"report: {path}")
    return 0


def main(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops bench serving-cpu", description=__doc__)
    parser.add_argument("--dir", default=str(stack.DEFAULT_DIR), help="a running stack with a corpus loaded")
    parser.add_argument(
        "--ref", action="append", required=True,
        help="NAME=COMMIT (or NAME=. for the working tree), repeatable; the first is the baseline",
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=120, help="requests per figure of the costlier kinds")
    parser.add_argument("--out", help="name of the JSON file under docs/bench/ (default serving_cpu)")
    return run(parser.parse_args(rest))
