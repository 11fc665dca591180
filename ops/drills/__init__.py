"""Failover drills: kill a database node under concurrent GraphQL load and measure what clients saw.

``python -m ops drill replica-loss`` stops one replica with ``pg_ctl stop -m immediate`` (a crash) a third of
the way into the run, leaves it down for ``--down`` seconds and starts it again. ``python -m ops drill
primary-failover`` crashes the primary the same way, promotes the standby that holds the most WAL, and
reattaches the other standbys to it (a running standby follows the new timeline; the old primary is rewound
with pg_rewind; a fresh base backup is the fallback), each with its own replication slot. With ``--sync`` the
primary first waits for ``ANY 1`` standby on every commit, so no acknowledged write can be lost.

Meanwhile ``--clients`` closed-loop clients (:mod:`ops.bench.loadgen`) search the corpus, and in the failover
drill some of them write one document per request, every acknowledged write going to a log. A watcher polls the
gateway's ``/readyz`` ten times a second. Afterwards each acknowledged page is looked for on the (new) primary,
and the drill writes a JSON report and a PNG timeline (requests per second, errors, p95; the fault marked) to
``--reports`` (docs/drills/ by default). The exit status is 0 when every target was met.

The gateway runs as a child process with the stack's environment, a 0.5 s health interval, routing metadata on
and the response cache off. All traffic goes to 127.0.0.1; every loop is bounded in time and count.

``python -m ops drill promote`` and ``python -m ops drill reattach`` are the same two steps by hand, for the
runbook in docs/operations.md.
"""

from ops.drills.cli import main
from ops.drills.options import DrillError, DrillOptions
from ops.drills.run import run_drill
from ops.drills.topology import check_topology, show_setting

__all__ = ["DrillError", "DrillOptions", "check_topology", "main", "run_drill", "show_setting"]
