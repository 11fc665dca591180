"""Benchmarks, run by hand and never in CI: ``python -m ops bench search|partitions|relevance|explain|cache|ingest|tracing|load``.

Method (the machine is shared and noisy): every figure is a distribution over repeated runs, reported as
p50/p95, and every figure is compared with a baseline from the same run, never with a bare time:

* ``search``: the gateway (a subprocess, over HTTP) against the same SQL statements sent directly with
  psycopg through PgBouncer to the replicas; the two are interleaved run by run (ABBA order).
* ``partitions``: copies of the loaded corpus in bench schemas (flat table, yearly and monthly partitions,
  same indexes), queried with the same SQL text, interleaved width by width; planning time is measured warm
  (EXPLAIN on a long-lived session) and cold (the first statement of a new backend).
* ``relevance``: the bounded-candidate ranking the gateway uses, ``ts_rank`` over every match, and RUM's
  ``<=>`` (when the ``rum`` extension is installed), interleaved on one flat copy.
* ``cache``, ``ingest``, ``tracing`` and ``load`` have modules and options of their own.

Results are written as JSON under ``docs/bench/`` and printed as Markdown tables for docs/performance.md.
The load generator in :mod:`ops.bench.loadgen` also drives the failover drills.
"""
