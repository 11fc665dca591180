"""Node choice and primary election, without a database."""

from __future__ import annotations

import pytest

from routing.choice import Candidate, Claim, choose_read, elect_primary, laggards


def replica(
    name: str, *, lag_s: float | None = 0.0, lsn: int | None = 100, in_flight: int = 0, last_pick: int = 0
) -> Candidate:
    return Candidate(
        name=name, role="replica", lag_s=lag_s, replay_lsn=lsn, in_flight=in_flight, last_pick=last_pick
    )


PRIMARY = Candidate(name="p", role="primary", lag_s=None, replay_lsn=None)


def choose(
    replicas: list[Candidate],
    primary: Candidate | None = PRIMARY,
    *,
    staleness: int = 5000,
    min_lsn: int | None = None,
    fallback: bool = True,
) -> tuple[str, bool] | None:
    """The chosen node's name and whether the read is a fallback to the primary, or None."""
    choice = choose_read(
        replicas, primary, max_staleness_ms=staleness, min_lsn=min_lsn, primary_fallback=fallback
    )
    return None if choice is None else (choice.node.name, choice.fallback)


def test_fewest_in_flight_wins_among_fresh_replicas() -> None:
    replicas = [replica("a", in_flight=3), replica("b", in_flight=1), replica("c", in_flight=2)]
    assert choose(replicas) == ("b", False)


def test_ties_go_to_the_least_recently_picked_then_list_order() -> None:
    assert choose([replica("a", last_pick=5), replica("b", last_pick=4)]) == ("b", False)
    assert choose([replica("a"), replica("b")]) == ("a", False)


def test_staleness_bound_excludes_lagging_replicas() -> None:
    replicas = [replica("a", lag_s=6.0, in_flight=0), replica("b", lag_s=4.9, in_flight=9)]
    assert choose(replicas) == ("b", False)
    # A per-request bound overrides: 1 s excludes both, so the primary serves the read as a fallback.
    assert choose(replicas, staleness=1000) == ("p", True)
    # The bound is inclusive, and an unknown lag never qualifies.
    assert choose([replica("a", lag_s=1.0)], staleness=1000) == ("a", False)
    assert choose([replica("a", lag_s=None)]) == ("p", True)


def test_fallback_to_primary_only_when_allowed() -> None:
    assert choose([], fallback=True) == ("p", True)
    assert choose([], fallback=False) is None
    assert choose([], primary=None) is None
    assert choose([replica("a", lag_s=60.0)], fallback=False) is None


def test_min_lsn_admits_only_caught_up_replicas_and_the_primary() -> None:
    replicas = [replica("a", lsn=99, in_flight=0), replica("b", lsn=100, in_flight=5)]
    assert choose(replicas, min_lsn=100) == ("b", False)
    behind = [replica("a", lsn=99), replica("b", lsn=None)]
    # Replicas fresh enough but behind the token: the primary serves it, and that is not a fallback.
    assert choose(behind, min_lsn=100) == ("p", False)
    assert choose(behind, min_lsn=100, fallback=False) is None
    # Behind the token and too stale as well: that is a fallback.
    assert choose([replica("a", lsn=99, lag_s=60.0)], min_lsn=100) == ("p", True)


def test_laggards_are_fresh_replicas_behind_the_lsn() -> None:
    replicas = [replica("a", lsn=99), replica("b", lsn=100), replica("c", lsn=50, lag_s=60.0)]
    assert laggards(replicas, max_staleness_ms=5000, min_lsn=100) == ["a"]
    assert laggards(replicas, max_staleness_ms=5000, min_lsn=None) == []


def test_single_claimant_is_primary() -> None:
    assert elect_primary([Claim(name="n1", timeline=1, lsn=10)]).primary == "n1"
    assert elect_primary([]).primary is None


@pytest.mark.parametrize(
    ("claims", "winner"),
    [
        ([Claim(name="old", timeline=1, lsn=900), Claim(name="new", timeline=2, lsn=100)], "new"),
        ([Claim(name="a", timeline=3, lsn=100), Claim(name="b", timeline=3, lsn=200)], "b"),
    ],
)
def test_split_brain_prefers_higher_timeline_then_lsn(claims: list[Claim], winner: str) -> None:
    election = elect_primary(claims)
    assert election.primary == winner
    (loser,) = set(election.refused)
    assert loser != winner and "split brain" in election.refused[loser]


def test_exact_tie_refuses_both() -> None:
    election = elect_primary([Claim(name="a", timeline=1, lsn=5), Claim(name="b", timeline=1, lsn=5)])
    assert election.primary is None and set(election.refused) == {"a", "b"}


def test_primary_behind_a_replica_timeline_is_refused() -> None:
    # The old primary came back while the promoted one is down; a replica already follows timeline 2.
    election = elect_primary([Claim(name="old", timeline=1, lsn=900)], replica_timeline=2)
    assert election.primary is None and "stale primary" in election.refused["old"]
    assert elect_primary([Claim(name="p", timeline=2, lsn=1)], replica_timeline=2).primary == "p"
