"""The router against the real session stack: spreading, read-your-writes, retries, ejection, no primary.

Nothing here stops a server or promotes a node: the stack is shared. Faults are injected with a TCP proxy in
front of PgBouncer for one node's DSN, and replication delay by pausing replay on the replicas (always resumed).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import psycopg
import pytest

from ops import stack
from routing import (
    NoPrimaryError,
    RequestRouting,
    Router,
    RouterConfig,
    RoutingError,
    UnavailableError,
    decode_token,
    encode_token,
)
from tests.faultproxy import FaultProxy
from tests.helpers import eventually, eventually_async

Conn = psycopg.AsyncConnection[Any]


def make_router(
    nodes: dict[str, str],
    *,
    max_size: int = 10,
    pool_timeout: float = 2.0,
    consistency_wait_ms: int = 300,
    max_staleness_ms: int = 60_000,
) -> Router:
    """A router that polls every 0.2 s, so tests see ejections and catch-ups quickly.

    The staleness bound is generous because a replica whose replay is paused reports the age of its last
    replayed commit as its lag, and these tests want such replicas to stay eligible.
    """
    return Router(
        nodes,
        RouterConfig(
            pool_min_size=1,
            pool_max_size=max_size,
            health_interval_s=0.2,
            pool_timeout_s=pool_timeout,
            connect_timeout_s=2.0,
            consistency_wait_ms=consistency_wait_ms,
            max_staleness_ms=max_staleness_ms,
        ),
    )


async def cluster_name(conn: Conn) -> str:
    cur = await conn.execute("SELECT current_setting('civic.node_name')")
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


def node_dsns(layout: stack.StackLayout) -> dict[str, str]:
    return {name: layout.bouncer_dsn(name) for name in layout.node_names}




@pytest.fixture()
async def router(stack_layout: stack.StackLayout) -> AsyncIterator[Router]:
    async with make_router(node_dsns(stack_layout)) as r:
        yield r


@pytest.fixture()
def probe_table(admin_conn: psycopg.Connection[tuple[object, ...]], stack_layout: stack.StackLayout) -> str:
    admin_conn.execute("CREATE TABLE IF NOT EXISTS routing_probe (v text PRIMARY KEY)")
    admin_conn.execute("GRANT SELECT, INSERT ON routing_probe TO gateway")
    row = admin_conn.execute("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::text").fetchone()
    assert row is not None
    _wait_replayed(
        stack_layout, int(str(row[0]))
    )  # the table must exist on the replicas before replay is paused
    return "routing_probe"


def _replicas(layout: stack.StackLayout) -> list[str]:
    return layout.node_names[1:]


def _wait_replayed(layout: stack.StackLayout, lsn: int) -> None:
    for name in _replicas(layout):
        with psycopg.connect(layout.direct_dsn(name), autocommit=True) as conn:

            def replayed(conn: psycopg.Connection[tuple[object, ...]] = conn) -> bool:
                row = conn.execute("SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn").fetchone()
                return row is not None and int(str(row[0])) >= lsn

            eventually(replayed, timeout_s=10, interval_s=0.02, what=f"{name} replaying {lsn}")


def _set_replay(layout: stack.StackLayout, name: str, *, paused: bool) -> None:
    with psycopg.connect(layout.direct_dsn(name), autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()" if paused else "SELECT pg_wal_replay_resume()")


@pytest.fixture()
def paused_replicas(stack_layout: stack.StackLayout, probe_table: str) -> Iterator[list[str]]:
    """Replay paused on every replica for the test; always resumed."""
    names = _replicas(stack_layout)
    # Patroni resumes paused replay within a loop unless the cluster is in maintenance mode.
    with stack.maintenance(stack_layout):
        try:
            for name in names:
                _set_replay(stack_layout, name, paused=True)
            yield names
        finally:
            for name in names:
                _set_replay(stack_layout, name, paused=False)


def count_of(marker: str) -> Callable[[Conn], Awaitable[int]]:
    async def fn(conn: Conn) -> int:
        cur = await conn.execute("SELECT count(*) FROM routing_probe WHERE v = %s", [marker])
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    return fn


def insert(marker: str) -> Callable[[Conn], Awaitable[str]]:
    async def fn(conn: Conn) -> str:
        await conn.execute("INSERT INTO routing_probe VALUES (%s)", [marker])
        return await cluster_name(conn)

    return fn


# --- choosing -------------------------------------------------------------------------------------------------


async def test_roles_are_discovered(router: Router) -> None:
    states = {s.name: s for s in router.nodes()}
    assert router.primary == "node1"
    assert [states[n].role for n in ("node1", "node2", "node3")] == ["primary", "replica", "replica"]
    assert all(s.healthy and s.timeline == 1 and s.ejected_reason is None for s in states.values())
    assert states["node1"].primary_lsn and states["node2"].replay_lsn and states["node2"].lag_s is not None
    assert states["node1"].pool["pool_max"] == 10


async def test_reads_spread_over_replicas(router: Router) -> None:
    request = RequestRouting()
    served = [await router.read(cluster_name, request) for _ in range(6)]
    assert set(served) == {"node2", "node3"}
    assert [d.node for d in request.decisions] == served
    assert all(d.role == "replica" and not d.retried and d.waited_ms == 0 for d in request.decisions)

    async def slow(conn: Conn) -> str:
        await conn.execute("SELECT pg_sleep(0.1)")
        return await cluster_name(conn)

    concurrent = await asyncio.gather(*(router.read(slow) for _ in range(6)))
    assert sorted(concurrent).count("node2") == 3  # fewest in flight: an even split
    assert router.events.reads_replica >= 12 and router.events.reads_primary == 0


async def test_statement_errors_reach_the_caller_unretried(router: Router) -> None:
    async def broken(conn: Conn) -> None:
        await conn.execute("SELECT 1/0")

    async def too_slow(conn: Conn) -> None:
        # Reads autocommit: a read that needs transaction-local settings opens its own transaction.
        async with conn.transaction():
            await conn.execute("SET LOCAL statement_timeout = '50ms'")
            await conn.execute("SELECT pg_sleep(2)")

    with pytest.raises(psycopg.errors.DivisionByZero):
        await router.read(broken)
    with pytest.raises(psycopg.errors.QueryCanceled):
        await router.read(too_slow)
    assert router.events.retries == 0 and router.events.ejections == 0
    assert all(s.healthy for s in router.nodes())


async def test_cancelled_read_returns_its_connection(stack_layout: stack.StackLayout) -> None:
    nodes = {"node2": stack_layout.bouncer_dsn("node2")}
    async with make_router(nodes, max_size=1, pool_timeout=1.0) as router:

        async def sleepy(conn: Conn) -> None:
            await conn.execute("SELECT pg_sleep(5)")

        task = asyncio.create_task(router.read(sleepy))
        await eventually_async(lambda: router.nodes()[0].in_flight == 1, timeout_s=2, what="the read starting")
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The pool has one connection: a leaked one would make this read time out.
        assert await router.read(cluster_name) == "node2"
        assert router.nodes()[0].in_flight == 0


# --- writes and read-your-writes -------------------------------------------------------------------------


async def test_write_returns_the_lsn_after_commit(router: Router, probe_table: str, admin_conn: Any) -> None:
    request = RequestRouting()
    marker = uuid.uuid4().hex
    node, lsn = await router.write(insert(marker), request)
    assert node == "node1"
    current = admin_conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0]
    assert 0 < lsn <= int(current)
    assert decode_token(encode_token(lsn)) == lsn
    assert request.min_lsn == lsn  # later reads of the same request see the write
    assert request.decisions[-1].node == "node1" and request.decisions[-1].role == "primary"
    assert await router.read(count_of(marker), request) == 1
    assert router.events.writes == 1


async def test_read_your_writes_with_replay_paused(router: Router, paused_replicas: list[str]) -> None:
    marker = uuid.uuid4().hex
    _, lsn = await router.write(insert(marker))

    # Without the token a replica serves the read, and it has not seen the write.
    plain = RequestRouting()
    assert await router.read(count_of(marker), plain) == 0
    assert plain.decisions[-1].role == "replica"

    # With it, the router waits for a replica (consistency_wait_ms=300), then reads on the primary.
    waited_before, fallback_before = router.events.waited, router.events.reads_fallback
    consistent = RequestRouting(min_lsn=lsn)
    started = time.monotonic()
    assert await router.read(count_of(marker), consistent) == 1
    elapsed = time.monotonic() - started
    decision = consistent.decisions[-1]
    assert (decision.node, decision.role) == ("node1", "primary")
    assert 280 <= decision.waited_ms <= 1000 and elapsed >= 0.28
    assert router.events.waited == waited_before + 1
    assert router.events.reads_fallback == fallback_before  # not a fallback: the replicas were only behind


async def test_read_waits_for_a_replica_to_catch_up(
    stack_layout: stack.StackLayout, paused_replicas: list[str]
) -> None:
    async with make_router(node_dsns(stack_layout), consistency_wait_ms=3000) as router:
        marker = uuid.uuid4().hex
        _, lsn = await router.write(insert(marker))
        request = RequestRouting(min_lsn=lsn)
        read = asyncio.create_task(router.read(count_of(marker), request))
        await asyncio.sleep(0.3)
        assert not read.done()
        await asyncio.to_thread(_set_replay, stack_layout, "node3", paused=False)
        assert await read == 1
        decision = request.decisions[-1]
        assert (decision.node, decision.role) == ("node3", "replica")
        assert 250 <= decision.waited_ms < 3000


# --- faults -----------------------------------------------------------------------------------------------------


@pytest.fixture()
async def proxied(stack_layout: stack.StackLayout) -> AsyncIterator[tuple[Router, FaultProxy]]:
    """A router whose node2 is reached through a fault proxy in front of PgBouncer."""
    async with FaultProxy("127.0.0.1", stack_layout.pgbouncer_port) as proxy:
        nodes = node_dsns(stack_layout)
        nodes["node2"] = proxy.dsn(nodes["node2"])
        async with make_router(nodes) as router:
            yield router, proxy


async def test_read_is_retried_when_its_node_dies_mid_query(proxied: tuple[Router, FaultProxy]) -> None:
    router, proxy = proxied
    ports: list[int] = []

    async def slow(conn: Conn) -> str:
        ports.append(conn.info.port)
        await conn.execute("SELECT pg_sleep(0.5)")
        return await cluster_name(conn)

    request = RequestRouting()
    read = asyncio.create_task(router.read(slow, request))
    await eventually_async(lambda: ports, timeout_s=5, what="the first attempt connecting")
    assert ports == [proxy.port], "the first attempt should have gone to node2, through the proxy"
    proxy.kill_connections()
    assert await read == "node3"
    assert len(ports) == 2 and ports[1] != proxy.port
    decision = request.decisions[-1]
    assert decision.retried and (decision.node, decision.role) == ("node3", "replica")
    assert router.events.retries == 1 and router.events.ejections >= 1


async def test_node_ejected_while_unreachable_and_readmitted(proxied: tuple[Router, FaultProxy]) -> None:
    router, proxy = proxied

    def node2() -> Any:
        return next(s for s in router.nodes() if s.name == "node2")

    await proxy.stop()
    await eventually_async(lambda: not node2().healthy, timeout_s=3, what="ejecting node2")
    assert node2().ejected_reason and router.events.ejections == 1
    assert {await router.read(cluster_name) for _ in range(4)} == {"node3"}

    await proxy.start()
    await eventually_async(lambda: node2().healthy, timeout_s=3, what="readmitting node2")
    assert router.events.readmissions == 1
    served = {await router.read(cluster_name) for _ in range(4)}
    assert served == {"node2", "node3"}
    assert router.events.retries == 0  # the pool dropped its dead connections before readmission


async def test_node_down_at_start_does_not_block_open(stack_layout: stack.StackLayout) -> None:
    dead = stack_layout.bouncer_dsn("node2").replace(f"port={stack_layout.pgbouncer_port}", "port=1")
    nodes = node_dsns(stack_layout) | {"node2": dead}
    started = time.monotonic()
    async with make_router(nodes) as router:
        assert time.monotonic() - started < 3
        states = {s.name: s for s in router.nodes()}
        assert not states["node2"].healthy and states["node2"].role == "unknown"
        assert states["node2"].ejected_reason
        assert await router.read(cluster_name) == "node3"


async def test_write_without_primary_raises_and_sends_nothing(stack_layout: stack.StackLayout) -> None:
    nodes = {name: stack_layout.bouncer_dsn(name) for name in _replicas(stack_layout)}
    called = False

    async def fn(conn: Conn) -> None:
        nonlocal called
        called = True

    async with make_router(nodes) as router:
        assert router.primary is None
        with pytest.raises(NoPrimaryError, match="no primary is reachable; writes are unavailable"):
            await router.write(fn)
        assert not called
        assert await router.read(cluster_name) in {"node2", "node3"}  # reads still work
        # With no replica fit and no primary, a read has nowhere to go.
        with pytest.raises(UnavailableError):
            await router.read(cluster_name, RequestRouting(min_lsn=2**63))


async def test_router_must_be_opened() -> None:
    router = Router({"node1": "host=127.0.0.1 port=1 dbname=node1"})  # nothing is opened, so nothing connects
    with pytest.raises(RoutingError, match="not open"):
        await router.read(cluster_name)
    await router.close()


async def test_reads_past_the_waiting_bound_are_refused_at_once(stack_layout: stack.StackLayout) -> None:
    from routing import OverloadedError

    nodes = {"node2": stack_layout.bouncer_dsn("node2")}
    config = RouterConfig(pool_min_size=1, pool_max_size=1, pool_max_waiting=1, pool_timeout_s=10.0,
                          health_interval_s=0.2, max_staleness_ms=60_000)
    async with Router(nodes, config) as router:

        async def slow(conn: Conn) -> None:
            await conn.execute("SELECT pg_sleep(0.3)")

        outcomes = await asyncio.gather(*(router.read(slow) for _ in range(6)), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, OverloadedError)]
    served = [o for o in outcomes if o is None]
    # One holds the connection, one waits for it; the rest are told at once rather than queued for seconds.
    assert len(served) == 2 and len(refused) == 4, outcomes
    assert router.events.ejections == 0  # a busy pool is not a sick node


async def test_a_read_queued_longer_than_its_wait_is_refused(stack_layout: stack.StackLayout) -> None:
    from routing import OverloadedError

    nodes = {"node2": stack_layout.bouncer_dsn("node2")}
    # No bound on the queue's length, a long pool timeout: only the read wait can refuse here.
    config = RouterConfig(pool_min_size=1, pool_max_size=1, pool_max_waiting=0, pool_timeout_s=30.0,
                          read_wait_s=0.2, health_interval_s=0.2, max_staleness_ms=60_000)
    async with Router(nodes, config) as router:

        async def slow(conn: Conn) -> None:
            await conn.execute("SELECT pg_sleep(1.5)")

        outcomes = await asyncio.gather(*(router.read(slow) for _ in range(3)), return_exceptions=True)
        # Once the connection is free, reads are served again: the refusals left nothing behind.
        await router.read(slow)
    refused = [o for o in outcomes if isinstance(o, OverloadedError)]
    served = [o for o in outcomes if o is None]
    # One holds the only connection for 1.5 s; the others give up after 0.2 s instead of waiting it out.
    assert len(served) == 1 and len(refused) == 2, outcomes
    assert router.events.ejections == 0
