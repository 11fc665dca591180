"""Promotion and split brain on a throwaway stack of its own (the shared session stack is never promoted).

The scenario of a failover, bounded in time: the primary's node is lost (Patroni and PostgreSQL SIGKILLed),
writes are refused, Patroni promotes the replica once the leader lock expires, and the router takes writes
there within 3 s with no restart. Then the old primary's PostgreSQL is started by hand *without* its Patroni,
on its old timeline, still claiming to be primary (what Patroni exists to prevent), and the router refuses it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ops import stack
from ops.stack.process import as_server_user
from routing import NoPrimaryError, RequestRouting, Router, RouterConfig
from tests.helpers import eventually_async, free_base_port

pytestmark = pytest.mark.slow


@pytest.fixture()
def own_stack() -> Iterator[stack.StackLayout]:
    directory = Path(tempfile.mkdtemp(prefix="civic-routing-promotion-"))
    try:
        yield stack.up(directory, replicas=1, base_port=free_base_port(replicas=1))
    finally:
        stack.destroy(directory)
        shutil.rmtree(directory, ignore_errors=True)


async def _served_by(conn: psycopg.AsyncConnection[Any]) -> str:
    cur = await conn.execute("SELECT current_setting('civic.node_name')")
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def test_promotion_is_followed_and_the_old_primary_refused(
    own_stack: stack.StackLayout, caplog: pytest.LogCaptureFixture
) -> None:
    layout = own_stack
    # The stack is not migrated (no gateway role): go through PgBouncer's transaction aliases as postgres.
    nodes = {name: layout.bouncer_dsn(name, user="postgres") for name in layout.node_names}
    async with Router(
        nodes, RouterConfig(health_interval_s=0.5, pool_timeout_s=2.0, connect_timeout_s=2.0)
    ) as router:
        assert router.primary == "node1"
        assert (await router.write(_served_by))[0] == "node1"

        await asyncio.to_thread(stack.kill_node, layout, "node1")
        await eventually_async(lambda: router.primary is None, timeout_s=3, what="losing the crashed primary")
        with pytest.raises(NoPrimaryError):
            await router.write(_served_by)

        # Nobody promotes: Patroni does, when node1's leader lock expires (ttl 20 s, plus a loop or two).
        assert await asyncio.to_thread(stack.wait_primary, layout, "node2", timeout=60.0) == "node2"
        await eventually_async(lambda: router.primary == "node2", timeout_s=3, what="following the promotion")
        request = RequestRouting()
        served, lsn = await router.write(_served_by, request)
        assert served == "node2" and lsn > 0
        state = next(s for s in router.nodes() if s.name == "node2")
        assert (state.role, state.timeline) == ("primary", 2)
        # The promoted node now serves the request's read-your-writes read as the only primary.
        assert await router.read(_served_by, request) == "node2"

        caplog.clear()
        # Back as a primary on timeline 1, its Patroni still dead: nothing demotes it.
        # (-l and no pipes: a postmaster that inherited our stdout would keep subprocess.run waiting for EOF.)
        await asyncio.to_thread(
            subprocess.run,
            as_server_user(
                [
                    stack.pg_bin("pg_ctl"),
                    "start",
                    "-w",
                    "-D",
                    str(layout.node_dir("node1")),
                    "-l",
                    f"{layout.dir}/node1-started-by-hand.log",
                ]
            ),
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
        )
        await eventually_async(
            lambda: router.events.writes_refused_split_brain >= 1,
            timeout_s=5,
            what="refusing the old primary",
        )
        old = next(s for s in router.nodes() if s.name == "node1")
        assert old.role == "primary" and not old.healthy and "split brain" in (old.ejected_reason or "")
        assert router.primary == "node2"
        assert (await router.write(_served_by))[0] == "node2"
        assert any(
            r.name == "routing" and r.levelno == logging.WARNING and "split brain" in r.getMessage()
            for r in caplog.records
        )
