"""The ASGI application: Starlette routes around the Strawberry GraphQL endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from strawberry.asgi import GraphQL

from gateway.settings import Settings
from schema.root import build_schema


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers. Says nothing about the databases (that is /readyz)."""
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings) -> Starlette:
    """Build the app; resources (pools, monitor, cache) open and close in the lifespan."""
    graphql_app: GraphQL[object, object] = GraphQL(build_schema())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/graphql", graphql_app, methods=["GET", "POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app
