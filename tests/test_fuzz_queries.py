"""No query text ever produces a 500: hypothesis feeds hostile strings through the real HTTP path."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ServedGateway

QUERY = "query($q: String!) { search(query: $q, first: 3) { edges { headline } totalCount { value } } }"

HOSTILE = [
    '"unbalanced',
    "-",
    "or",
    "!!!",
    "&|!():*",
    "'; DROP TABLE meeting_page; --",
    "quokka\x00",
    "🦘🦘 quokka",
    "\ud800",
    "a <-> b",
    "quokka:*",
    ") OR 1=1 --",
    "\\",
    "%s %(q)s",
    " ".join(["council"] * 80),
    "-quokka",
    '"liquor license" or -cannabis',
    "\u202e\u200b",
    "a" * 499,
    "ä" * 500,
]

hostile_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(alphabet=st.characters(blacklist_categories=()), max_size=40),
    st.lists(
        st.sampled_from(['"', "-", "or", "and", "quokka", "(", ")", "!", ":", "*", "&", "|", " ", "\x00"]),
        max_size=30,
    ).map("".join),
)


@pytest.fixture(scope="module")
def http(gateway: ServedGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        yield client


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=hostile_text)
def test_any_query_text_gets_data_or_a_coded_error(http: httpx.Client, text: str) -> None:
    # json.dumps escapes lone surrogates as \\ud800, as a hostile client may send them.
    payload = json.dumps({"query": QUERY, "variables": {"q": text}})
    resp = http.post("/graphql", content=payload, headers={"content-type": "application/json"})
    assert resp.status_code < 500, resp.text
    body = resp.json()
    if body.get("errors"):
        assert body["errors"][0]["extensions"]["code"] in {"BAD_USER_INPUT", "TIMEOUT"}, body
        assert "Traceback" not in resp.text and "psycopg" not in resp.text
    else:
        assert isinstance(body["data"]["search"]["edges"], list)


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[]",
        b'{"query": 5}',
        b'{"query": "{ search(query: 1) { edges { cursor } } }"}',
        b'{"query": "{ nope }"}',
        b"\xff\xfe",
    ],
)
def test_malformed_requests_are_client_errors(http: httpx.Client, raw: bytes) -> None:
    resp = http.post("/graphql", content=raw, headers={"content-type": "application/json"})
    assert 400 <= resp.status_code < 500 or resp.json().get("errors")
    assert resp.status_code < 500


def test_oversized_body_is_refused(http: httpx.Client) -> None:
    resp = http.post("/graphql", json={"query": "{ __typename }", "variables": {"pad": "x" * 17_000_000}})
    assert resp.status_code == 413
    assert resp.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_deep_query_is_refused(http: httpx.Client) -> None:
    deep = (
        '{ search(query: "a") { edges { node { document { municipality { documents { edges { node { pages '
        "{ edges { node { document { municipality { documents { edges { node { id } } } } } } } } } } } } } } } } }"
    )
    body = http.post("/graphql", json={"query": deep}).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_expensive_query_is_refused_before_execution(http: httpx.Client) -> None:
    nested = ("{ municipalities(first: 100) { edges { node { documents(first: 100) { edges { node { "
              "pages(first: 100) { edges { node { text } } } } } } } } } }")
    body = http.post("/graphql", json={"query": nested}).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "too expensive" in body["errors"][0]["message"]
    ok = http.post("/graphql", json={"query": '{ search(query: "council", first: 100) { edges { headline node { '
                                     'document { municipality { name } } } } } }'}).json()
    assert "errors" not in ok


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        (b"{not json", "application/json"),
        (b'{"query": "query A { __typename }", "operationName": "B"}', "application/json"),
        (b"query { __typename }", "text/plain"),
    ],
)
def test_http_level_refusals_are_graphql_errors_with_a_code(
    http: httpx.Client, payload: bytes, content_type: str
) -> None:
    resp = http.post("/graphql", content=payload, headers={"content-type": content_type})
    assert 400 <= resp.status_code < 500
    body = resp.json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert len(body["extensions"]["traceId"]) == 32
