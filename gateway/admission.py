"""Admission control: a bounded amount of GraphQL work in flight per worker, refused fast past it.

Two signals close the door, and either is enough:

* **Requests in flight** reach ``max_in_flight``.
* **Event-loop lag** passes ``max_loop_lag_ms`` while at least ``min_in_flight`` requests run. The lag is how
  late a 10 ms timer fires, averaged over the last few turns of the loop: it is the time every callback of the worker waits for its turn, a refusal's
  included. A count of requests cannot see it (forty cache hits cost little, forty cold searches saturate the
  core), so admitting by count alone lets each new request lengthen every loop turn until even a refusal takes
  a hundred milliseconds. Refusing while the loop is late keeps turns short, so the refusals themselves stay
  fast and the requests already admitted keep their latency. The floor of ``min_in_flight`` keeps a worker
  serving when the lag comes from elsewhere (another process on the core).

A request from a holder of a write token is admitted even past both bounds (``priority``): writes are few,
rate-limited per token, and cannot simply be retried elsewhere the way a read can, so a crowd of anonymous
readers must not be able to refuse them. Only a valid token counts: the check is the same hash comparison
the endpoint makes.

Past either bound a request is answered at once with 503, ``Retry-After`` and the code ``OVERLOADED``. Under
``serve`` the refusal happens in the HTTP protocol itself, as soon as the request head is parsed
(``gateway.http_protocol``), before any task, routing or middleware exists for it; the endpoint checks again for
the requests that pass (and for servers without that protocol, such as tests in a thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

LAG_INTERVAL_S = 0.01
# The figure is a moving average of the samples (each new one weighs a fifth): a loop that stays late closes the
# door within a few turns, while one late turn (the process descheduled once by a busy host) does not.
LAG_WEIGHT = 0.2


class Admission:
    """Counts requests in flight and watches the loop; ``enter`` returns None when the worker is full."""

    def __init__(
        self,
        *,
        max_in_flight: int,
        retry_after_s: int = 1,
        max_loop_lag_ms: float = 0.0,
        min_in_flight: int = 8,
        on_refuse: Callable[[str, str], None] | None = None,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.retry_after_s = retry_after_s
        self.max_loop_lag_ms = max_loop_lag_ms
        self.min_in_flight = min_in_flight
        self.on_refuse = on_refuse
        self.in_flight = 0
        self.refused = 0
        self.refused_for_lag = 0
        self.lag_ms = 0.0
        #: Whether an ``Authorization`` header value belongs to a writer (set by the app; None: nobody has
        #: priority). The HTTP protocol asks it before refusing early.
        self.priority: Callable[[str], bool] | None = None

    def full(self) -> bool:
        """Whether a new request would be refused now (counts nothing)."""
        if self.in_flight >= self.max_in_flight:
            return True
        return 0 < self.max_loop_lag_ms < self.lag_ms and self.in_flight >= self.min_in_flight

    def refuse(self, stage: str = "endpoint") -> None:
        """Count one refusal, made at ``stage`` (``protocol`` or ``endpoint``); ``on_refuse`` gets the reason
        (``in_flight`` or ``loop_lag``) and the stage."""
        self.refused += 1
        reason = "in_flight" if self.in_flight >= self.max_in_flight else "loop_lag"
        if reason == "loop_lag":
            self.refused_for_lag += 1
        if self.on_refuse is not None:
            self.on_refuse(reason, stage)

    def enter(self, *, priority: bool = False) -> bool | None:
        """A ticket (True) when admitted, None when full (a ``priority`` request is admitted regardless). Pass
        the ticket back to :meth:`leave`."""
        if not priority and self.full():
            self.refuse()
            return None
        self.in_flight += 1
        return True

    def leave(self, ticket: bool | None) -> None:
        if ticket:
            self.in_flight -= 1

    async def watch_loop(self) -> None:
        """Measure the event loop's lag until cancelled (nothing to do when the lag bound is off)."""
        if self.max_loop_lag_ms <= 0:
            return
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(LAG_INTERVAL_S)
            late_ms = max(0.0, (loop.time() - asked - LAG_INTERVAL_S) * 1000.0)
            self.lag_ms += LAG_WEIGHT * (late_ms - self.lag_ms)


# The admission of this process's app and its ready-made refusal, for the HTTP protocol's early refusals: under
# ``serve`` there is one app per worker process.
_current: tuple[Admission, bytes, bytes] | None = None


def install(admission: Admission, head: bytes, errors: bytes) -> None:
    """Make ``admission`` the one the HTTP protocol consults, with the refusal it sends: ``head`` is the status
    line and header lines, each ending in CRLF, without content-length, connection or the blank line;
    ``errors`` is the JSON of the response's ``errors`` list (the protocol adds ``extensions.traceId``)."""
    global _current
    _current = (admission, head, errors)


def installed() -> tuple[Admission, bytes, bytes] | None:
    """What :func:`install` made current in this process, if anything."""
    return _current
