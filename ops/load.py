"""Concurrent GraphQL load against a gateway, shared by the failover drills, and ``python -m ops bench load``.

Each client is a closed loop (send, wait for the answer, send again) on one ``httpx.AsyncClient``; readers
search for words that the corpus holds, writers upsert one single-page document per request, each with a page
text of its own, and every acknowledged write is logged so that a drill can check afterwards that none was
lost. Every request becomes one :class:`Sample`: when it started and ended, whether it succeeded, the error
code a client would act on (``extensions.code``, else the HTTP status, else the transport failure) and the
nodes that ``extensions.routing`` says served it.

``python -m ops bench load`` runs only readers (200 by default, for 60 s) through the stack's PgBouncer and
reports throughput, latency percentiles, errors and the share of reads each node served, to
``docs/bench/load.json``. The loops are bounded in time and in count and send traffic only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import httpx
import psycopg

from ops import stack

PROJECT = Path(__file__).resolve().parents[1]
BENCH_DIR = PROJECT / "docs" / "bench"
LOOPBACK = "127.0.0.1"

SEARCH = "query DrillSearch($q: String!) { search(query: $q, first: 20) { edges { cursor node { id } } } }"
UPSERT_MUNICIPALITY = (
    "mutation DrillTown($i: MunicipalityInput!) "
    "{ upsertMunicipality(input: $i) { municipality { id } consistencyToken } }"
)
UPSERT_DOCUMENT = "mutation DrillWrite($i: DocumentInput!) { upsertDocument(input: $i) { document { id } consistencyToken } }"

# Words and phrases of the synthetic corpus (ops/corpus.py), from very common to rare; the ones that match no
# page of the loaded corpus are dropped before a run (see :func:`search_words`), since a search for a word
# that matches nothing is a different (and for newest-first, slower) workload.
CANDIDATE_WORDS = (
    "council",
    "zoning",
    "budget",
    "variance",
    "ordinance",
    "permit",
    "cannabis",
    "parking",
    "stormwater",
    '"public hearing"',
    '"liquor license"',
    "easement or setback",
    "información",
    "wombat",
)

# The municipality the writers attach their documents to; created once per run by upsertMunicipality.
WRITE_MUNICIPALITY = {"subdomain": "drill.zz", "name": "Drill Town", "state": "ZZ", "kind": "city"}
# A date inside the corpus's range (2005-2024), so the page lands in an existing partition.
WRITE_DATE = dt.date(2024, 6, 15)

ErrorCode = str
Kind = Literal["read", "write"]


# --- what one request did -------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Sample:
    """One request. Times are seconds since the run started (``time.monotonic()`` based)."""

    kind: Kind
    started: float
    ended: float
    ok: bool
    #: ``extensions.code`` of the first error, ``HTTP <status>``, or ``TRANSPORT:<httpx exception>``.
    code: ErrorCode | None = None
    message: str | None = None
    #: Nodes that served the request's database calls, from ``extensions.routing``.
    nodes: tuple[str, ...] = ()
    #: True when a call of the request failed on its first node and was served by another.
    retried: bool = False
    #: For writes: the page's source id, which is unique per write.
    key: str | None = None

    @property
    def latency_ms(self) -> float:
        return (self.ended - self.started) * 1000.0

    @property
    def unknown_outcome(self) -> bool:
        """A write that failed after reaching the primary: it may or may not have committed."""
        return self.kind == "write" and not self.ok and "may or may not" in (self.message or "")


@dataclasses.dataclass(frozen=True, slots=True)
class AckedWrite:
    """A write the gateway acknowledged: the page it stored must be found on the primary afterwards."""

    source_id: str
    text: str
    meeting_name: str
    meeting_date: str
    node: str | None
    acked_at: float


# --- statistics ------------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear-interpolated percentile (as numpy's default); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    k = (len(ordered) - 1) * pct / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def latency_summary(samples: Iterable[Sample]) -> dict[str, Any]:
    """Count, errors and p50/p95/p99 (ms) of the successful requests among ``samples``."""
    rows = list(samples)
    ok = [s.latency_ms for s in rows if s.ok]
    return {
        "requests": len(rows),
        "errors": sum(1 for s in rows if not s.ok),
        "p50_ms": _r(percentile(ok, 50)),
        "p95_ms": _r(percentile(ok, 95)),
        "p99_ms": _r(percentile(ok, 99)),
        "max_ms": _r(max(ok, default=None)),
    }


def errors_by_code(samples: Iterable[Sample]) -> dict[str, int]:
    return dict(Counter(s.code or "?" for s in samples if not s.ok).most_common())


def error_examples(samples: Iterable[Sample], *, per_code: int = 3) -> dict[str, list[dict[str, Any]]]:
    """A few failed requests of each code, with their message and time, as evidence for the report."""
    out: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        if s.ok:
            continue
        bucket = out.setdefault(s.code or "?", [])
        if len(bucket) < per_code:
            bucket.append({"kind": s.kind, "t": round(s.started, 3), "message": (s.message or "")[:300]})
    return out


def reads_by_node(samples: Iterable[Sample]) -> dict[str, Any]:
    """How many successful reads each node served, and its share (a request may touch several nodes)."""
    counts: Counter[str] = Counter()
    retried: Counter[str] = Counter()
    for s in samples:
        if s.kind == "read" and s.ok:
            counts.update(set(s.nodes))
            if s.retried:
                retried.update(set(s.nodes))
    total = sum(counts.values())
    return {
        node: {"reads": n, "share": round(n / total, 4) if total else None, "after_a_retry": retried[node]}
        for node, n in sorted(counts.items())
    }


def slowest(samples: Iterable[Sample], *, count: int = 8) -> list[dict[str, Any]]:
    """The slowest requests, with when they ran and where: the tail of a drill is in them."""
    rows = sorted(samples, key=lambda s: s.latency_ms, reverse=True)[:count]
    return [
        {
            "kind": s.kind,
            "started_s": round(s.started, 3),
            "latency_ms": round(s.latency_ms, 1),
            "ok": s.ok,
            "code": s.code,
            "nodes": list(s.nodes),
            "retried": s.retried,
        }
        for s in rows
    ]


def timeline(samples: Sequence[Sample], *, duration_s: float, step_s: float = 1.0) -> list[dict[str, Any]]:
    """Per ``step_s`` bucket (by completion time): successes and errors of each kind, and p95 of each kind."""
    buckets = max(1, int(duration_s / step_s) + 1)
    rows: list[dict[str, Any]] = []
    per: list[list[Sample]] = [[] for _ in range(buckets + 1)]
    for s in samples:
        per[min(buckets, max(0, int(s.ended / step_s)))].append(s)
    for i, group in enumerate(per):
        row: dict[str, Any] = {"t": round(i * step_s, 3)}
        for kind in ("read", "write"):
            mine = [s for s in group if s.kind == kind]
            row[f"{kind}_ok"] = sum(1 for s in mine if s.ok)
            row[f"{kind}_errors"] = sum(1 for s in mine if not s.ok)
            row[f"{kind}_p95_ms"] = _r(percentile([s.latency_ms for s in mine if s.ok], 95))
        rows.append(row)
    while len(rows) > 1 and not any(
        rows[-1][k] for k in ("read_ok", "read_errors", "write_ok", "write_errors")
    ):
        rows.pop()  # trailing empty buckets after the last answer
    return rows


# --- the database side of a run -------------------------------------------------------------------------------------


def admin_dsn(layout: stack.StackLayout) -> str:
    """Superuser, session-mode DSN (through PgBouncer) to the stack's current primary."""
    primary = stack.current_primary(layout)
    if primary is None:
        raise stack.StackError(
            f"no primary is running in {layout.dir}: see 'python -m ops stack status --dir {layout.dir}'"
        )
    return layout.bouncer_dsn(f"{primary}_session", user=stack.SERVER_USER)


def prepare_database(
    layout: stack.StackLayout, *, pages: int, progress: bool = True, workers: int = 2
) -> int:
    """Migrate, and load a synthetic corpus of ``pages`` pages when ``meeting_page`` is empty.

    Returns the number of pages present. A database that already holds pages is used as it is, whatever its
    size, so drills can run against the corpus a developer loaded. ``workers`` is the loader's number of
    processes (1 saves their start-up for a tiny corpus).
    """
    from migrations import runner
    from ops import corpus

    dsn = admin_dsn(layout)
    runner.migrate(dsn)
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        row = conn.execute("SELECT count(*) FROM public.meeting_page").fetchone()
        have = int(row[0]) if row else 0
    if have:
        return have
    corpus.load(dsn, pages=pages, seed=1, workers=workers, progress=progress)
    return pages


def search_words(layout: stack.StackLayout, candidates: Sequence[str] = CANDIDATE_WORDS) -> list[str]:
    """The candidates that match at least one page (checked once, before the load)."""
    found: list[str] = []
    with psycopg.connect(admin_dsn(layout), autocommit=True, prepare_threshold=None) as conn:
        for word in candidates:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM public.meeting_page "
                "WHERE search_vector @@ websearch_to_tsquery('public.civic', %s))",
                [word],
            ).fetchone()
            if row and row[0]:
                found.append(word)
    if not found:
        raise stack.StackError(
            "none of the search words matches a page: load a corpus ('python -m ops corpus')"
        )
    return found


# --- the gateway under test -------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class ManagedGateway:
    """``python -m gateway serve`` as a child process, so the load generator does not share its interpreter.

    Its stderr (uvicorn's and the routing logger's warnings: ejections, readmissions, primary changes) goes to
    ``log_path``; its stdout (the access log) is discarded. Leaving the block terminates it, and kills it if
    it does not exit within 30 s.
    """

    def __init__(
        self, env: dict[str, str], *, port: int, log_path: Path, ready_timeout_s: float = 60.0
    ) -> None:
        self.env = {**os.environ, **env}
        self.port = port
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self.url = f"http://{LOOPBACK}:{port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> ManagedGateway:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--host", LOOPBACK, "--port", str(self.port)],
            env=self.env,
            cwd=PROJECT,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise stack.StackError(
                    f"the gateway exited with status {self._proc.returncode}: see {self.log_path}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise stack.StackError(
            f"the gateway was not ready within {self.ready_timeout_s:.0f} s: see {self.log_path}"
        )

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None


def gateway_env(layout: stack.StackLayout, **overrides: str) -> dict[str, str]:
    """The stack's gateway environment, with routing metadata on and the response cache off.

    The cache is off because a drill measures what the routing layer does when a node dies: a cached answer
    would never reach a node.
    """
    env = layout.gateway_env()
    env.update({"GATEWAY_ROUTING_METADATA": "true", "GATEWAY_CACHE_ENABLED": "false"})
    env.update(overrides)
    return env


# --- the load generator ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(kw_only=True)
class LoadConfig:
    """What to send. ``readers + writers`` clients run for ``duration_s`` seconds."""

    url: str
    readers: int
    duration_s: float
    words: Sequence[str]
    writers: int = 0
    #: The bearer token with write rights (needed when ``writers`` > 0).
    token: str | None = None
    #: Where each acknowledged write is appended as a JSON line (the drill's log of acked writes).
    ack_log: Path | None = None
    request_timeout_s: float = 30.0
    #: Upper bound on requests per client, so a loop is bounded in count as well as in time.
    max_requests_per_client: int = 1_000_000
    seed: int = 1


@dataclasses.dataclass
class LoadResult:
    samples: list[Sample]
    acked: list[AckedWrite]
    run_id: str
    #: ``time.monotonic()`` at t = 0 of the samples.
    t0: float
    duration_s: float


class LoadGenerator:
    """Runs the clients of one :class:`LoadConfig`; see the module docstring."""

    def __init__(self, config: LoadConfig) -> None:
        if config.writers and not config.token:
            raise ValueError("writers need a bearer token with write rights")
        self.config = config
        self.run_id = uuid.uuid4().hex[:10]
        self.samples: list[Sample] = []
        self.acked: list[AckedWrite] = []
        self.t0 = 0.0
        self._writes = 0
        self._ack_file: IO[str] | None = None

    def now(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.t0

    async def run(self, *, t0: float | None = None) -> LoadResult:
        """Run every client until ``duration_s`` after ``t0`` (a ``time.monotonic()`` value; default: now)."""
        cfg = self.config
        clients = cfg.readers + cfg.writers
        # Idle connections expire before uvicorn's 5 s keep-alive timeout: reusing one the server is closing at
        # that moment fails with a ReadError that no real server fault caused.
        limits = httpx.Limits(
            max_connections=clients + 4, max_keepalive_connections=clients + 4, keepalive_expiry=1.0
        )
        timeout = httpx.Timeout(cfg.request_timeout_s)
        if cfg.ack_log is not None:
            cfg.ack_log.parent.mkdir(parents=True, exist_ok=True)
            self._ack_file = cfg.ack_log.open("a", encoding="utf-8")
        try:
            async with httpx.AsyncClient(base_url=cfg.url, limits=limits, timeout=timeout) as http:
                self.t0 = time.monotonic() if t0 is None else t0
                deadline = self.t0 + cfg.duration_s
                tasks = [
                    *(self._reader(http, i, deadline) for i in range(cfg.readers)),
                    *(self._writer(http, i, deadline) for i in range(cfg.writers)),
                ]
                # The loops stop at the deadline; the outer bound only catches a request that ignores its timeout.
                async with asyncio.timeout(cfg.duration_s + cfg.request_timeout_s + 10.0):
                    await asyncio.gather(*tasks)
        finally:
            if self._ack_file is not None:
                self._ack_file.close()
                self._ack_file = None
        self.samples.sort(key=lambda s: s.started)
        return LoadResult(self.samples, self.acked, self.run_id, self.t0, cfg.duration_s)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}

    async def _reader(self, http: httpx.AsyncClient, index: int, deadline: float) -> None:
        rng = random.Random(f"{self.config.seed}-{index}")  # noqa: S311 (a mix of words, not a secret)
        words = list(self.config.words)
        for _ in range(self.config.max_requests_per_client):
            if time.monotonic() >= deadline:
                return
            payload = {"query": SEARCH, "variables": {"q": rng.choice(words)}}
            self.samples.append(await self._send(http, "read", payload, {}))

    async def _writer(self, http: httpx.AsyncClient, index: int, deadline: float) -> None:
        for _ in range(self.config.max_requests_per_client):
            if time.monotonic() >= deadline:
                return
            self._writes += 1
            n = self._writes
            source_id = f"drill-{self.run_id}-{n}"
            # Unique text per write, so a page found afterwards proves this very write survived.
            text = f"Drill write {n} of run {self.run_id} by writer {index}: marker {uuid.uuid4().hex}"
            meeting = f"DrillRun{self.run_id}Write{n}"
            doc = {
                "municipality": WRITE_MUNICIPALITY["subdomain"],
                "meetingName": meeting,
                "meetingDate": WRITE_DATE.isoformat(),
                "documentType": "MINUTES",
                "pages": [{"sourceId": source_id, "pageNumber": 1, "text": text}],
            }
            sample = await self._send(
                http, "write", {"query": UPSERT_DOCUMENT, "variables": {"i": doc}}, self._auth()
            )
            sample.key = source_id
            self.samples.append(sample)
            if sample.ok:
                ack = AckedWrite(
                    source_id=source_id,
                    text=text,
                    meeting_name=meeting,
                    meeting_date=WRITE_DATE.isoformat(),
                    node=sample.nodes[0] if sample.nodes else None,
                    acked_at=round(sample.ended, 4),
                )
                self.acked.append(ack)
                if self._ack_file is not None:
                    self._ack_file.write(json.dumps(dataclasses.asdict(ack)) + "\n")
                    self._ack_file.flush()

    async def _send(
        self, http: httpx.AsyncClient, kind: Kind, payload: dict[str, Any], headers: dict[str, str]
    ) -> Sample:
        started = self.now()
        try:
            resp = await http.post("/graphql", json=payload, headers=headers)
        except httpx.HTTPError as exc:
            return Sample(kind, started, self.now(), False, f"TRANSPORT:{type(exc).__name__}", str(exc)[:300])
        ended = self.now()
        try:
            body = resp.json()
        except ValueError:
            return Sample(kind, started, ended, False, f"HTTP {resp.status_code}", resp.text[:300])
        if not isinstance(body, dict):
            return Sample(kind, started, ended, False, f"HTTP {resp.status_code}", resp.text[:300])
        routing = (body.get("extensions") or {}).get("routing") or []
        nodes = tuple(str(d.get("node")) for d in routing if isinstance(d, dict))
        retried = any(bool(d.get("retried")) for d in routing if isinstance(d, dict))
        errors = body.get("errors")
        if errors:
            first = errors[0] if isinstance(errors[0], dict) else {}
            code = str((first.get("extensions") or {}).get("code") or f"HTTP {resp.status_code}")
            return Sample(
                kind, started, ended, False, code, str(first.get("message", ""))[:300], nodes, retried
            )
        if resp.status_code != 200:
            return Sample(
                kind, started, ended, False, f"HTTP {resp.status_code}", resp.text[:300], nodes, retried
            )
        return Sample(kind, started, ended, True, None, None, nodes, retried)


def ensure_write_municipality(url: str, token: str, *, attempts: int = 10) -> None:
    """Create the writers' municipality (upsertMunicipality) before a run; a few attempts, for start-up."""
    body: Any = {}
    for _ in range(attempts):
        with contextlib.suppress(httpx.HTTPError):
            resp = httpx.post(
                f"{url}/graphql",
                json={"query": UPSERT_MUNICIPALITY, "variables": {"i": WRITE_MUNICIPALITY}},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30.0,
            )
            body = resp.json()
            if resp.status_code == 200 and isinstance(body, dict) and not body.get("errors"):
                return
        time.sleep(0.5)
    raise stack.StackError(f"upsertMunicipality failed before the run: {json.dumps(body)[:500]}")


def run_load(config: LoadConfig) -> LoadResult:
    """Run a load to completion (blocking)."""
    return asyncio.run(LoadGenerator(config).run())


async def sample_readyz(
    url: str, t0: float, until: float, *, interval_s: float = 1.0
) -> list[dict[str, Any]]:
    """/readyz once per ``interval_s`` until ``until`` (monotonic): each node's health and lag, for the report."""
    rows: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
        for _ in range(int((until - time.monotonic()) / interval_s) + 2):
            if time.monotonic() >= until:
                break
            t = time.monotonic() - t0
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
                nodes = (await http.get("/readyz")).json()["nodes"]
                rows.append(
                    {
                        "t": round(t, 2),
                        "healthy": {n["name"]: n["healthy"] for n in nodes},
                        "lag_s": {n["name"]: n["lagSeconds"] for n in nodes},
                    }
                )
            await asyncio.sleep(interval_s)
    return rows


def replica_fitness(rows: Sequence[dict[str, Any]], *, max_staleness_s: float) -> dict[str, Any]:
    """Per node: the share of /readyz samples in which it was healthy with a lag the router accepts for reads."""
    out: dict[str, Any] = {}
    names = sorted({n for r in rows for n in r["healthy"]})
    for name in names:
        lags = [r["lag_s"].get(name) for r in rows]
        fit = [
            bool(r["healthy"].get(name))
            and r["lag_s"].get(name) is not None
            and r["lag_s"][name] <= max_staleness_s
            for r in rows
        ]
        known = [x for x in lags if x is not None]
        out[name] = {
            "fit_for_reads_share": round(sum(1 for f in fit if f) / len(rows), 3) if rows else None,
            "lag_s_max": max(known, default=None),
            "lag_unknown_samples": sum(1 for x in lags if x is None),
        }
    return out


async def _measured(config: LoadConfig) -> tuple[LoadResult, list[dict[str, Any]]]:
    t0 = time.monotonic()
    sampler = asyncio.create_task(sample_readyz(config.url, t0, t0 + config.duration_s))
    result = await LoadGenerator(config).run(t0=t0)
    return result, await sampler


# --- python -m ops bench load ---------------------------------------------------------------------------------------


CONNECTION_ERROR_CODES = ("UNAVAILABLE", "TIMEOUT", "INTERNAL_SERVER_ERROR")


def is_connection_error(code: str) -> bool:
    """Failures that mean a connection (client to gateway, gateway to PgBouncer, PgBouncer to PostgreSQL) failed.

    ``UNAVAILABLE`` is how the gateway reports a read no node could take (a pool timeout, a refused or lost
    connection); ``TIMEOUT`` a statement killed by ``statement_timeout`` (which, under load, is a wait for a
    connection more often than a slow query); HTTP 5xx and transport errors speak for themselves.
    """
    return code.startswith(("TRANSPORT:", "HTTP 5")) or code in CONNECTION_ERROR_CODES


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _pgbouncer_pool_size(layout: stack.StackLayout) -> int | None:
    for line in (Path(layout.dir) / "pgbouncer.ini").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "default_pool_size" and value.strip().isdigit():
            return int(value.strip())
    return None


def bench_load(args: argparse.Namespace) -> dict[str, Any]:
    """Run the load benchmark and return its report (also written to ``args.out``)."""
    layout = stack.up(Path(args.dir), base_port=args.base_port)
    pages = prepare_database(layout, pages=args.pages)
    words = search_words(layout)
    port = args.port or free_port()
    log = Path(layout.dir) / "drill-logs" / f"bench-load-{time.strftime('%Y%m%d-%H%M%S')}-gateway.log"
    env = gateway_env(
        layout,
        GATEWAY_POOL_MAX_SIZE=str(args.pool_size),
        GATEWAY_HEALTH_INTERVAL_S=str(args.health_interval),
    )
    started_machine = machine()
    with ManagedGateway(env, port=port, log_path=log) as gw:
        # A short warm-up (not measured): opens the pools and warms the caches of every node.
        run_load(LoadConfig(url=gw.url, readers=min(args.clients, 20), duration_s=3.0, words=words))
        config = LoadConfig(url=gw.url, readers=args.clients, duration_s=args.duration, words=words)
        result, readyz = asyncio.run(_measured(config))
    samples = result.samples
    reads = [s for s in samples if s.kind == "read"]
    ok = [s for s in reads if s.ok]
    errors = errors_by_code(reads)
    connection_errors = sum(n for code, n in errors.items() if is_connection_error(code))
    elapsed = max((s.ended for s in samples), default=args.duration)
    report: dict[str, Any] = {
        "benchmark": "load",
        "machine": started_machine,
        "settings": {
            "clients": args.clients,
            "duration_s": args.duration,
            "corpus_pages": pages,
            "search_words": words,
            "query": SEARCH,
            "gateway_pool_max_size_per_node": args.pool_size,
            "pgbouncer_default_pool_size": _pgbouncer_pool_size(layout),
            "health_interval_s": args.health_interval,
            "stack_dir": layout.dir,
            "gateway_log": str(log),
        },
        "requests": len(reads),
        "ok": len(ok),
        "throughput_rps": round(len(ok) / elapsed, 1) if elapsed else None,
        "latency_ms": latency_summary(reads),
        "errors_by_code": errors,
        "error_examples": error_examples(reads),
        "connection_errors": connection_errors,
        "retried_reads": sum(1 for s in ok if s.retried),
        "reads_by_node": reads_by_node(reads),
        # Replicas serve reads only when healthy and within the staleness bound (GATEWAY_MAX_STALENESS_MS, 5 s
        # by default); the primary has no lag and serves reads only as a fallback.
        "readyz_fitness": replica_fitness(readyz, max_staleness_s=5.0),
        "readyz_samples": readyz,
        "timeline": timeline(samples, duration_s=args.duration),
        "targets": [
            {"target": "0 connection errors", "actual": connection_errors, "met": connection_errors == 0},
        ],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_load(report: dict[str, Any]) -> str:
    lat = report["latency_ms"]
    lines = [
        f"{report['settings']['clients']} clients for {report['settings']['duration_s']:.0f} s on "
        f"{report['settings']['corpus_pages']:,} pages: {report['requests']:,} reads, "
        f"{report['throughput_rps']} req/s, p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms",
        f"errors: {report['errors_by_code'] or 'none'}; connection errors: {report['connection_errors']}",
        "reads by node: "
        + ", ".join(f"{n} {v['reads']:,} ({v['share']:.1%})" for n, v in report["reads_by_node"].items()),
    ]
    lines.append(
        "replicas fit for reads (share of /readyz samples): "
        + ", ".join(f"{n} {v['fit_for_reads_share']}" for n, v in report["readyz_fitness"].items())
    )
    for t in report["targets"]:
        lines.append(f"target {t['target']}: {'met' if t['met'] else 'MISSED'} (actual {t['actual']})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops bench load",
        description="Many concurrent GraphQL searches through the gateway and PgBouncer; writes docs/bench/load.json.",
    )
    parser.add_argument(
        "--dir", default=str(stack.DEFAULT_DIR), help="stack folder (booted when not running)"
    )
    parser.add_argument("--base-port", type=int, default=stack.DEFAULT_BASE_PORT, help="for a new stack only")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds")
    parser.add_argument("--pages", type=int, default=20_000, help="corpus to load when the database is empty")
    parser.add_argument(
        "--pool-size", type=int, default=25, help="gateway connections per node (PgBouncer's is 25)"
    )
    parser.add_argument("--health-interval", type=float, default=1.0, help="gateway health poll, seconds")
    parser.add_argument("--port", type=int, default=0, help="gateway port (default: a free one)")
    parser.add_argument("--out", default=str(BENCH_DIR / "load.json"))
    return parser


def main(rest: list[str]) -> int:
    """``python -m ops bench load [--clients N] [--duration S] ...``; 0 when the target is met."""
    args = build_parser().parse_args(rest)
    if args.clients < 1 or not 1 <= args.duration <= 3600:
        print("--clients must be >= 1 and --duration between 1 and 3600 s", file=sys.stderr)
        return 2
    report = bench_load(args)
    print(format_load(report))
    print(f"written to {args.out}")
    return 0 if all(t["met"] for t in report["targets"]) else 1
