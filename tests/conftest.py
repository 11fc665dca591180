"""Session fixtures: a throwaway stack (primary + 2 replicas behind PgBouncer, Redis when installed).

The stack lives in a temporary folder on free loopback ports and is always torn down, even when tests fail.
Set CIVIC_TEST_KEEP_STACK=1 to keep its folder (logs) after a failed run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from gateway.settings import Settings
from ops import stack
from ops.common.database import migrate_and_load
from tests.helpers import eventually, free_base_port, free_port

TEST_CORPUS_PAGES = 3000
TEST_NODE_MEMORY_MB = 1024


# Fixtures that boot or reach the PostgreSQL stack. A test that uses one of them (directly or through another
# fixture) is marked `stack`, so `make check` can run everything else in seconds with `-m "not stack"`.
STACK_FIXTURES = frozenset({"stack_layout", "own_stack", "drill_stack"})


#: Warnings of the CPU regression gate (a figure past 1.2x its baseline), printed at the end of the run.
CPU_WARNINGS: list[str] = []
#: Timings of the failover drills run by the suite (reported, not asserted beyond their behavioural bounds).
DRILL_TIMINGS: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if DRILL_TIMINGS:
        terminalreporter.section("failover drills: timings")
        for line in DRILL_TIMINGS:
            terminalreporter.write_line(line)
    if CPU_WARNINGS:
        terminalreporter.section("CPU per request: warnings")
        for line in CPU_WARNINGS:
            terminalreporter.write_line(f"WARNING {line}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if STACK_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def stack_layout() -> Iterator[stack.StackLayout]:
    """A running stack in a temp folder, migrated; torn down at the end of the session."""
    directory = Path(tempfile.mkdtemp(prefix="civic-test-stack-"))
    layout = None
    try:
        # A small memory share per node: several throwaway stacks may run on this machine at once.
        layout = stack.up(directory, replicas=2, base_port=free_base_port(replicas=2), memory_mb=TEST_NODE_MEMORY_MB)
        admin = layout.bouncer_dsn("node1_session", user="postgres")
        # A small synthetic corpus under every test (the loader wants empty tables, so it goes first).
        migrate_and_load(admin, pages=TEST_CORPUS_PAGES, seed=7, workers=2, progress=False)
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


# --- the gateway, served for real over HTTP ---------------------------------------------------------------

WRITER_TOKEN = "test-writer-token"
READER_TOKEN = "test-reader-token"


def gateway_settings(layout: stack.StackLayout, **overrides: object) -> Settings:
    from gateway.auth import hash_token

    env = layout.gateway_env()
    values: dict[str, object] = {
        "nodes": env["GATEWAY_NODES"],
        "admin_nodes": env["GATEWAY_ADMIN_NODES"],
        "redis_url": env.get("GATEWAY_REDIS_URL", ""),
        "cursor_secret": "test-cursor-secret",
        "routing_metadata": True,
        "write_tokens": f"{hash_token(WRITER_TOKEN)},read:{hash_token(READER_TOKEN)}",
        "health_interval_s": 0.25,
        "search_log_sample": 0.0,  # only the popular-searches test logs searches
        # The whole suite comes from one address: only the rate-limit tests turn the limits on.
        "rate_limit_enabled": False,
        # A test's client threads share the interpreter with the server's loop: its lag says nothing about load.
        "max_loop_lag_ms": 0.0,
        # The bound learned from latency follows whatever else the shared test host runs; tests/test_admission.py
        # turns it on where it is the subject.
        "database_gate": False,
        # Metrics on a listener of their own, as in production (ServedGateway binds it).
        "metrics_port": free_port(),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


class ServedGateway:
    """A uvicorn server running the gateway in a background thread, on a free loopback port.

    It listens on the metrics port of ``settings`` too (``metrics_url``), as ``python -m gateway serve`` does.
    """

    def __init__(self, settings: Settings, *, tracer_provider: Any = None) -> None:
        import uvicorn

        from gateway.app import create_app
        from gateway.server import bind

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = settings.model_copy(update={"port": self.port})
        self.app = create_app(settings, tracer_provider=tracer_provider)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", proxy_headers=False
        )
        self.sockets = [config.bind_socket()]
        self.metrics_url = self.url
        if settings.metrics_listener is not None:
            self.sockets.append(bind("127.0.0.1", settings.metrics_port))
            self.metrics_url = f"http://127.0.0.1:{settings.metrics_port}"
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": self.sockets}, daemon=True)

    def __enter__(self) -> ServedGateway:
        self.thread.start()

        def started() -> bool:
            if not self.thread.is_alive():
                raise RuntimeError("the gateway's server thread ended before it started serving")
            return bool(self.server.started)

        eventually(started, timeout_s=30, what="the gateway starting")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        for sock in self.sockets:
            sock.close()


@pytest.fixture(scope="session")
def gateway(stack_layout: stack.StackLayout) -> Iterator[ServedGateway]:
    with ServedGateway(gateway_settings(stack_layout)) as served:
        yield served


@pytest.fixture()
def client(gateway: ServedGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        yield http


def gql(
    http: httpx.Client,
    query: str,
    variables: dict[str, object] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """POST a GraphQL request; never a 5xx."""
    resp = http.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers or {})
    assert resp.status_code < 500, resp.text
    body: dict[str, Any] = resp.json()
    return body
