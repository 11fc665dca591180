"""Waiting for a condition in tests, instead of sleeping for a guessed time.

A test states what it waits for and the most it will wait; the wait ends as soon as the condition holds, so
a fast machine is not slowed down and a slow one is not failed by a window that was tuned elsewhere.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from ops import stack
from ops.common.net import free_port

__all__ = ["eventually", "eventually_async", "free_base_port", "free_port"]

T = TypeVar("T")


def eventually(
    condition: Callable[[], T], *, timeout_s: float = 10.0, interval_s: float = 0.05, what: str = ""
) -> T:
    """Call ``condition`` until it returns something truthy, and return that; fail the test after ``timeout_s``.

    ``condition`` is called at least once, and once more after the deadline, so a slow last poll still counts.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            value = condition()
            if value:
                return value
            pytest.fail(f"{what or 'the condition'} did not hold within {timeout_s} s")
        time.sleep(interval_s)


async def eventually_async(
    condition: Callable[[], T | Awaitable[T]],
    *,
    timeout_s: float = 10.0,
    interval_s: float = 0.05,
    what: str = "",
) -> T:
    """:func:`eventually` for a test running in the event loop; ``condition`` may be a coroutine function."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            pytest.fail(f"{what or 'the condition'} did not hold within {timeout_s} s")
        await asyncio.sleep(interval_s)


def free_base_port(*, replicas: int) -> int:
    """A base port for a throwaway stack, starting from a port the OS hands out, with every port it needs free.

    A stack listens on base..base+replicas (PostgreSQL), base+800.. (Patroni), base+900/901 (etcd), base+950
    (Redis) and base+1000 (PgBouncer), so one free port is not enough; asking the OS rather than scanning a fixed range keeps stacks that start at the
    same time on one machine (other test runs included) from picking the same block.
    """
    offsets = stack.port_offsets(replicas)
    for _ in range(200):
        base = free_port()
        if base + max(offsets) < 65536 and all(stack.port_is_free(base + o) for o in offsets):
            return base
    raise RuntimeError("no free block of ports for a test stack")
