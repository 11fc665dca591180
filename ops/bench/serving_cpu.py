"""CPU per request of a served gateway, in milliseconds and in F, for the benchmark and the CI regression gate.

F is the CPU time bare graphql-core takes to execute the 20-result search query from an already-parsed
document over plain dicts, plus ``json.dumps`` of the result: no HTTP, no SQL, no framework. Machines here
differ by up to 3x in speed, so a figure in F measured in the same run compares across machines where
milliseconds do not.

The gateway's CPU is read from ``/proc`` for its whole process tree (the supervisor and every worker), before
and after a batch of requests sent by this process; the load generator's own CPU is not counted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import statistics
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from graphql import build_schema, execute, parse

import gateway
from ops.common.gateway_process import GatewayProcess
from ops.common.net import free_port
from ops.common.procs import process_tree
from ops.stack import PROJECT_DIR

SEARCH_20 = """query Search20($q: String!, $to: Date) {
  search(query: $q, first: 20, filter: {dateTo: $to}) {
    edges { cursor headline node { id sourceId pageNumber } }
  }
}"""

def _search_page_query() -> str:
    """The search page's own query, read from the page's script so the benchmark measures what it sends."""
    js = (Path(gateway.__file__).resolve().parent / "static" / "js" / "queries.js").read_text()
    found = re.search(r"export const SEARCH = `(.*?)`;", js, re.DOTALL)
    if found is None:
        raise RuntimeError("gateway/static/js/queries.js no longer exports SEARCH")
    return found.group(1).strip()


SEARCH_PAGE = _search_page_query()

_F_SDL = """
type Query { search(query: String!, first: Int, filter: SearchFilter): SearchConnection! }
input SearchFilter { dateTo: String }
type SearchConnection { edges: [SearchEdge!]! }
type SearchEdge { cursor: String! headline: String! node: MeetingPage! }
type MeetingPage { id: ID! sourceId: String! pageNumber: Int! }
"""
_F_QUERY = SEARCH_20.replace("$to: Date", "$to: String")


def _f_root() -> dict[str, Any]:
    edges = [
        {
            "cursor": "v1." + "Q" * 120,
            "headline": "the <mark>council</mark> approved the budget for the coming year after a hearing " * 2,
            "node": {"id": "TWVldGluZ1BhZ2U6MjAyNC0wNi0wMS8xMjM0NTY3OA", "sourceId": f"p{i:08d}", "pageNumber": i},
        }
        for i in range(20)
    ]
    return {"search": {"edges": edges}}


def measure_f(*, repeats: int = 300, rounds: int = 5) -> float:
    """F in seconds: the median over ``rounds`` of the CPU time per bare execute + json.dumps."""
    schema = build_schema(_F_SDL)
    document = parse(_F_QUERY)
    root = _f_root()
    variables = {"q": "council", "to": None}
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(repeats):
            result = execute(schema, document, root_value=root, variable_values=variables)
            json.dumps({"data": result.data})  # type: ignore[union-attr]
        samples.append((time.process_time() - started) / repeats)
    return statistics.median(samples)


# --- the served gateway --------------------------------------------------------------------------------------


def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process, from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw.rsplit(")", 1)[1].split()
    # After the command name: state ppid ... utime(14) stime(15), counted from the state field as 0.
    return (int(fields[11]) + int(fields[12])) / _ticks()


def tree_cpu_s(root_pid: int) -> float:
    """CPU seconds used so far by ``root_pid`` and every live descendant."""
    total = 0.0
    for pid in process_tree(root_pid):
        with contextlib.suppress(OSError, ValueError, IndexError):  # a process that ended meanwhile
            total += _proc_cpu_s(pid)
    return total


@dataclasses.dataclass
class ServedProcess:
    """A gateway serving in a subprocess: its process id (the root of its tree) and URL."""

    pid: int
    url: str
    metrics_url: str


@contextlib.contextmanager
def served_gateway(
    env: Mapping[str, str], *, workers: int = 1, project_dir: Path = PROJECT_DIR
) -> Iterator[ServedProcess]:
    """``python -m gateway serve`` (of the tree in ``project_dir``) with ``env`` on a free port, stopped (SIGTERM)
    afterwards."""
    with GatewayProcess(dict(env), port=free_port(), workers=workers, project_dir=project_dir) as proc:
        yield ServedProcess(pid=proc.pid, url=proc.url, metrics_url=proc.metrics_url)


@dataclasses.dataclass(frozen=True)
class CpuFigure:
    """CPU per request of one kind of request."""

    name: str
    requests: int
    cpu_ms: float
    in_f: float


def cpu_per_request(
    served: ServedProcess,
    bodies: list[dict[str, Any]],
    *,
    requests: int,
    warmup: int = 30,
    headers: Mapping[str, str] | None = None,
) -> float:
    """Server CPU seconds per request, sending ``bodies`` round-robin one at a time over one connection.

    httpx asks for gzip (``Accept-Encoding: gzip, deflate``) unless ``headers`` say otherwise."""
    with httpx.Client(base_url=served.url, timeout=30, headers=dict(headers or {})) as http:
        for i in range(warmup):
            http.post("/graphql", json=bodies[i % len(bodies)]).raise_for_status()
        before = tree_cpu_s(served.pid)
        for i in range(requests):
            resp = http.post("/graphql", json=bodies[(warmup + i) % len(bodies)])
            if resp.status_code != 200 or "errors" in resp.json():
                raise RuntimeError(f"request failed: {resp.status_code} {resp.text[:300]}")
        return (tree_cpu_s(served.pid) - before) / requests


def request_kinds(*, unique: int = 400) -> dict[str, list[dict[str, Any]]]:
    """The four measured requests. The cache-miss kind varies a date filter so no two requests share a key."""
    import datetime as dt

    day = dt.date(2024, 12, 31)
    miss = [
        {"query": SEARCH_20, "variables": {"q": "council", "to": (day - dt.timedelta(days=i)).isoformat()}}
        for i in range(unique)
    ]
    return {
        "typename": [{"query": "{ __typename }"}],
        "search_miss": miss,
        "search_hit": [{"query": SEARCH_20, "variables": {"q": "council", "to": day.isoformat()}}],
        "search_page": [
            {"query": SEARCH_PAGE, "variables": {"query": "council", "orderBy": "NEWEST", "first": 20,
                                                 "filter": {"dateTo": (day - dt.timedelta(days=i)).isoformat()}}}
            for i in range(unique)
        ],
    }


def measure_kinds(served: ServedProcess, f_s: float, *, requests: int = 200) -> list[CpuFigure]:
    """CPU per request of each kind (misses never repeat a key within ``requests``)."""
    out = []
    for name, bodies in request_kinds(unique=requests + 60).items():
        per = cpu_per_request(served, bodies, requests=requests)
        out.append(CpuFigure(name=name, requests=requests, cpu_ms=per * 1000, in_f=per / f_s))
    return out
