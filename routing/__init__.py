"""Routing of database calls over a PostgreSQL primary and its streaming replicas.

Reads go to a replica whose replay lag is within a bound (and that has replayed the caller's ``min_lsn``, for
read-your-writes), writes to the primary; roles are discovered from the nodes, never configured. The package
knows nothing of GraphQL or HTTP and depends only on psycopg, psycopg_pool and the standard library.

    async with Router({"node1": dsn1, "node2": dsn2}) as router:
        rows = await router.read(fetch_rows, request)
        result, lsn = await router.write(insert_row, request)
        token = encode_token(lsn)
"""

from routing.errors import (
    InvalidTokenError,
    NoPrimaryError,
    NoReplicaError,
    OverloadedError,
    RoutingError,
    UnavailableError,
)
from routing.events import RouterEvents
from routing.retry import RetryPolicy
from routing.router import Router
from routing.tokens import TokenCodec, decode_token, encode_token
from routing.types import NodeState, ReadFn, RequestRouting, RouteInfo, RouterConfig, T

__all__ = [
    "InvalidTokenError",
    "NoPrimaryError",
    "NoReplicaError",
    "NodeState",
    "OverloadedError",
    "ReadFn",
    "RequestRouting",
    "RetryPolicy",
    "RouteInfo",
    "Router",
    "RouterConfig",
    "RouterEvents",
    "RoutingError",
    "T",
    "TokenCodec",
    "UnavailableError",
    "decode_token",
    "encode_token",
]
