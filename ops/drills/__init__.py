"""Failover drills: a fault under concurrent GraphQL load, Patroni alone recovering, and what clients saw.

``python -m ops drill NAME`` with NAME one of (see :mod:`ops.drills.faults`):

- ``replica-loss``: a replica's Patroni and PostgreSQL SIGKILLed a third of the way in, started again after
  ``--down`` seconds;
- ``node-loss``: the primary's Patroni and PostgreSQL SIGKILLed together and not restarted; Patroni elects a
  new primary when the leader lock expires;
- ``rejoin``: node loss, then the old primary's Patroni is started again: it rewinds and rejoins by itself;
- ``crash``: the primary's PostgreSQL alone SIGKILLed; its Patroni restarts it;
- ``switchover``: ``patronictl switchover`` to a standby.

No drill promotes, rewinds or reattaches anything itself: Patroni does, and the drill only watches. With
``--sync`` Patroni's ``synchronous_mode`` is on during the drill, so no acknowledged write can be lost.

Meanwhile ``--clients`` closed-loop clients (:mod:`ops.bench.loadgen`) search the corpus, and in the drills that
hit the primary some of them write one document per request, every acknowledged write going to a log. A watcher
polls the gateway's ``/readyz`` ten times a second. Afterwards each acknowledged page is looked for on the (new)
primary, a lost node is started again (``healed_after_drill_s``), and the drill writes a JSON report and a PNG
timeline (requests per second, errors, p95; the fault marked) to ``--reports`` (docs/drills/ by default). The
exit status is 0 when every target was met.

The gateway runs as a child process with the stack's environment, a 0.5 s health interval, routing metadata on
and the response cache off. All traffic goes to 127.0.0.1; every loop is bounded in time and count.
"""

from ops.drills.cli import main
from ops.drills.options import DrillError, DrillOptions
from ops.drills.run import run_drill
from ops.drills.topology import check_topology, show_setting

__all__ = ["DrillError", "DrillOptions", "check_topology", "main", "run_drill", "show_setting"]
