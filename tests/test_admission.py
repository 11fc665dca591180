"""Admission control's two signals, in-flight count and event-loop lag (no servers needed)."""

from __future__ import annotations

import asyncio
import time

from gateway.admission import Admission
from tests.helpers import eventually_async


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
    admission = Admission(max_in_flight=100, max_loop_lag_ms=30, min_in_flight=2)  # floor lowered to test it
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


async def test_the_watcher_sees_a_loop_that_stays_late_and_forgets_it() -> None:
    admission = Admission(max_in_flight=100, max_loop_lag_ms=30)
    watcher = asyncio.create_task(admission.watch_loop())
    await asyncio.sleep(0)  # the watcher takes its first reading and waits on its timer
    # The stimulus is a loop that is held, so the holding must block: time.sleep, not a wait on a condition.
    for _ in range(12):
        time.sleep(0.08)  # every turn of the loop held for 80 ms, as CPU-heavy requests would
        await asyncio.sleep(0.001)
    assert admission.lag_ms >= 30.0
    # Once the loop runs on time again, the figure comes down within a few dozen turns.
    await eventually_async(lambda: admission.lag_ms < 10.0, timeout_s=5.0, what="the lag figure to decay")
    watcher.cancel()


async def test_one_late_turn_does_not_close_the_door() -> None:
    admission = Admission(max_in_flight=100, max_loop_lag_ms=50)
    watcher = asyncio.create_task(admission.watch_loop())
    await asyncio.sleep(0)  # the watcher takes its first reading and waits on its timer
    time.sleep(0.1)  # the process descheduled once (a blocked loop is the stimulus)
    await asyncio.sleep(0.001)
    assert 0 < admission.lag_ms < 50.0
    watcher.cancel()


def test_a_priority_request_is_admitted_past_the_bounds_and_counted() -> None:
    admission = Admission(max_in_flight=1, max_loop_lag_ms=30, min_in_flight=0)
    held = admission.enter()
    assert held and admission.enter() is None  # full for everybody else
    writer = admission.enter(priority=True)
    assert writer and admission.in_flight == 2  # admitted, and it counts while it runs
    admission.lag_ms = 500.0
    assert admission.enter(priority=True)  # a late loop does not refuse it either
