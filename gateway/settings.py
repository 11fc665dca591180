"""All configuration, read once from ``GATEWAY_*`` environment variables and validated at start-up.

Every problem is reported at once (pydantic collects them), so an operator fixes a bad deployment in one go.
OpenTelemetry reads its own standard ``OTEL_*`` variables; nothing here duplicates them.

Node lists use ``name=DSN`` pairs separated by commas, for example
``GATEWAY_NODES="node1=host=127.0.0.1 port=6432 dbname=node1 user=gateway,node2=..."``. Roles are never
configured: which node is the primary is discovered at run time.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(RuntimeError):
    """The environment does not describe a runnable gateway; the message lists every problem."""


def parse_nodes(raw: str) -> dict[str, str]:
    """Parse ``name=dsn,name=dsn`` into an ordered mapping, rejecting empty or duplicate names."""
    nodes: dict[str, str] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, sep, dsn = item.partition("=")
        name = name.strip()
        if not sep or not name or not dsn.strip() or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"expected name=DSN pairs separated by commas, got {item.split('=')[0]!r}=…")
        if name in nodes:
            raise ValueError(f"node {name!r} is listed twice")
        nodes[name] = dsn.strip()
    return nodes


class Settings(BaseSettings):
    """The gateway's settings. Field names map to ``GATEWAY_<NAME>`` variables."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    # --- database topology -------------------------------------------------------------------------------
    nodes: str = Field(description="name=DSN pairs, one per PostgreSQL node, reached through PgBouncer")
    admin_nodes: str = Field(
        default="",
        description="name=DSN pairs in PgBouncer session mode (or direct) for migrations, ingest and partitions",
    )
    partition_width: Literal["month", "year"] = "year"

    # --- pools (psycopg_pool) -------------------------------------------------------------------------------
    pool_min_size: int = Field(default=1, ge=0)
    pool_max_size: int = Field(default=10, ge=1)
    connect_timeout_s: float = Field(default=3.0, gt=0)
    pool_timeout_s: float = Field(default=5.0, gt=0)
    pool_max_lifetime_s: float = Field(default=3600.0, gt=0)
    pool_max_idle_s: float = Field(default=300.0, gt=0)
    pool_max_waiting: int = Field(
        default=20, ge=0, description="reads that may wait for a connection of one node (0: no bound)"
    )
    read_wait_s: float = Field(
        default=1.0, gt=0, description="how long a read waits for a connection before the node counts as busy"
    )

    # --- routing --------------------------------------------------------------------------------------------
    health_interval_s: float = Field(default=1.0, gt=0)
    max_staleness_ms: int = Field(default=5000, ge=0)
    consistency_wait_ms: int = Field(default=500, ge=0)
    primary_fallback: bool = True
    routing_metadata: bool = False

    # --- HTTP -------------------------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)  # a whole document of pages
    max_query_depth: int = Field(default=10, ge=2)
    max_query_cost: int = Field(default=5000, ge=10)
    max_query_aliases: int = Field(default=30, ge=0)
    max_root_fields: int = Field(default=20, ge=1)
    max_statements: int = Field(default=20, ge=1, description="SQL statements one request may send (estimated)")
    max_query_tokens: int = Field(default=2000, ge=50, description="lexical tokens a document may hold")
    document_cache_size: int = Field(default=1000, ge=1, description="prepared documents kept per worker")
    apq_max_bytes: int = Field(default=64 * 1024, ge=256, description="largest query stored as persisted")
    apq_per_client: int = Field(default=200, ge=0, description="persisted queries one client may register")
    apq_max_total_bytes: int = Field(
        default=256 * 1024 * 1024, ge=0, description="bytes of persisted queries kept in all (PostgreSQL)"
    )
    max_in_flight: int = Field(default=64, ge=1, description="GraphQL requests in flight per worker")
    max_loop_lag_ms: float = Field(
        default=50.0, ge=0, description="refuse new requests while a worker's event loop runs this late (0: off)"
    )
    database_gate: bool = Field(
        default=True,
        description="learn how many queries a worker may send to the databases at once; refuse past it (503)",
    )
    database_gate_tolerance: float = Field(
        default=2.0, ge=1.0, description="the bound shrinks when latency exceeds the no-crowd latency this much"
    )
    rate_limit_enabled: bool = Field(default=True, description="per-client request budgets (HTTP 429 past them)")
    rate_limit_reads_per_minute: int = Field(default=1200, ge=1)
    rate_limit_writes_per_minute: int = Field(default=120, ge=1)
    cors_allow_origins: str = Field(
        default="*", description="origins whose browser apps may call the API (comma-separated; * is any, no credentials)"
    )
    trusted_proxies: str = Field(
        default="", description="comma-separated addresses/CIDRs whose X-Forwarded-For is believed"
    )
    workers: int = Field(default=0, ge=0, description="serving processes; 0 means one per CPU")
    pgbouncer_pool_size: int = Field(
        default=25, ge=1, description="PgBouncer's server connections per node: the pools of all workers share it"
    )
    graceful_shutdown_s: int = Field(default=10, ge=0, description="how long in-flight requests may finish")
    keep_alive_s: int = Field(default=5, ge=1, description="idle keep-alive connections are closed after this")
    http_head_timeout_s: float = Field(default=10.0, gt=0, description="a request's head must arrive within this")
    http_body_timeout_s: float = Field(default=30.0, gt=0, description="a request's body must arrive within this")
    request_timeout_s: float = Field(default=30.0, gt=0, description="the longest a GraphQL request may run")
    cursor_secret: str = Field(default="", description="HMAC key for cursors; random per process when unset")
    write_tokens: str = Field(
        default="",
        description="comma-separated 'sha256:<hex>' (write rights) or 'read:sha256:<hex>' (authenticated, no writes)",
    )

    compress_min_bytes: int = Field(
        default=1400, ge=0, description="gzip responses at least this large (0: never compress)"
    )

    # --- observability ------------------------------------------------------------------------------------------
    metrics_port: int = Field(
        default=9464, ge=0, le=65535,
        description="port of the /metrics listener (0: none; equal to GATEWAY_PORT: on the public port)",
    )
    metrics_host: str = Field(default="", description="address of the metrics listener (empty: GATEWAY_HOST)")
    log_format: Literal["text", "json"] = Field(default="text", description="one line per event: text or JSON")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = Field(default=True, description="one log line per HTTP request (on stdout)")
    sql_comments: bool = False
    pgss_interval_s: float = Field(default=15.0, gt=0)
    pgss_top_k: int = Field(default=20, ge=1)
    search_log_sample: float = Field(default=0.1, ge=0.0, le=1.0)

    # --- cache ------------------------------------------------------------------------------------------------
    redis_url: str = ""
    cache_ttl_s: float = Field(default=60.0, ge=0)
    cache_timeout_s: float = Field(default=0.1, gt=0)
    cache_enabled: bool = True
    response_cache: bool = Field(default=True, description="cache whole encoded responses of shareable queries")

    @field_validator("nodes")
    @classmethod
    def _nodes_present(cls, value: str) -> str:
        if not parse_nodes(value):
            raise ValueError("at least one node is required")
        return value

    @field_validator("admin_nodes")
    @classmethod
    def _admin_nodes_valid(cls, value: str) -> str:
        parse_nodes(value)
        return value

    @field_validator("write_tokens")
    @classmethod
    def _tokens_valid(cls, value: str) -> str:
        for item in filter(None, (p.strip() for p in value.split(","))):
            digest = item.removeprefix("read:").removeprefix("sha256:")
            if not item.removeprefix("read:").startswith("sha256:") or len(digest) != 64:
                raise ValueError("each token is stored hashed: 'sha256:<64 hex>' or 'read:sha256:<64 hex>'")
            int(digest, 16)
        return value

    @model_validator(mode="after")
    def _pool_sizes(self) -> Settings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        return self

    @property
    def metrics_listener(self) -> tuple[str, int] | None:
        """(host, port) of a separate metrics listener; None when metrics are off or share the public port."""
        if self.metrics_port == 0 or self.metrics_port == self.port:
            return None
        return (self.metrics_host or self.host, self.metrics_port)

    @property
    def node_dsns(self) -> dict[str, str]:
        return parse_nodes(self.nodes)

    @property
    def admin_dsns(self) -> dict[str, str]:
        return parse_nodes(self.admin_nodes)

    @property
    def token_key(self) -> bytes:
        """The key that signs consistency tokens, derived from the cursor secret (a separate purpose)."""
        return hashlib.sha256(b"consistency-token\x00" + self.cursor_key).digest()

    @property
    def apq_client_key(self) -> bytes:
        """The key that hashes client identities in the persisted-query table (a separate purpose)."""
        return hashlib.sha256(b"apq-client\x00" + self.cursor_key).digest()

    @property
    def cursor_key(self) -> bytes:
        return hashlib.sha256(self.cursor_secret.encode()).digest() if self.cursor_secret else _PROCESS_KEY


# Without a configured secret, cursors are still signed, but only this process can read them back.
_PROCESS_KEY = secrets.token_bytes(32)


def load_settings() -> Settings:
    """Read and validate the environment, raising one SettingsError that lists every problem."""
    try:
        return Settings()  # values come from the environment
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            problems.append(f"GATEWAY_{field.upper()}: {err['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None
