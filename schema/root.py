"""The root of the GraphQL schema."""

from __future__ import annotations

import strawberry


@strawberry.type(description="Entry points for reading the meeting records.")
class Query:
    @strawberry.field(description="The API version of this gateway.")
    def api_version(self) -> str:
        return "1"


def build_schema() -> strawberry.Schema:
    """The executable schema."""
    return strawberry.Schema(query=Query)
