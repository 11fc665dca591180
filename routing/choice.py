"""Pure decisions: which node serves a read, and which node claiming to be primary may take writes.

Nothing here does I/O or keeps state, so every rule is unit-tested without a database. The router feeds in
snapshots of the healthy nodes (with their in-flight counts) and acts on the answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from routing.types import NodeRole

__all__ = ["Candidate", "Claim", "Election", "ReadChoice", "choose_read", "elect_primary", "laggards"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Candidate:
    """A healthy node as the read chooser sees it."""

    name: str
    role: NodeRole
    lag_s: float | None
    replay_lsn: int | None
    in_flight: int = 0
    #: Sequence number of the last time this node was picked (0: never); the least recently picked node
    #: wins a tie on in-flight count, so sequential reads still spread over replicas.
    last_pick: int = 0


@dataclasses.dataclass(frozen=True)
class ReadChoice:
    """The node for a read. ``fallback`` is True when the primary serves it because no replica was fit."""

    node: Candidate
    fallback: bool


def _fresh(c: Candidate, max_staleness_ms: int) -> bool:
    # An unknown lag (a replica that has never replayed a transaction and is behind its receiver) is not
    # trusted to be within any bound.
    return c.role == "replica" and c.lag_s is not None and c.lag_s * 1000.0 <= max_staleness_ms


def _caught_up(c: Candidate, min_lsn: int | None) -> bool:
    return min_lsn is None or (c.replay_lsn is not None and c.replay_lsn >= min_lsn)


def laggards(candidates: Sequence[Candidate], *, max_staleness_ms: int, min_lsn: int | None) -> list[str]:
    """Replicas that are fresh enough but have not replayed ``min_lsn`` yet: the ones worth waiting for."""
    if min_lsn is None:
        return []
    return [c.name for c in candidates if _fresh(c, max_staleness_ms) and not _caught_up(c, min_lsn)]


def choose_read(
    candidates: Sequence[Candidate],
    primary: Candidate | None,
    *,
    max_staleness_ms: int,
    min_lsn: int | None,
    primary_fallback: bool,
) -> ReadChoice | None:
    """Pick the node for a read, or None when nothing may serve it.

    A replica qualifies when its lag is within ``max_staleness_ms`` and it has replayed ``min_lsn``; the
    qualifying replica with the fewest in-flight calls wins (ties: least recently picked, then list order).
    Otherwise the primary serves the read when ``primary_fallback`` allows it; it always satisfies
    ``min_lsn``, since every LSN a client holds came from a primary.
    """
    fit = [c for c in candidates if _fresh(c, max_staleness_ms) and _caught_up(c, min_lsn)]
    if fit:
        return ReadChoice(min(fit, key=lambda c: (c.in_flight, c.last_pick)), fallback=False)
    if primary is None or not primary_fallback:
        return None
    behind_only = bool(laggards(candidates, max_staleness_ms=max_staleness_ms, min_lsn=min_lsn))
    return ReadChoice(primary, fallback=not behind_only)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Claim:
    """A healthy node that says it is a primary (``pg_is_in_recovery()`` is false)."""

    name: str
    timeline: int
    lsn: int


@dataclasses.dataclass(frozen=True)
class Election:
    """The node that takes writes (None: no write may be sent) and why the other claimants are refused."""

    primary: str | None
    refused: Mapping[str, str]


def elect_primary(claims: Sequence[Claim], *, replica_timeline: int | None = None) -> Election:
    """Choose the primary among the nodes that claim to be one.

    One claimant is simply the primary. Two or more is a split brain (say an old primary restarted after a
    promotion): the highest timeline wins, then the highest LSN, and the others are refused. An exact tie is
    refused entirely, since either choice could lose writes. A claimant on an older timeline than a replica
    reports (``replica_timeline``) is refused too: that replica follows a newer primary, so this one is stale.
    """
    if not claims:
        return Election(None, {})
    ranked = sorted(claims, key=lambda c: (c.timeline, c.lsn), reverse=True)
    best, rest = ranked[0], ranked[1:]
    refused: dict[str, str] = {}
    if rest and (rest[0].timeline, rest[0].lsn) == (best.timeline, best.lsn):
        names = " and ".join(c.name for c in ranked if (c.timeline, c.lsn) == (best.timeline, best.lsn))
        reason = f"split brain: {names} all claim primary on timeline {best.timeline} at the same LSN"
        return Election(None, {c.name: reason for c in ranked})
    for c in rest:
        refused[c.name] = (
            f"split brain: {c.name} (timeline {c.timeline}) also claims primary; "
            f"{best.name} (timeline {best.timeline}) is preferred"
        )
    if replica_timeline is not None and best.timeline < replica_timeline:
        refused[best.name] = (
            f"stale primary: {best.name} is on timeline {best.timeline} but a replica is on {replica_timeline}"
        )
        return Election(None, refused)
    return Election(best.name, refused)
