"""Counters of routing outcomes, for /metrics and for tests that assert what the router did."""

from __future__ import annotations

import dataclasses

__all__ = ["RouterEvents"]


@dataclasses.dataclass
class RouterEvents:
    """Monotonic counts since the router was built. Single event loop, so plain ints are enough.

    - ``reads_replica`` / ``reads_primary``: reads served by a replica / by the primary (their sum is all
      successful reads).
    - ``reads_fallback``: the part of ``reads_primary`` served there because no replica was fit at all (down,
      too stale, or none configured). A read sent to the primary only because replicas had not yet replayed
      the request's ``min_lsn`` counts in ``reads_primary`` and ``waited`` but not here.
    - ``waited``: reads that waited for a replica to reach ``min_lsn``.
    - ``retries``: reads retried on another node after their first node failed.
    - ``writes``: successful writes.
    - ``writes_refused_split_brain``: times a second node claiming to be the primary was refused writes
      (counted when the split brain is detected, once per refused node and episode).
    - ``ejections`` / ``readmissions``: nodes taken out of / put back into service.
    """

    reads_replica: int = 0
    reads_primary: int = 0
    reads_fallback: int = 0
    waited: int = 0
    #: Reads that did not wait for a token's position because too many reads were waiting already.
    wait_skipped: int = 0
    retries: int = 0
    writes: int = 0
    writes_refused_split_brain: int = 0
    ejections: int = 0
    readmissions: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts by name, for exposition as metrics."""
        return dataclasses.asdict(self)
