"""Session fixtures: a throwaway stack (primary + 2 replicas behind PgBouncer, Redis when installed).

The stack lives in a temporary folder on free loopback ports and is always torn down, even when tests fail.
Set CIVIC_TEST_KEEP_STACK=1 to keep its folder (logs) after a failed run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from migrations import runner
from ops import stack


def _free_base_port() -> int:
    for base in range(43000, 49000, 37):
        ports = [base, base + 1, base + 2, base + 950, base + 1000]
        if all(stack.port_is_free(p) for p in ports):
            return base
    raise RuntimeError("no free port range for the test stack")


@pytest.fixture(scope="session")
def stack_layout() -> Iterator[stack.StackLayout]:
    """A running stack in a temp folder, migrated; torn down at the end of the session."""
    directory = Path(tempfile.mkdtemp(prefix="civic-test-stack-"))
    layout = None
    try:
        layout = stack.up(directory, replicas=2, base_port=_free_base_port())
        runner.migrate(layout.bouncer_dsn("node1_session", user="postgres"))
        yield layout
    finally:
        stack.down(directory)
        if os.environ.get("CIVIC_TEST_KEEP_STACK") != "1":
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def admin_dsn(stack_layout: stack.StackLayout) -> str:
    """Superuser, session-mode DSN to the primary through PgBouncer."""
    return stack_layout.bouncer_dsn("node1_session", user="postgres")


@pytest.fixture()
def admin_conn(admin_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(admin_dsn, autocommit=True, prepare_threshold=None) as conn:
        yield conn


def has_binary(name: str) -> bool:
    return shutil.which(name) is not None
