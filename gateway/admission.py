"""Admission control: a bounded number of GraphQL requests in flight per worker.

Past the bound a request is answered at once with 503, ``Retry-After`` and the code ``OVERLOADED``, instead
of queueing behind the others for a pool slot until it times out: a crowd then gets fast, explicit answers
and the requests already admitted keep their latency.
"""

from __future__ import annotations


class Admission:
    """Counts requests in flight; ``enter`` returns None when the worker is full."""

    def __init__(self, *, max_in_flight: int, retry_after_s: int = 1) -> None:
        self.max_in_flight = max_in_flight
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self.refused = 0

    def enter(self) -> bool | None:
        """A ticket (True) when admitted, None when full. Pass the ticket back to :meth:`leave`."""
        if self.in_flight >= self.max_in_flight:
            self.refused += 1
            return None
        self.in_flight += 1
        return True

    def leave(self, ticket: bool | None) -> None:
        if ticket:
            self.in_flight -= 1
