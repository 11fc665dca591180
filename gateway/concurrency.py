"""An adaptive bound on the requests of one worker that go to the databases, refused at once past it.

Admission (:mod:`gateway.admission`) bounds what a worker itself can carry. It cannot see the databases: on a
host where PostgreSQL shares the cores, or with a corpus where a cold search costs tens of milliseconds of
server CPU, forty requests in flight are forty statements queued in PostgreSQL, each waiting for the ones
before it, and the latency of every admitted request grows with the crowd. The number of statements the
servers can run at once without queueing is not a setting anyone can know: it changes with the query mix, the
cache's hit rate, the corpus and the hardware.

So the bound is *learned*, with the gradient algorithm of Netflix's ``concurrency-limits`` (Gradient2):

* every request that misses the response cache takes a slot for as long as it runs; its run time is a sample;
* samples are averaged over short windows (``WINDOW_SAMPLES`` requests and at least ``WINDOW_MIN_S``, or
  whatever came in ``WINDOW_MAX_S`` when the servers are slow), which smooths over the mix of cheap page reads
  and expensive searches while reacting within a second even when each query takes hundreds of milliseconds;
* a moving average of the windows is the latency the workload has without queueing: it follows a window that
  is faster at once (a fifth of the way per window) and one that is slower only slowly (over ``LONG_WINDOW``
  windows), so it tracks the lower edge of the latencies and a lasting crowd cannot make queueing look normal.
  When a window's average exceeds it by more than ``tolerance``, the bound shrinks in proportion (never by more
  than half at once); otherwise it grows by a small queue allowance (the square root of the bound) so it keeps
  probing for more throughput;
* while fewer than half the slots are in use, the bound does not grow: the workload, not the servers, is
  the limit then, and a bound learned while idle would mean nothing under a crowd.

The bound starts small (4) and grows as latency allows, as TCP's slow start does: a worker that starts under a
crowd refuses some requests for a second or two rather than sending the crowd to servers it knows nothing of.

Past the bound a request is refused at once (503 ``OVERLOADED`` with ``Retry-After``), not queued: a refusal
costs a fraction of a millisecond and tells the client to come back, while a queue would make everybody wait.
The requests admitted keep a latency close to what they have without a crowd, and the servers stay busy at
the concurrency where they are fastest, so throughput does not collapse.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

WINDOW_SAMPLES = 16
WINDOW_MIN_S = 0.05
WINDOW_MAX_S = 0.5  # a window closes after this with whatever samples it has: slow servers need a quick answer
LONG_WINDOW = 600  # windows: the no-queueing latency follows a change of workload within tens of seconds
SMOOTHING = 0.2


class DatabaseGate:
    """Slots for requests that go to the databases; ``enter`` returns None when all are taken."""

    def __init__(
        self,
        *,
        initial: int = 4,
        min_limit: int = 2,
        max_limit: int = 64,
        tolerance: float = 2.0,
        enabled: bool = True,
        on_update: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self._clock = clock
        self.on_update = on_update
        self.min_limit = min_limit
        self.max_limit = max(min_limit, max_limit)
        self.tolerance = tolerance
        self.limit = float(min(max(initial, min_limit), self.max_limit))
        self.in_flight = 0
        self.refused = 0
        self.long_s: float | None = None  # the no-queueing latency estimate
        self._windows = 0
        self._window_started = clock()
        self._window_sum = 0.0
        self._window_count = 0
        self._window_peak = 0

    @property
    def bound(self) -> int:
        """Slots available now (the learned limit, rounded down)."""
        return max(self.min_limit, int(self.limit))

    def enter(self) -> float | None:
        """A ticket (the start time) when a slot is free, None when the request must be refused."""
        if not self.enabled:
            return self._clock()
        if self.in_flight >= self.bound:
            self.refused += 1
            return None
        self.in_flight += 1
        self._window_peak = max(self._window_peak, self.in_flight)
        return self._clock()

    def leave(self, ticket: float | None) -> None:
        """Give the slot back; the time since ``enter`` is a sample."""
        if ticket is None or not self.enabled:
            return
        self.in_flight -= 1
        now = self._clock()
        self._window_sum += now - ticket
        self._window_count += 1
        elapsed = now - self._window_started
        if (self._window_count >= WINDOW_SAMPLES and elapsed >= WINDOW_MIN_S) or elapsed >= WINDOW_MAX_S:
            self._update(self._window_sum / self._window_count, self._window_peak)
            self._window_started = now
            self._window_sum = 0.0
            self._window_count = 0
            self._window_peak = self.in_flight

    def _update(self, short_s: float, peak: int) -> None:
        self._windows += 1
        if self.long_s is None:
            self.long_s = short_s
        elif short_s < self.long_s:
            self.long_s += SMOOTHING * (short_s - self.long_s)
        else:
            # Up slowly, down quickly: the estimate follows the lower edge of the windows' latencies, so a crowd
            # that keeps the servers queueing cannot teach the gate that queueing is normal.
            self.long_s += (short_s - self.long_s) / LONG_WINDOW
        if peak < self.limit / 2:
            return  # the workload, not the servers, limits concurrency: nothing to learn
        gradient = max(0.5, min(1.0, self.tolerance * self.long_s / short_s))
        target = self.limit * gradient + math.sqrt(self.limit)
        self.limit = self.limit * (1 - SMOOTHING) + target * SMOOTHING
        self.limit = max(float(self.min_limit), min(float(self.max_limit), self.limit))
        if self.on_update is not None:
            self.on_update(self.bound)
