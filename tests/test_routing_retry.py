"""Which failures make a read move to another node, and which reach the caller unchanged."""

from __future__ import annotations

import psycopg
import psycopg_pool
import pytest
from psycopg import errors as e

from routing.errors import describe, redact
from routing.retry import Failure, RetryPolicy, classify


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"),
        psycopg.OperationalError("the connection is lost"),
        psycopg.OperationalError('connection failed: connection to server at "127.0.0.1", port 1 failed'),
        e.AdminShutdown("terminating connection due to administrator command"),
        e.CrashShutdown("terminating connection because of crash of another server process"),
        e.CannotConnectNow("the database system is starting up"),
        e.lookup("08P01")("server conn crashed?"),  # PgBouncer
        e.lookup("08P01")("query_wait_timeout"),  # PgBouncer
        e.lookup("08006")("connection failure"),
        e.ProtocolViolation("pgbouncer cannot connect to server"),
    ],
)
def test_node_failures(exc: BaseException) -> None:
    assert classify(exc) is Failure.NODE


@pytest.mark.parametrize(
    "exc",
    [
        psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec"),
        e.TooManyConnections("sorry, too many clients already"),
        e.SerializationFailure("canceling statement due to conflict with recovery"),
    ],
)
def test_capacity_failures_retry_elsewhere_without_ejecting(exc: BaseException) -> None:
    assert classify(exc) is Failure.BUSY


@pytest.mark.parametrize(
    "exc",
    [
        e.SyntaxError('syntax error at or near "SELEC"'),
        e.QueryCanceled("canceling statement due to statement timeout"),  # an OperationalError, yet final
        e.DivisionByZero("division by zero"),
        e.UniqueViolation("duplicate key value"),
        e.IdleInTransactionSessionTimeout("terminating connection due to idle-in-transaction timeout"),
        e.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
        psycopg.ProgrammingError("the query has 1 placeholder but 2 parameters were passed"),
        psycopg_pool.PoolClosed("the pool is closed"),
        ValueError("a bug in the caller"),
    ],
)
def test_final_failures(exc: BaseException) -> None:
    assert classify(exc) is Failure.FINAL


def test_probe_timeout_is_bounded_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RetryPolicy.probe_timeout(1.0) == 1.0
    assert RetryPolicy.probe_timeout(5.0) == 1.0
    assert RetryPolicy.probe_timeout(0.1) == 0.5
    monkeypatch.setattr(RetryPolicy, "probe_timeout_s", 2.0)
    assert RetryPolicy.probe_timeout(5.0) == 2.0


def test_messages_are_redacted() -> None:
    assert redact("host=x password=s3cret user=u") == "host=x password=*** user=u"
    assert redact("host=x password = 'a b' user=u") == "host=x password = *** user=u"
    assert redact("postgresql://u:s3cret@h/db") == "postgresql://u:***@h/db"
    assert describe(psycopg.OperationalError("failed: password=hunter2\nDETAIL: x")) == "failed: password=***"
