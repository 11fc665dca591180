"""The fault scripts. Each injects one fault and then only watches: Patroni decides and acts, nobody else.

- replica-loss: a replica's Patroni and PostgreSQL SIGKILLed; its Patroni started again after ``down_s``.
- node-loss: the primary's Patroni and PostgreSQL SIGKILLed together; the node is not restarted during the load.
- rejoin: node-loss, then the old primary's Patroni is started again after ``down_s``: it must rejoin as a
  replica (pg_rewind) on its own.
- crash: the primary's PostgreSQL alone SIGKILLed, its Patroni alive: a replica takes over at once
  (``primary_start_timeout: 0``), or Patroni restarts it when no replica can.
- switchover: ``patronictl switchover`` to the first standby, a planned change of primary.
- etcd-cut: the primary's Patroni cut off from etcd (a proxy in between is closed): it must demote its
  PostgreSQL by itself before the lock expires, and another node is promoted after ``ttl``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from ops import stack
from ops.drills.options import DrillError, DrillOptions
from ops.drills.proxy import EtcdCutProxy
from ops.drills.watch import Clock
from ops.stack import patroni

#: Drills whose fault hits the primary (the others hit a replica).
PRIMARY_FAULTS = ("node-loss", "rejoin", "crash", "switchover", "etcd-cut")


@dataclasses.dataclass
class Scenario:
    """What a fault script found out, for the report."""

    primary_before: str
    standbys_before: list[str]
    victim: str = ""
    new_primary: str | None = None
    failed: str | None = None
    #: Whether the victim stays down until the load ends (node loss): the report then ignores its health.
    victim_stays_down: bool = False
    #: Seconds it took, after the load, to get every node streaming again (a lost node's Patroni restarted).
    healed_s: float | None = None
    #: etcd-cut: the proxy between the victim's Patroni and etcd.
    proxy: EtcdCutProxy | None = None


async def _blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


def _wait_new_primary(layout: stack.StackLayout, *, other_than: str | None, timeout: float = 90.0) -> str:
    """Poll until a node (not ``other_than``, when given) is primary by Patroni's account and accepts writes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in layout.node_names:
            if name != other_than and patroni.accepts_writes(layout, name):
                return name
        time.sleep(0.1)
    raise DrillError(f"Patroni made no new primary within {timeout:.0f} s: see {layout.dir}/patroni/*.log")


async def _wait_streaming(layout: stack.StackLayout, clock: Clock, names: list[str], primary: str) -> None:
    for name in names:
        if not await _blocking(stack.wait_streaming, layout, name, primary=primary, timeout=90.0):
            raise DrillError(f"{name} did not stream from {primary} within 90 s: see {layout.dir}/patroni/{name}.log")
        clock.mark("reattached", f"{name} streams from {primary}")


async def replica_loss_script(layout: stack.StackLayout, opts: DrillOptions, clock: Clock, sc: Scenario) -> None:
    """Kill one replica's node at the fault time, keep it down for ``down_s``, start its Patroni again."""
    await clock.sleep_until(opts.duration_s * opts.fault_at)
    clock.mark("fault", f"{sc.victim}: Patroni and PostgreSQL SIGKILLed")
    await _blocking(stack.kill_node, layout, sc.victim)
    clock.mark("stopped", f"{sc.victim} is down")
    await asyncio.sleep(opts.down_s)
    clock.mark("restart", f"starting {sc.victim}'s Patroni")
    await _blocking(stack.start_patroni, layout, sc.victim)
    if await _blocking(stack.wait_streaming, layout, sc.victim, primary=sc.primary_before, timeout=60.0):
        clock.mark("restored", f"{sc.victim} streams from {sc.primary_before} again")
    else:
        raise DrillError(f"{sc.victim} did not stream from {sc.primary_before} within 60 s of its restart")


async def node_loss_script(layout: stack.StackLayout, opts: DrillOptions, clock: Clock, sc: Scenario) -> None:
    """Kill the primary's node; Patroni elects a new primary when the leader lock expires (ttl)."""
    old = sc.primary_before
    sc.victim_stays_down = True
    await clock.sleep_until(opts.duration_s * opts.fault_at)
    clock.mark("fault", f"{old} (primary): Patroni and PostgreSQL SIGKILLed together")
    await _blocking(stack.kill_node, layout, old)
    clock.mark("stopped", f"{old} is down; nothing else is done")
    new = await _blocking(_wait_new_primary, layout, other_than=old)
    sc.new_primary = new
    clock.mark("promoted", f"Patroni promoted {new}")
    await _wait_streaming(layout, clock, [n for n in sc.standbys_before if n != new], new)
    clock.mark("restored", f"every surviving standby streams from {new}")


async def rejoin_script(layout: stack.StackLayout, opts: DrillOptions, clock: Clock, sc: Scenario) -> None:
    """Node loss, then the old primary's Patroni starts again ``down_s`` later: it must rejoin as a replica."""
    await node_loss_script(layout, opts, clock, sc)
    sc.victim_stays_down = False
    await asyncio.sleep(opts.down_s)
    assert sc.new_primary is not None
    clock.mark("restart", f"starting {sc.primary_before}'s Patroni (its PostgreSQL is still on the old timeline)")
    await _blocking(stack.start_patroni, layout, sc.primary_before)
    if not await _blocking(stack.wait_streaming, layout, sc.primary_before, primary=sc.new_primary, timeout=60.0):
        raise DrillError(f"{sc.primary_before} did not rejoin within 60 s: see {layout.dir}/patroni/")
    clock.mark("rejoined", f"{sc.primary_before} streams from {sc.new_primary} (pg_rewind by Patroni)")
    clock.mark("restored", "every node streams from the new primary")


async def crash_script(layout: stack.StackLayout, opts: DrillOptions, clock: Clock, sc: Scenario) -> None:
    """Kill the primary's PostgreSQL alone (postmaster and backends); its Patroni lives and hands over (or
    restarts it, as configured)."""
    old = sc.primary_before
    await clock.sleep_until(opts.duration_s * opts.fault_at)
    clock.mark("fault", f"{old} (primary): PostgreSQL SIGKILLed, Patroni alive")
    await _blocking(stack.kill_postgres, layout, old)
    clock.mark("stopped", f"{old}'s PostgreSQL is down")
    new = await _blocking(_wait_new_primary, layout, other_than=None)
    sc.new_primary = new
    how = "restarted by its Patroni" if new == old else "failed over by Patroni"
    clock.mark("promoted", f"{new} accepts writes ({how})")
    await _wait_streaming(layout, clock, [n for n in layout.node_names if n != new], new)
    clock.mark("restored", f"every standby streams from {new}")


async def switchover_script(layout: stack.StackLayout, opts: DrillOptions, clock: Clock, sc: Scenario) -> None:
    """A planned switchover to the first standby with ``patronictl switchover``."""
    old = sc.primary_before
    candidate = sc.standbys_before[0]
    await clock.sleep_until(opts.duration_s * opts.fault_at)
    clock.mark("fault", f"patronictl switchover --leader {old} --candidate {candidate}")
    sc.new_primary = await _blocking(stack.switchover, layout, candidate=candidate)
    clock.mark("promoted", f"{sc.new_primary} accepts writes")
    await _wait_streaming(layout, clock, [n for n in layout.node_names if n != sc.new_primary], sc.new_primary)
    clock.mark("restored", f"every standby streams from {sc.new_primary}")


def _wait_demoted(layout: stack.StackLayout, name: str, *, timeout: float = 60.0) -> str:
    """Poll node ``name`` directly until it no longer accepts writes: in recovery, or not answering."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(layout.direct_dsn(name, dbname="postgres"), autocommit=True) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is not None and row[0]:
                return "read-only (in recovery)"
        except psycopg.OperationalError:
            return "not answering (being restarted read-only)"
        time.sleep(0.05)
    raise DrillError(f"{name} still accepted writes {timeout:.0f} s after losing etcd")


async def etcd_cut_script(layout: stack.StackLayout, opts: DrillOptions, clock: Clock, sc: Scenario) -> None:
    """Cut the primary's Patroni off from etcd: it must demote itself; the others elect a new primary."""
    old = sc.primary_before
    if sc.proxy is None:
        raise DrillError("etcd-cut needs the proxy in front of etcd (run_drill sets it up)")
    # The old primary keeps running as a replica of nobody (its Patroni cannot learn the new leader until it
    # reaches etcd again): the report's "every node healthy" leaves it out.
    sc.victim_stays_down = True
    await clock.sleep_until(opts.duration_s * opts.fault_at)
    clock.mark("fault", f"{old} (primary): its Patroni cut off from etcd (the proxy in between closed)")
    await _blocking(sc.proxy.cut)
    how = await _blocking(_wait_demoted, layout, old)
    clock.mark("demoted", f"{old} stopped accepting writes: {how}")
    new = await _blocking(_wait_new_primary, layout, other_than=old)
    sc.new_primary = new
    clock.mark("promoted", f"Patroni promoted {new} after {old}'s lock expired")
    await _wait_streaming(layout, clock, [n for n in sc.standbys_before if n != new], new)
    clock.mark("restored", f"every standby that reaches etcd streams from {new}")


Script = Callable[[stack.StackLayout, DrillOptions, Clock, Scenario], Awaitable[None]]

SCRIPTS: dict[str, Script] = {
    "replica-loss": replica_loss_script,
    "node-loss": node_loss_script,
    "rejoin": rejoin_script,
    "crash": crash_script,
    "switchover": switchover_script,
    "etcd-cut": etcd_cut_script,
}
