"""The fault scripts: crash a replica and bring it back, or crash the primary and fail over."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from ops import stack
from ops.drills.options import DrillError, DrillOptions
from ops.drills.watch import Clock


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
