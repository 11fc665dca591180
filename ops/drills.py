"""Failover drills: kill a database node under concurrent GraphQL load and measure what clients saw.

``python -m ops drill replica-loss`` stops one replica with ``pg_ctl stop -m immediate`` (a crash) a third of
the way into the run, leaves it down for ``--down`` seconds and starts it again. ``python -m ops drill
primary-failover`` crashes the primary the same way, promotes the standby that holds the most WAL, and
reattaches the other standbys to it (a running standby follows the new timeline; the old primary is rewound
with pg_rewind; a fresh base backup is the fallback), each with its own replication slot. With ``--sync`` the
primary first waits for ``ANY 1`` standby on every commit, so no acknowledged write can be lost.

Meanwhile ``--clients`` closed-loop clients (:mod:`ops.load`) search the corpus, and in the failover drill some
of them write one document per request, every acknowledged write going to a log. A watcher polls the gateway's
``/readyz`` ten times a second. Afterwards each acknowledged page is looked for on the (new) primary, and the
drill writes a JSON report and a PNG timeline (requests per second, errors, p95; the fault marked) to
``--reports`` (docs/drills/ by default). The exit status is 0 when every target was met.

The gateway runs as a child process with the stack's environment, a 0.5 s health interval, routing metadata on
and the response cache off. All traffic goes to 127.0.0.1; every loop is bounded in time and count.

``python -m ops drill promote`` and ``python -m ops drill reattach`` are the same two steps by hand, for the
runbook in docs/operations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg

from ops import load, stack

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_REPORTS = PROJECT / "docs" / "drills"
WRITES_UNAVAILABLE_TARGET_S = 10.0
# Lines of the gateway's log that tell the routing story (ejections, readmissions, elections), for the report.
_LOG_KEYWORDS = ("ejected", "readmitted", "primary", "refused", "unavailable", "Traceback", "ERROR")


class DrillError(stack.StackError):
    """The drill cannot run (or could not put the stack back together); the message says what to do."""


@dataclasses.dataclass(kw_only=True)
class DrillOptions:
    """Settings of one drill run; the defaults are the CLI's."""

    directory: Path = stack.DEFAULT_DIR
    base_port: int = stack.DEFAULT_BASE_PORT
    clients: int = 50
    #: Clients (out of ``clients``) that write; None: 5 for the failover drill, 0 for replica loss.
    writers: int | None = None
    duration_s: float = 60.0
    #: When the fault happens, as a fraction of the duration.
    fault_at: float = 1 / 3
    #: How long the lost replica stays down.
    down_s: float = 10.0
    sync: bool = False
    pages: int = 20_000
    reports: Path = DEFAULT_REPORTS
    port: int = 0
    #: The replica to stop (replica-loss); default: the last replica.
    node: str | None = None
    reattach: str = "auto"
    health_interval_s: float = 0.5
    #: Stem of the report files; default: the drill's name (with ``-sync`` for --sync).
    name: str | None = None
    progress: bool = True


# --- what happened when ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Event:
    t: float
    what: str
    detail: str


@dataclasses.dataclass(frozen=True)
class Readiness:
    """One answer of /readyz: which node is the primary and which nodes are healthy.

    ``t`` is when the request was sent and ``latency_s`` how long the answer took: the gateway reported this
    state somewhere in between, so under heavy load the latency is the precision of the times derived from it.
    """

    t: float
    status: int | None
    primary: str | None
    healthy: dict[str, bool]
    roles: dict[str, str]
    lag_s: dict[str, float | None] = dataclasses.field(default_factory=dict)
    latency_s: float | None = None


class Clock:
    """Seconds since the load started, and the log of the drill's own actions on the same clock."""

    def __init__(self, t0: float, *, echo: bool) -> None:
        self.t0 = t0
        self.events: list[Event] = []
        self._echo = echo

    def now(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, what: str, detail: str = "") -> float:
        t = self.now()
        self.events.append(Event(round(t, 3), what, detail))
        if self._echo:
            print(f"  t={t:6.2f}s  {what}: {detail}", flush=True)
        return t

    def first(self, what: str) -> float | None:
        return next((e.t for e in self.events if e.what == what), None)

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self.now()))


async def watch_readyz(
    url: str, clock: Clock, stop: asyncio.Event, *, interval_s: float = 0.1, limit_s: float = 7200.0
) -> list[Readiness]:
    """Poll /readyz until ``stop`` is set (or ``limit_s`` passes); every answer is kept."""
    seen: list[Readiness] = []
    # A generous timeout: an overloaded gateway answers late, and a late answer is still an answer.
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
        for _ in range(int(limit_s / interval_s)):
            if stop.is_set():
                break
            t = clock.now()
            try:
                resp = await http.get("/readyz")
                body = resp.json()
                nodes = body.get("nodes") or []
                healthy = {str(n["name"]): bool(n["healthy"]) for n in nodes}
                roles = {str(n["name"]): str(n["role"]) for n in nodes}
                lag = {str(n["name"]): n.get("lagSeconds") for n in nodes}
                primary = next((n["name"] for n in nodes if n["role"] == "primary" and n["healthy"]), None)
                latency = round(clock.now() - t, 3)
                seen.append(Readiness(round(t, 3), resp.status_code, primary, healthy, roles, lag, latency))
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                seen.append(Readiness(round(t, 3), None, None, {}, {}))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await stop.wait()
    return seen


def readiness_changes(seen: Sequence[Readiness]) -> list[dict[str, Any]]:
    """Only the /readyz answers that differ from the one before: the transitions, for the report."""
    out: list[dict[str, Any]] = []
    last: tuple[Any, ...] | None = None
    for r in seen:
        key = (r.status, r.primary, tuple(sorted(r.healthy.items())), tuple(sorted(r.roles.items())))
        if key != last:
            healthy = sorted(n for n, ok in r.healthy.items() if ok)
            out.append(
                {
                    "t": r.t,
                    "status": r.status,
                    "primary": r.primary,
                    "healthy": healthy,
                    "roles": r.roles,
                    "lag_s": r.lag_s,
                }
            )
            last = key
    return out


# --- the stack before and after ----------------------------------------------------------------------------------------


def check_topology(layout: stack.StackLayout, *, timeout: float = 30.0) -> tuple[str, list[str]]:
    """The primary and its streaming standbys; raises DrillError unless every node is up and streaming."""
    deadline = time.monotonic() + timeout
    problem = ""
    while True:
        statuses = {n: stack.node_status(layout, n) for n in layout.node_names}
        primaries = [n for n, s in statuses.items() if s.role == "primary"]
        down = [n for n, s in statuses.items() if s.role == "down"]
        if len(primaries) != 1 or down:
            problem = (
                f"expected one primary and every node up, found primary {primaries or 'none'}, down {down}"
            )
        else:
            primary = primaries[0]
            standbys = [n for n in layout.node_names if n != primary]
            lagging = [n for n in standbys if not stack.is_streaming(layout, n, primary=primary)]
            if not standbys:
                problem = "the stack has no replica"
            elif not lagging:
                return primary, standbys
            else:
                problem = f"{', '.join(lagging)} not streaming from {primary}"
        if time.monotonic() > deadline:
            hint = (
                f"'python -m ops stack status --dir {layout.dir}'; a node left behind by an earlier drill is "
                f"reattached with 'python -m ops drill reattach --dir {layout.dir} --node NAME'"
            )
            raise DrillError(f"the stack is not ready for a drill: {problem}; see {hint}")
        time.sleep(0.5)


def checkpoint(layout: stack.StackLayout, names: Sequence[str]) -> None:
    """CHECKPOINT the primary, then the standbys (a restartpoint there), before the fault.

    A crashed node replays all WAL written since its last checkpoint (restartpoint) when it starts again; after
    a corpus load that can be a gigabyte and a minute. The drill measures failover, not the age of the last
    checkpoint, so it starts from a fresh one (production nodes checkpoint every few minutes anyway).
    """
    for name in names:
        with psycopg.connect(layout.direct_dsn(name, dbname="postgres"), autocommit=True) as conn:
            conn.execute("CHECKPOINT")


def show_setting(layout: stack.StackLayout, name: str, setting: str) -> str:
    with psycopg.connect(layout.direct_dsn(name, dbname="postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT current_setting(%s)", [setting]).fetchone()
    return str(row[0]) if row else ""


def _wait_sync(layout: stack.StackLayout, primary: str, *, timeout: float = 15.0) -> bool:
    """Wait until at least one standby of ``primary`` is a synchronous (quorum) standby."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(layout.direct_dsn(primary, dbname="postgres"), autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')"
            ).fetchone()
        if row and row[0]:
            return True
        time.sleep(0.1)
    return False


def restore_sync(layout: stack.StackLayout, value: str) -> None:
    """Put ``synchronous_standby_names`` back to ``value`` on every running node (a rewound or cloned node
    inherited its source's ``postgresql.auto.conf``, so every node, not only the primary, is set)."""
    from psycopg import sql

    for name in layout.node_names:
        with (
            contextlib.suppress(psycopg.OperationalError),
            psycopg.connect(layout.direct_dsn(name, dbname="postgres"), autocommit=True) as conn,
        ):
            if value:
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(sql.Literal(value))
                )
            else:
                conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
            conn.execute("SELECT pg_reload_conf()")


def verify_acked(layout: stack.StackLayout, acked: Sequence[load.AckedWrite]) -> dict[str, Any]:
    """Look for every acknowledged page on the current primary; the missing or changed ones are lost."""
    primary = stack.current_primary(layout)
    if primary is None:
        return {
            "checked_on": None,
            "acked": len(acked),
            "lost": None,
            "lost_examples": [],
            "error": "no primary",
        }
    found: dict[str, str] = {}
    with psycopg.connect(layout.direct_dsn(primary), autocommit=True) as conn:
        ids = [a.source_id for a in acked]
        for i in range(0, len(ids), 1000):
            rows = conn.execute(
                "SELECT id, text FROM public.meeting_page WHERE meeting_date = %s AND id = ANY(%s)",
                [load.WRITE_DATE, ids[i : i + 1000]],
            ).fetchall()
            found.update({str(r[0]): str(r[1]) for r in rows})
    lost = [a for a in acked if found.get(a.source_id) != a.text]
    return {
        "checked_on": primary,
        "acked": len(acked),
        "lost": len(lost),
        "lost_examples": [dataclasses.asdict(a) for a in lost[:10]],
    }


def unknown_outcomes_applied(layout: stack.StackLayout, samples: Sequence[load.Sample]) -> dict[str, int]:
    """Writes answered 'may or may not have been applied': how many were in fact applied (for information)."""
    keys = [s.key for s in samples if s.unknown_outcome and s.key]
    primary = stack.current_primary(layout)
    if not keys or primary is None:
        return {"writes": len(keys), "applied": 0}
    with psycopg.connect(layout.direct_dsn(primary), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM public.meeting_page WHERE meeting_date = %s AND id = ANY(%s)",
            [load.WRITE_DATE, keys],
        ).fetchone()
    return {"writes": len(keys), "applied": int(row[0]) if row else 0}


# --- the fault scripts -------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Scenario:
    """What a fault script found out, for the report."""

    primary_before: str
    standbys_before: list[str]
    victim: str = ""
    new_primary: str | None = None
    positions: dict[str, int | None] = dataclasses.field(default_factory=dict)
    reattached: dict[str, str] = dataclasses.field(default_factory=dict)
    sync_names: str = ""
    failed: str | None = None


async def _blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def replica_loss_script(
    layout: stack.StackLayout, opts: DrillOptions, clock: Clock, sc: Scenario
) -> None:
    """Crash one replica at the fault time, keep it down for ``down_s``, start it and wait until it streams."""
    await clock.sleep_until(opts.duration_s * opts.fault_at)
    clock.mark("fault", f"{sc.victim} stopped with pg_ctl stop -m immediate")
    await _blocking(stack.stop_node, layout, sc.victim, mode="immediate")
    clock.mark("stopped", f"{sc.victim} is down")
    await asyncio.sleep(opts.down_s)
    clock.mark("restart", f"starting {sc.victim}")
    await _blocking(stack.start_node, layout, sc.victim)
    clock.mark("started", f"{sc.victim} accepts connections")
    if await _blocking(stack.wait_streaming, layout, sc.victim, primary=sc.primary_before, timeout=60.0):
        clock.mark("restored", f"{sc.victim} streams from {sc.primary_before} again")
    else:
        raise DrillError(f"{sc.victim} did not stream from {sc.primary_before} within 60 s of its restart")


async def failover_script(layout: stack.StackLayout, opts: DrillOptions, clock: Clock, sc: Scenario) -> None:
    """Crash the primary, promote the standby holding the most WAL, reattach every other node to it."""
    old = sc.primary_before
    await clock.sleep_until(opts.duration_s * opts.fault_at)
    clock.mark("fault", f"{old} (primary) stopped with pg_ctl stop -m immediate")
    await _blocking(stack.stop_node, layout, old, mode="immediate")
    clock.mark("stopped", f"{old} is down")
    positions = await asyncio.gather(*(_blocking(stack.wal_position, layout, n) for n in sc.standbys_before))
    sc.positions = dict(zip(sc.standbys_before, positions, strict=True))
    alive = {n: p for n, p in sc.positions.items() if p is not None}
    if not alive:
        raise DrillError("no standby answers: nothing to promote")
    # Highest WAL position wins; ties go to the first in node order, which is deterministic.
    new = max(alive, key=lambda n: (alive[n], -sc.standbys_before.index(n)))
    sc.new_primary = new
    clock.mark("promote", f"promoting {new} (WAL positions {sc.positions})")
    await _blocking(stack.promote, layout, new)
    clock.mark("promoted", f"{new} accepts writes")
    others = [n for n in sc.standbys_before if n != new]
    for name in others:
        sc.reattached[name] = await _blocking(stack.reattach, layout, name, primary=new, method=opts.reattach)
        clock.mark("reattached", f"{name} streams from {new} ({sc.reattached[name]})")
    if opts.sync:
        # Only now that a standby streams: set earlier, every write would wait until one is reattached.
        sc.sync_names = await _blocking(stack.set_synchronous, layout, new, [*others, old])
        clock.mark("sync", f"{new}: synchronous_standby_names = '{sc.sync_names}'")
    sc.reattached[old] = await _blocking(stack.reattach, layout, old, primary=new, method=opts.reattach)
    clock.mark("reattached", f"{old} streams from {new} ({sc.reattached[old]})")
    clock.mark("restored", f"every standby streams from {new}")


Script = Callable[[stack.StackLayout, DrillOptions, Clock, Scenario], Awaitable[None]]


# --- one run -----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RunData:
    result: load.LoadResult
    readiness: list[Readiness]
    clock: Clock


async def _drive(
    layout: stack.StackLayout, opts: DrillOptions, config: load.LoadConfig, script: Script, sc: Scenario
) -> RunData:
    t0 = time.monotonic()
    clock = Clock(t0, echo=opts.progress)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_readyz(config.url, clock, stop))

    async def scripted() -> None:
        try:
            await script(layout, opts, clock, sc)
        except Exception as exc:  # the load goes on; the report says what failed
            sc.failed = f"{type(exc).__name__}: {exc}"
            clock.mark("error", sc.failed)

    fault = asyncio.create_task(scripted())
    result = await load.LoadGenerator(config).run(t0=t0)
    # Recovery steps may outlast the load (a base backup of a big database); they are bounded by their own
    # timeouts, and the watcher keeps recording until they end, so the report still has the recovery times.
    async with asyncio.timeout(3600):
        await fault
    await asyncio.sleep(min(2.0, 4 * opts.health_interval_s))  # let /readyz show the final state
    stop.set()
    return RunData(result, await watcher, clock)


def run_drill(kind: str, opts: DrillOptions) -> dict[str, Any]:
    """Run the drill ``kind`` ('replica-loss' or 'primary-failover') and return its report (also written)."""
    if kind not in ("replica-loss", "primary-failover"):
        raise DrillError(f"unknown drill {kind!r}")
    failover = kind == "primary-failover"
    writers = opts.writers if opts.writers is not None else (5 if failover else 0)
    if not 0 <= writers < opts.clients:
        raise DrillError("--writers must be at least 0 and less than --clients")
    if opts.sync and not failover:
        raise DrillError("--sync applies to primary-failover only")
    name = opts.name or (kind + ("-sync" if opts.sync else ""))
    stamp = time.strftime("%Y%m%d-%H%M%S")

    layout = stack.up(opts.directory, replicas=2, base_port=opts.base_port)
    primary, standbys = check_topology(layout)
    pages = load.prepare_database(layout, pages=opts.pages, progress=opts.progress)
    words = load.search_words(layout)
    checkpoint(layout, [primary, *standbys])
    sc = Scenario(primary_before=primary, standbys_before=standbys)
    if not failover:
        sc.victim = opts.node or standbys[-1]
        if sc.victim not in standbys:
            raise DrillError(f"{sc.victim} is not a replica (replicas: {', '.join(standbys)})")
    else:
        sc.victim = primary
    sync_before = show_setting(layout, primary, "synchronous_standby_names")
    if opts.sync:
        sc.sync_names = stack.set_synchronous(layout, primary, standbys)
        if not _wait_sync(layout, primary):
            raise DrillError(f"no standby of {primary} became synchronous within 15 s")

    logs = Path(layout.dir) / "drill-logs"
    gateway_log = logs / f"{name}-{stamp}-gateway.log"
    ack_log = logs / f"{name}-{stamp}-acked.jsonl"
    port = opts.port or load.free_port()
    env = load.gateway_env(layout, GATEWAY_HEALTH_INTERVAL_S=str(opts.health_interval_s))
    token = layout.dev_secret("dev-write-token")
    if opts.progress:
        print(
            f"{name}: {opts.clients} clients ({writers} writing) for {opts.duration_s:.0f} s on {pages:,} pages; "
            f"primary {primary}, replicas {', '.join(standbys)}; gateway log {gateway_log}",
            flush=True,
        )
    try:
        with load.ManagedGateway(env, port=port, log_path=gateway_log) as gw:
            if writers:
                load.ensure_write_municipality(gw.url, token)
            config = load.LoadConfig(
                url=gw.url,
                readers=opts.clients - writers,
                writers=writers,
                duration_s=opts.duration_s,
                words=words,
                token=token,
                ack_log=ack_log if writers else None,
            )
            script = failover_script if failover else replica_loss_script
            data = asyncio.run(_drive(layout, opts, config, script, sc))
        verified = verify_acked(layout, data.result.acked) if writers else None
        unknown = unknown_outcomes_applied(layout, data.result.samples) if writers else None
    finally:
        if opts.sync:
            restore_sync(layout, sync_before)
    report = build_report(
        kind=kind,
        name=name,
        opts=opts,
        layout=layout,
        pages=pages,
        words=words,
        writers=writers,
        sc=sc,
        data=data,
        verified=verified,
        unknown=unknown,
        files={"gateway_log": str(gateway_log), "acked_log": str(ack_log) if writers else None},
    )
    opts.reports.mkdir(parents=True, exist_ok=True)
    png = opts.reports / f"{name}.png"
    report["files"]["png"] = str(png)
    report["files"]["json"] = str(opts.reports / f"{name}.json")
    plot_timeline(report, png)
    (opts.reports / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


# --- the report --------------------------------------------------------------------------------------------------------


def _first_after(seen: Sequence[Readiness], t: float, test: Callable[[Readiness], bool]) -> float | None:
    return next((r.t for r in seen if r.t >= t and test(r)), None)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


def _since(t: float | None, origin: float | None) -> float | None:
    return None if t is None or origin is None else round(t - origin, 3)


def _phase_stats(samples: Sequence[load.Sample], start: float, end: float | None) -> dict[str, Any]:
    inside = [s for s in samples if s.started >= start and (end is None or s.started < end)]
    return {
        "from_s": round(start, 3),
        "to_s": None if end is None else round(end, 3),
        "reads": load.latency_summary(s for s in inside if s.kind == "read"),
        "writes": load.latency_summary(s for s in inside if s.kind == "write"),
    }


def _longest_write_gap(samples: Sequence[load.Sample], t_fault: float | None) -> dict[str, Any] | None:
    """The longest time between two consecutive acknowledged writes around the fault: how long writes were out."""
    acks = sorted(s.ended for s in samples if s.kind == "write" and s.ok)
    if t_fault is None or not acks:
        return None
    before = [t for t in acks if t < t_fault]
    after = [t for t in acks if t >= t_fault]
    if not after:
        return {"from_s": before[-1] if before else None, "to_s": None, "seconds": None}
    points = [*(before[-1:] or [t_fault]), *after]
    gap = max(itertools.pairwise(points), key=lambda p: p[1] - p[0], default=(t_fault, after[0]))
    return {"from_s": round(gap[0], 3), "to_s": round(gap[1], 3), "seconds": round(gap[1] - gap[0], 3)}


def _gateway_log_excerpt(path: Path, *, limit: int = 60) -> list[str]:
    if not path.exists():
        return []
    lines = [
        line.rstrip()
        for line in path.read_text(errors="replace").splitlines()
        if any(k in line for k in _LOG_KEYWORDS)
    ]
    return lines[:limit]


def build_report(
    *,
    kind: str,
    name: str,
    opts: DrillOptions,
    layout: stack.StackLayout,
    pages: int,
    words: Sequence[str],
    writers: int,
    sc: Scenario,
    data: RunData,
    verified: dict[str, Any] | None,
    unknown: dict[str, int] | None,
    files: dict[str, Any],
) -> dict[str, Any]:
    """Everything the drill measured, with its targets; see docs/operations.md for each field's meaning."""
    samples = data.result.samples
    clock = data.clock
    seen = data.readiness
    reads = [s for s in samples if s.kind == "read"]
    writes = [s for s in samples if s.kind == "write"]
    t_fault = clock.first("fault")
    victim = sc.victim
    detection: dict[str, Any] = {}
    recovery: dict[str, Any] = {}
    t_recovered: float | None = None
    if kind == "replica-loss" and t_fault is not None:
        t_restart = clock.first("restart")
        t_dead = _first_after(seen, t_fault, lambda r: r.healthy.get(victim) is False)
        # Reads in flight at the fault count too: they were sent to the node before it died.
        retried = [s.started for s in reads if s.retried and s.ended >= t_fault]
        before_restart = [t for t in retried if t_restart is None or t < t_restart]
        detection = {
            "readyz_shows_node_down_s": _since(t_dead, t_fault),
            # Negative: every read that met the dead node had been sent before the crash.
            "last_read_sent_to_dead_node_s": _since(max(before_restart, default=None), t_fault),
            "reads_retried_on_another_node": len(retried),
            "note": "a read sent to the dead node fails there and is retried by the router on another node "
            "(extensions.routing retried=true); the last such read is when reads stopped going to it",
        }
        readmitted = (
            _first_after(seen, t_restart, lambda r: r.healthy.get(victim) is True)
            if t_restart is not None
            else None
        )
        first_read = min(
            (
                s.started
                for s in reads
                if s.ok and victim in s.nodes and t_restart is not None and s.started >= t_restart
            ),
            default=None,
        )
        lags = [
            r.lag_s.get(victim)
            for r in seen
            if readmitted is not None and r.t >= readmitted and r.lag_s.get(victim) is not None
        ]
        recovery = {
            "restarted_at_s": t_restart,
            "readmitted_after_restart_s": _since(readmitted, t_restart),
            "first_read_served_after_restart_s": _since(first_read, t_restart),
            "reads_served_after_restart": sum(
                1
                for s in reads
                if s.ok and victim in s.nodes and t_restart is not None and s.started >= t_restart
            ),
            "streaming_after_restart_s": _since(clock.first("restored"), t_restart),
            # The lag /readyz reported for the node once readmitted: above the gateway's staleness bound (5 s by
            # default) it is healthy but gets no reads.
            "readyz_lag_after_readmission_s": {
                "min": min((x for x in lags if x is not None), default=None),
                "max": max((x for x in lags if x is not None), default=None),
            },
        }
        t_recovered = readmitted
    elif kind == "primary-failover" and t_fault is not None:
        new = sc.new_primary
        t_dead = _first_after(seen, t_fault, lambda r: r.healthy.get(victim) is False)
        t_new = _first_after(seen, t_fault, lambda r: new is not None and r.primary == new)
        first_ack = min(
            (s.ended for s in writes if s.ok and s.started >= t_fault and new in s.nodes), default=None
        )
        detection = {
            "readyz_shows_primary_down_s": _since(t_dead, t_fault),
            "readyz_shows_new_primary_s": _since(t_new, t_fault),
            "promoted_at_s": _since(clock.first("promoted"), t_fault),
        }
        gap = _longest_write_gap(samples, t_fault)
        all_back = _first_after(
            seen,
            clock.first("restored") or float("inf"),
            lambda r: r.primary == new and bool(r.healthy) and all(r.healthy.values()),
        )
        recovery = {
            "first_write_acked_by_new_primary_s": _since(first_ack, t_fault),
            "writes_unavailable": gap,
            "topology_restored_s": _since(clock.first("restored"), t_fault),
            "readyz_all_nodes_healthy_s": _since(all_back, t_fault),
            "reattached": sc.reattached,
        }
        t_recovered = all_back
    phases = {
        "before": _phase_stats(samples, 0.0, t_fault),
        "during": _phase_stats(samples, t_fault, t_recovered) if t_fault is not None else None,
        "after": _phase_stats(samples, t_recovered, None) if t_recovered is not None else None,
    }
    failed_reads = sum(1 for s in reads if not s.ok)
    targets: list[dict[str, Any]] = [
        {"target": "0 failed reads", "actual": failed_reads, "met": failed_reads == 0},
    ]
    if sc.failed:
        targets.append({"target": "fault script completed", "actual": sc.failed, "met": False})
    if kind == "replica-loss":
        served = recovery.get("first_read_served_after_restart_s")
        targets.append(
            {
                "target": "replica readmitted and serving reads again before the end",
                "actual": served,
                "met": served is not None,
            }
        )
    else:
        gap_s = (recovery.get("writes_unavailable") or {}).get("seconds")
        targets.append(
            {
                "target": f"writes unavailable <= {WRITES_UNAVAILABLE_TARGET_S:.0f} s",
                "actual": gap_s,
                "met": gap_s is not None and gap_s <= WRITES_UNAVAILABLE_TARGET_S,
            }
        )
        lost = verified["lost"] if verified else None
        if opts.sync:
            targets.append(
                {"target": "0 acknowledged writes lost (--sync)", "actual": lost, "met": lost == 0}
            )
    by_code_reads = load.errors_by_code(reads)
    by_code_writes = load.errors_by_code(writes)
    return {
        "drill": kind,
        "name": name,
        "machine": load.machine(),
        "settings": {
            "clients": opts.clients,
            "writers": writers,
            "duration_s": opts.duration_s,
            "fault_at_s": round(opts.duration_s * opts.fault_at, 3),
            "down_s": opts.down_s if kind == "replica-loss" else None,
            "sync": opts.sync,
            "synchronous_standby_names": sc.sync_names or None,
            "reattach_method": opts.reattach if kind == "primary-failover" else None,
            "health_interval_s": opts.health_interval_s,
            "corpus_pages": pages,
            "search_words": list(words),
            "stack_dir": layout.dir,
        },
        "topology": {
            "primary_before": sc.primary_before,
            "standbys_before": sc.standbys_before,
            "victim": victim,
            "new_primary": sc.new_primary,
            "wal_positions_at_promotion": sc.positions or None,
            "primary_after": stack.current_primary(layout),
        },
        "requests": {
            "total": len(samples),
            "reads": len(reads),
            "writes": len(writes),
            "failed_reads": failed_reads,
            "failed_writes": sum(1 for s in writes if not s.ok),
        },
        "errors": {
            "reads_by_code": by_code_reads,
            "writes_by_code": by_code_writes,
            "examples": load.error_examples(samples),
        },
        "latency_ms": phases,
        "detection": detection,
        "recovery": recovery,
        "acknowledged_writes": ({**(verified or {}), "unknown_outcome": unknown} if writers else None),
        "reads_by_node": load.reads_by_node(reads),
        "slowest_requests": load.slowest(samples),
        "events": [dataclasses.asdict(e) for e in clock.events],
        "readyz_changes": readiness_changes(seen),
        "readyz_polls": {
            "answered": sum(1 for r in seen if r.status is not None),
            "failed": sum(1 for r in seen if r.status is None),
            "latency_ms_p50": _ms(
                load.percentile([r.latency_s for r in seen if r.latency_s is not None], 50)
            ),
            "latency_ms_max": _ms(max((r.latency_s for r in seen if r.latency_s is not None), default=None)),
        },
        "gateway_log_excerpt": _gateway_log_excerpt(Path(files["gateway_log"])),
        "timeline": load.timeline(samples, duration_s=opts.duration_s),
        "targets": targets,
        "files": files,
    }


def plot_timeline(report: dict[str, Any], path: Path) -> None:
    """Requests per second, errors per second and p95 per second, with the fault and recovery steps marked."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a file only
    import matplotlib.pyplot as plt

    rows = report["timeline"]
    # Each row is the bucket [t, t + 1 s): draw it at its middle, so an error is never drawn before its cause.
    t = [r["t"] + 0.5 for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True, constrained_layout=True)
    rps, err, lat = axes
    rps.plot(t, [r["read_ok"] for r in rows], label="reads ok / s", color="tab:blue")
    if report["settings"]["writers"]:
        rps.plot(t, [r["write_ok"] for r in rows], label="writes ok / s", color="tab:green")
    rps.set_ylabel("requests / s")
    width = 0.9
    err.bar(t, [r["read_errors"] for r in rows], width=width, label="failed reads / s", color="tab:red")
    if report["settings"]["writers"]:
        err.bar(
            t,
            [r["write_errors"] for r in rows],
            width=width,
            bottom=[r["read_errors"] for r in rows],
            label="failed writes / s",
            color="tab:orange",
        )
    err.set_ylabel("errors / s")
    err.set_ylim(bottom=0, top=max(1, *(r["read_errors"] + r["write_errors"] for r in rows)) * 1.15)
    lat.plot(t, [r["read_p95_ms"] for r in rows], label="read p95", color="tab:blue")
    if report["settings"]["writers"]:
        lat.plot(t, [r["write_p95_ms"] for r in rows], label="write p95", color="tab:green")
    lat.set_ylabel("p95 latency (ms)")
    lat.set_xlabel("seconds since the load started")
    colors = {
        "fault": "red",
        "promoted": "purple",
        "restart": "purple",
        "reattached": "gray",
        "restored": "green",
    }
    for event in report["events"]:
        color = colors.get(event["what"])
        if color is None:
            continue
        for ax in axes:
            ax.axvline(
                event["t"], color=color, linestyle="--" if event["what"] != "fault" else "-", linewidth=1
            )
        rps.annotate(
            event["what"],
            (event["t"], 0.97),
            xycoords=("data", "axes fraction"),
            xytext=(-3, 0),
            textcoords="offset points",
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
            color=color,
        )
    during = report["latency_ms"]["during"]
    if during is not None:
        end = during["to_s"] if during["to_s"] is not None else t[-1]
        for ax in axes:
            ax.axvspan(during["from_s"], end, color="red", alpha=0.06)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    met = all(x["met"] for x in report["targets"])
    fig.suptitle(
        f"{report['name']}: {report['settings']['clients']} clients, {report['requests']['total']:,} requests, "
        f"{report['requests']['failed_reads']} failed reads; targets {'met' if met else 'MISSED'}"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_report(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [
        f"{report['name']}: {report['requests']['total']:,} requests ({report['requests']['reads']:,} reads, "
        f"{report['requests']['writes']:,} writes)"
    ]
    lines.append(
        f"errors: reads {report['errors']['reads_by_code'] or 'none'}, "
        f"writes {report['errors']['writes_by_code'] or 'none'}"
    )
    for phase, stats in report["latency_ms"].items():
        if stats is None:
            continue
        r = stats["reads"]
        lines.append(
            f"  {phase:<6} reads p50/p95/p99 {r['p50_ms']}/{r['p95_ms']}/{r['p99_ms']} ms ({r['requests']:,})"
        )
    lines.append(f"detection: {json.dumps({k: v for k, v in report['detection'].items() if k != 'note'})}")
    lines.append(f"recovery: {json.dumps(report['recovery'])}")
    if report["acknowledged_writes"] is not None:
        acked = report["acknowledged_writes"]
        lines.append(
            f"acknowledged writes: {acked.get('acked')} checked on {acked.get('checked_on')}, "
            f"lost {acked.get('lost')}; unknown outcome {acked.get('unknown_outcome')}"
        )
    for target in report["targets"]:
        lines.append(
            f"target {target['target']}: {'met' if target['met'] else 'MISSED'} (actual {target['actual']})"
        )
    lines.append(f"report {report['files']['json']}, timeline {report['files']['png']}")
    return "\n".join(lines)


# --- CLI ---------------------------------------------------------------------------------------------------------------


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
