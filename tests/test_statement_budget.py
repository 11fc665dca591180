"""The statement budget: every field's estimate is at least what it really sends, and too many is refused."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from graphql import GraphQLObjectType

from ops import stack
from schema.mutations import Mutation
from schema.root import build_schema
from tests.conftest import WRITER_TOKEN, ServedGateway, gateway_settings, gql

WRITER = {"Authorization": f"Bearer {WRITER_TOKEN}"}

# Queries that together select every field of every type of the contract, the batched ones under several
# parents (where a DataLoader batch can split) and the per-object ones nested under connections.
READS = [
    """{ search(query: "council", first: 7, orderBy: RELEVANCE) { totalCount { value exact relativeError }
         pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
         edges { cursor rank headline node { id sourceId pageNumber text pageImage
           document { id meetingName meetingDate documentType
             municipality { id subdomain name state country kind } } } } } }""",
    """{ municipalities(first: 3, state: "CA") { pageInfo { hasNextPage endCursor } edges { cursor node { id name
         documents(first: 3, documentType: MINUTES) { pageInfo { hasNextPage } edges { cursor node { id
           municipality { name } pages(first: 2) { pageInfo { hasNextPage } edges { cursor node { id
             document { meetingName municipality { state } } } } } } } } } } } }""",
    """{ municipalities(first: 4) { edges { node { subdomain documents(first: 2) { edges { node { id } } } } } } }""",
    """{ popularSearches(first: 5) { query searches lastSearched } }""",
    # A document's own pages: per document of a result page (one batch), and as the document view asks.
    """{ search(query: "budget", first: 10) { totalCount { value } edges { node { pageNumber document { id
         matchingPages(query: "budget", first: 3) { count edges { headline page { id pageNumber
           highlightedText(query: "budget") document { meetingName } } } } } } }
         documents { id municipality { name } matchingPages(query: "budget") { count } } } }""",
    """{ search(query: "council", first: 5) { documents { meetingName matchingPages(query: "council", first: 2) {
         edges { headline } } } } }""",
    """{ municipalities(first: 2) { edges { node { documents(first: 2) { edges { node { pageNumbers
         matchingPageNumbers(query: "council") page(number: 1) { pageNumber text
           highlightedText(query: "council") } } } } } } } }""",
]


@pytest.fixture(scope="module")
def roomy(stack_layout: stack.StackLayout) -> Any:
    """A gateway whose budgets let every probe below run, so their estimates can be compared with the truth."""
    settings = gateway_settings(stack_layout, max_statements=100_000, max_query_depth=20, cache_enabled=False)
    with ServedGateway(settings) as gw, httpx.Client(base_url=gw.url, timeout=60) as http:
        yield http


def _ids(client: httpx.Client) -> list[str]:
    body = gql(client, """{ search(query: "council", first: 3) { edges { node { id document { id
        municipality { id } } } } } }""")
    out: list[str] = []
    for e in body["data"]["search"]["edges"]:
        node = e["node"]
        out += [node["id"], node["document"]["id"], node["document"]["municipality"]["id"]]
    return out


def _check(body: dict[str, Any]) -> None:
    assert "errors" not in body, body
    ext = body["extensions"]
    assert ext["estimatedStatements"] >= ext["statements"], ext


@pytest.mark.parametrize("query", READS)
def test_estimate_covers_what_reads_send(roomy: httpx.Client, query: str) -> None:
    _check(gql(roomy, query))


def test_estimate_covers_node_lookups(roomy: httpx.Client) -> None:
    client = roomy
    ids = _ids(client)
    _check(gql(client, 'query($id: ID!) { municipality(subdomain: "nowhere.zz") { id } node(id: $id) { id } }',
               {"id": ids[0]}))
    _check(gql(client, """query($ids: [ID!]!) { nodes(ids: $ids) { id ... on MeetingPage { document { id
        municipality { name } } } ... on MeetingDocument { municipality { name } pages(first: 2) { edges {
        node { id } } } } ... on Municipality { documents(first: 2) { edges { node { id } } } } } }""",
               {"ids": ids}))


def test_estimate_covers_writes(roomy: httpx.Client) -> None:
    client = roomy
    word = f"tally{uuid.uuid4().hex[:8]}"
    town = gql(client, """mutation { upsertMunicipality(input: {subdomain: "tallytown.ca", name: "Tallytown",
        state: "CA"}) { consistencyToken municipality { id name } } }""", headers=WRITER)
    _check(town)
    doc = gql(client, """mutation($w: String!) { upsertDocument(input: {municipality: "tallytown.ca",
        meetingName: "CityCouncil", meetingDate: "2024-07-01", documentType: AGENDA,
        pages: [{sourceId: $w, pageNumber: 1, text: $w}]}) { consistencyToken document { id meetingName
        municipality { name } pages(first: 3) { edges { node { sourceId } } } } } }""", {"w": word}, WRITER)
    _check(doc)
    gone = gql(client, 'mutation($id: ID!) { deleteDocument(id: $id) { deletedId consistencyToken } }',
               {"id": doc["data"]["upsertDocument"]["document"]["id"]}, WRITER)
    _check(gone)


def test_every_field_of_the_schema_is_exercised() -> None:
    schema = build_schema(mutation=Mutation)._schema
    texts = " ".join(READS) + " node nodes municipality upsertMunicipality upsertDocument deleteDocument deletedId"
    texts += " consistencyToken"
    missing = []
    for type_ in schema.type_map.values():
        if isinstance(type_, GraphQLObjectType) and not type_.name.startswith("__"):
            missing += [f"{type_.name}.{f}" for f in type_.fields if f not in texts]
    assert not missing, missing


def test_a_request_past_the_budget_is_refused_before_running(client: httpx.Client) -> None:
    many = " ".join(f'a{i}: search(query: "council{i}", orderBy: RELEVANCE) {{ totalCount {{ value }} '
                    f"edges {{ headline }} }}" for i in range(8))
    body = gql(client, "{ " + many + " }")
    message = body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "SQL statements" in message and "more than the 20" in message, message
    assert body.get("data") is None
