"""Every malformed request gets a 4xx with a GraphQL-shaped JSON error; media types follow GraphQL-over-HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ServedGateway


@pytest.fixture(scope="module")
def http(gateway: ServedGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        yield client


def assert_coded_4xx(resp: httpx.Response) -> dict[str, object]:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
    assert resp.headers["content-type"].startswith("application/"), resp.headers["content-type"]
    body = resp.json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert "Traceback" not in resp.text
    return body  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\xff\xfe\xfd", id="not-utf8"),
        pytest.param(b"1", id="bare-number"),
        pytest.param(b'"x"', id="bare-string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"true", id="true"),
        pytest.param(b'{"query": "{ __typename }", "variables": ' + b"[" * 1000 + b"]" * 1000 + b"}", id="deep"),
        pytest.param(b'{"query": "{ __typename }", "variables": {"n": ' + b"9" * 4400 + b"}}", id="huge-int"),
        pytest.param(b'{"query": "{ __typename }", "variables": [1]}', id="variables-not-object"),
        pytest.param(b'{"query": "{ __typename }", "operationName": 5}', id="operation-name-not-string"),
        pytest.param(b'{"query": "{ __typename }", "extensions": "x"}', id="extensions-not-object"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"variables": {}}', id="no-query"),
    ],
)
def test_malformed_bodies_are_400_with_a_coded_error(http: httpx.Client, raw: bytes) -> None:
    body = assert_coded_4xx(http.post("/graphql", content=raw, headers={"content-type": "application/json"}))
    assert len(body["extensions"]["traceId"]) == 32  # type: ignore[index]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.one_of(st.binary(max_size=300), st.from_type(object).map(lambda v: json.dumps(repr(v)).encode())))
def test_random_bytes_never_get_a_server_error(http: httpx.Client, raw: bytes) -> None:
    resp = http.post("/graphql", content=raw, headers={"content-type": "application/json"})
    assert resp.status_code < 500, resp.text[:300]
    assert resp.json().get("errors") or resp.json().get("data")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values, get=st.booleans())
def test_random_json_values_by_post_and_get(http: httpx.Client, value: object, get: bool) -> None:
    if get:
        resp = http.get("/graphql", params={"query": "{ __typename }", "variables": json.dumps(value)})
    else:
        resp = http.post("/graphql", json={"query": "{ __typename }", "variables": value})
    if isinstance(value, dict) or value is None:
        assert resp.status_code == 200, resp.text[:300]
    else:
        assert_coded_4xx(resp)


def test_graphql_response_media_type_is_negotiated(http: httpx.Client) -> None:
    ok = http.post("/graphql", json={"query": "{ __typename }"},
                   headers={"accept": "application/graphql-response+json"})
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("application/graphql-response+json")
    invalid = http.post("/graphql", json={"query": "{ nope }"}, headers={"accept": "application/graphql-response+json"})
    assert invalid.status_code == 400
    legacy = http.post("/graphql", json={"query": "{ nope }"}, headers={"accept": "application/json"})
    assert legacy.status_code == 200 and legacy.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    refused = http.post("/graphql", json={"query": "{ __typename }"}, headers={"accept": "text/csv"})
    assert refused.status_code == 406


def test_mutations_are_refused_over_get(http: httpx.Client) -> None:
    resp = http.get("/graphql", params={"query": 'mutation { deleteDocument(id: "x") { deletedId } }'})
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"


def test_other_methods_are_405(http: httpx.Client) -> None:
    resp = http.put("/graphql", json={"query": "{ __typename }"})
    assert resp.status_code == 405 and "POST" in resp.headers["allow"]


def test_apq_bodies_are_capped(http: httpx.Client) -> None:
    import hashlib

    query = "{ __typename " + "# pad\n" * 20_000 + "}"
    digest = hashlib.sha256(query.encode()).hexdigest()
    resp = http.post("/graphql", json={"query": query,
                                       "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}})
    body = assert_coded_4xx(resp)
    assert "persisted queries are at most" in body["errors"][0]["message"]  # type: ignore[index]


def test_browsers_on_other_origins_may_call_the_api(http: httpx.Client) -> None:
    preflight = http.options("/graphql", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-consistency-token",
    })
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "x-consistency-token" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    resp = http.post("/graphql", json={"query": "{ __typename }"}, headers={"Origin": "https://app.example"})
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "ratelimit" in resp.headers["access-control-expose-headers"].lower()


def test_get_responses_say_how_long_caches_may_keep_them(http: httpx.Client) -> None:
    query = '{ search(query: "budget", first: 2) { edges { node { sourceId } } } }'
    fresh = http.get("/graphql", params={"query": query})
    again = http.get("/graphql", params={"query": query})
    for resp in (fresh, again):
        assert resp.status_code == 200 and resp.headers["cache-control"] == "public, max-age=5"
    tight = http.get("/graphql", params={"query": query}, headers={"X-Max-Staleness-Ms": "0"})
    assert tight.headers["cache-control"] == "public, max-age=0"
    introspection = http.get("/graphql", params={"query": "{ __typename }"})
    assert introspection.headers["cache-control"] == "no-store"
    assert "cache-control" not in http.post("/graphql", json={"query": query}).headers
