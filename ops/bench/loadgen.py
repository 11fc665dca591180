"""Concurrent GraphQL load against a gateway, shared by the failover drills and ``python -m ops bench load``.

Each client is a closed loop (send, wait for the answer, send again) on one ``httpx.AsyncClient``; readers
search for words that the corpus holds, writers upsert one single-page document per request, each with a page
text of its own, and every acknowledged write is logged so that a drill can check afterwards that none was
lost. Every request becomes one :class:`Sample`: when it started and ended, whether it succeeded, the error
code a client would act on (``extensions.code``, else the HTTP status, else the transport failure) and the
nodes that ``extensions.routing`` says served it. The loops are bounded in time and in count and send traffic
only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import random
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Literal

import httpx

from ops import stack

SEARCH = "query DrillSearch($q: String!) { search(query: $q, first: 20) { edges { cursor node { id } } } }"
UPSERT_MUNICIPALITY = (
    "mutation DrillTown($i: MunicipalityInput!) "
    "{ upsertMunicipality(input: $i) { municipality { id } consistencyToken } }"
)
UPSERT_DOCUMENT = "mutation DrillWrite($i: DocumentInput!) { upsertDocument(input: $i) { document { id } consistencyToken } }"

# Words and phrases of the synthetic corpus (ops/corpus/), from very common to rare; the ones that match no
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


async def measured(config: LoadConfig) -> tuple[LoadResult, list[dict[str, Any]]]:
    t0 = time.monotonic()
    sampler = asyncio.create_task(sample_readyz(config.url, t0, t0 + config.duration_s))
    result = await LoadGenerator(config).run(t0=t0)
    return result, await sampler
