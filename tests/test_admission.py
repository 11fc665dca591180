"""Admission control's two signals, in-flight count and event-loop lag (no servers needed)."""

from __future__ import annotations

import asyncio
import time

from gateway.admission import Admission


def test_the_in_flight_bound_refuses_and_counts() -> None:
    seen: list[tuple[str, str]] = []
    admission = Admission(max_in_flight=2, on_refuse=lambda reason, stage: seen.append((reason, stage)))
    first, second = admission.enter(), admission.enter()
    assert first and second
    assert admission.enter() is None
    admission.leave(first)
    assert admission.enter()
    assert seen == [("in_flight", "endpoint")] and admission.refused == 1


def test_loop_lag_closes_the_door_above_the_floor_only() -> None:
    admission = Admission(max_in_flight=100, max_loop_lag_ms=30, min_in_flight=2)
    admission.lag_ms = 80.0
    tickets = [admission.enter(), admission.enter()]
    assert all(tickets)  # below the floor a worker keeps serving, late loop or not
    assert admission.full() and admission.enter() is None
    assert admission.refused_for_lag == 1
    admission.lag_ms = 5.0
    assert not admission.full() and admission.enter()


def test_lag_off_means_only_the_count_matters() -> None:
    admission = Admission(max_in_flight=100, max_loop_lag_ms=0, min_in_flight=0)
    admission.lag_ms = 10_000.0
    assert not admission.full()


async def test_the_watcher_measures_a_blocked_loop_and_forgets_it() -> None:
    admission = Admission(max_in_flight=100, max_loop_lag_ms=30)
    watcher = asyncio.create_task(admission.watch_loop())
    await asyncio.sleep(0.05)
    time.sleep(0.2)  # a callback that holds the loop for 200 ms, as a CPU-heavy request would
    await asyncio.sleep(0.001)  # the watcher's timer, due long ago, fires in the same turn, before this one
    assert admission.lag_ms >= 100.0
    # Once the loop runs on time again, the figure decays within a few turns.
    for _ in range(100):
        await asyncio.sleep(0.02)
        if admission.lag_ms < 30.0:
            break
    assert admission.lag_ms < 30.0
    watcher.cancel()
