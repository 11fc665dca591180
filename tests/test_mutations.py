"""Writes: bearer auth, validation, atomicity and read-your-writes through the consistency token."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import READER_TOKEN, WRITER_TOKEN, gql
from tests.test_ingest_failures import overflowing_text

WRITER = {"Authorization": f"Bearer {WRITER_TOKEN}"}
UPSERT_TOWN = """mutation($i: MunicipalityInput!) { upsertMunicipality(input: $i) {
    municipality { id subdomain name state country } consistencyToken } }"""
UPSERT_DOC = """mutation($i: DocumentInput!) { upsertDocument(input: $i) {
    document { id meetingName meetingDate documentType pages(first: 100) { edges { node { sourceId pageNumber } } } }
    consistencyToken } }"""
TOWN = {"subdomain": "writeville.wa", "name": "Writeville", "state": "WA"}


def doc_input(pages: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    base = {
        "municipality": "writeville.wa",
        "meetingName": "CityCouncil",
        "meetingDate": "2024-03-05",
        "documentType": "MINUTES",
        "pages": pages,
    }
    base.update(over)
    return base


def pages_of(n: int, word: str = "platypus") -> list[dict[str, Any]]:
    return [
        {"sourceId": f"wv-{word}-{i}", "pageNumber": i, "text": f"{word} page {i}"} for i in range(1, n + 1)
    ]


@pytest.fixture()
def town(client: httpx.Client) -> dict[str, Any]:
    body = gql(client, UPSERT_TOWN, {"i": TOWN}, WRITER)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["upsertMunicipality"]
    return result


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "UNAUTHENTICATED"),
        ({"Authorization": "Bearer wrong"}, "UNAUTHENTICATED"),
        ({"Authorization": "Basic abc"}, "UNAUTHENTICATED"),
        ({"Authorization": f"Bearer {READER_TOKEN}"}, "FORBIDDEN"),
    ],
)
def test_writes_need_a_token_with_write_rights(
    client: httpx.Client, headers: dict[str, str], code: str
) -> None:
    body = gql(client, UPSERT_TOWN, {"i": {**TOWN, "subdomain": "nope.wa"}}, headers)
    assert body["errors"][0]["extensions"]["code"] == code
    assert gql(client, '{ municipality(subdomain: "nope.wa") { id } }')["data"]["municipality"] is None


def test_upsert_then_read_your_write_with_the_token(client: httpx.Client, town: dict[str, Any]) -> None:
    assert town["municipality"]["country"] == "US"
    body = gql(client, UPSERT_DOC, {"i": doc_input(pages_of(3))}, WRITER)
    assert "errors" not in body, body
    payload = body["data"]["upsertDocument"]
    token = payload["consistencyToken"]
    assert token and payload["document"]["meetingDate"] == "2024-03-05"
    assert [e["node"]["pageNumber"] for e in payload["document"]["pages"]["edges"]] == [1, 2, 3]
    found = gql(
        client,
        '{ search(query: "platypus", filter: {municipalities: ["writeville.wa"]}) '
        "{ edges { node { sourceId } } } }",
        headers={"X-Consistency-Token": token},
    )
    assert len(found["data"]["search"]["edges"]) == 3
    # Replacing the document replaces its pages: 2 remain, with new text.
    body = gql(client, UPSERT_DOC, {"i": doc_input(pages_of(2, "echidna"))}, WRITER)
    token = body["data"]["upsertDocument"]["consistencyToken"]
    hdr = {"X-Consistency-Token": token}
    old = gql(client, '{ search(query: "platypus") { edges { cursor } } }', headers=hdr)
    new = gql(client, '{ search(query: "echidna") { edges { cursor } } }', headers=hdr)
    assert old["data"]["search"]["edges"] == [] and len(new["data"]["search"]["edges"]) == 2
    # Delete it.
    doc_id = body["data"]["upsertDocument"]["document"]["id"]
    body = gql(
        client,
        "mutation($id: ID!) { deleteDocument(id: $id) { deletedId consistencyToken } }",
        {"id": doc_id},
        WRITER,
    )
    hdr = {"X-Consistency-Token": body["data"]["deleteDocument"]["consistencyToken"]}
    assert (
        gql(client, '{ search(query: "echidna") { edges { cursor } } }', headers=hdr)["data"]["search"][
            "edges"
        ]
        == []
    )


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            doc_input(
                [
                    {"sourceId": "a", "pageNumber": 1, "text": "x"},
                    {"sourceId": "b", "pageNumber": 1, "text": "y"},
                ]
            ),
            "appears twice",
        ),
        (doc_input([{"sourceId": "a", "pageNumber": 1, "text": "nul \x00 byte"}]), "NUL"),
        (doc_input([{"sourceId": "a", "pageNumber": 1, "text": "x" * 1_000_001}]), "1 MB"),
        (doc_input(pages_of(1), meetingDate="1066-10-14"), "meetingDate"),
        (doc_input(pages_of(1), meetingDate="2024-02-30"), ""),
        (doc_input(pages_of(1), municipality="unknown.zz"), "unknown municipality"),
        (doc_input([{"sourceId": "a", "pageNumber": -1, "text": "x"}]), "negative"),
    ],
)
def test_invalid_documents_are_refused_and_write_nothing(
    client: httpx.Client,
    town: dict[str, Any],
    admin_conn: psycopg.Connection[Any],
    doc: dict[str, Any],
    message: str,
) -> None:
    before = admin_conn.execute("SELECT count(*) FROM meeting_document").fetchone()
    body = gql(client, UPSERT_DOC, {"i": doc}, WRITER)
    err = body["errors"][0]
    assert err["extensions"]["code"] == "BAD_USER_INPUT" and message in err["message"]
    assert admin_conn.execute("SELECT count(*) FROM meeting_document").fetchone() == before


def test_a_page_whose_vector_would_overflow_is_stored_whole(
    client: httpx.Client, town: dict[str, Any], admin_conn: psycopg.Connection[Any]
) -> None:
    # The database's rule (migration 0011) holds for this writer too: the whole text is stored, the longest
    # prefix whose vector fits is indexed. Before it, the insert failed ("string is too long for tsvector").
    text = "zyzzlequant " + overflowing_text(450_000)
    page = {"sourceId": "wv-huge-1", "pageNumber": 1, "text": text}
    body = gql(client, UPSERT_DOC, {"i": doc_input([page], meetingName="HugeBoard")}, WRITER)
    assert "errors" not in body, body
    hdr = {"X-Consistency-Token": body["data"]["upsertDocument"]["consistencyToken"]}
    try:
        row = admin_conn.execute(
            "SELECT length(text), public.civic_indexed_length(text) FROM meeting_page WHERE id = 'wv-huge-1'"
        ).fetchone()
        assert row is not None and row[0] == len(text) and row[1] < len(text)
        found = gql(client, '{ search(query: "zyzzlequant") { edges { node { sourceId } } } }', headers=hdr)
        assert [e["node"]["sourceId"] for e in found["data"]["search"]["edges"]] == ["wv-huge-1"]
    finally:
        doc_id = body["data"]["upsertDocument"]["document"]["id"]
        gql(client, "mutation($id: ID!) { deleteDocument(id: $id) { deletedId } }", {"id": doc_id}, WRITER)


def test_a_mutation_that_fails_halfway_leaves_no_rows(
    client: httpx.Client, town: dict[str, Any], admin_conn: psycopg.Connection[Any]
) -> None:
    # Another document of the same date owns page id 'clash-1': our insert fails after the document row and
    # the page delete have already run inside the transaction. Everything must roll back.
    first = gql(
        client,
        UPSERT_DOC,
        {"i": doc_input([{"sourceId": "clash-1", "pageNumber": 1, "text": "a"}], meetingName="ParksBoard")},
        WRITER,
    )
    assert "errors" not in first
    body = gql(
        client,
        UPSERT_DOC,
        {
            "i": doc_input(
                [
                    {"sourceId": "fresh-1", "pageNumber": 1, "text": "b"},
                    {"sourceId": "clash-1", "pageNumber": 2, "text": "c"},
                ],
                meetingName="LibraryBoard",
            )
        },
        WRITER,
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert admin_conn.execute(
        "SELECT count(*) FROM meeting_document WHERE meeting_name = 'LibraryBoard'"
    ).fetchone() == (0,)
    assert admin_conn.execute("SELECT count(*) FROM meeting_page WHERE id = 'fresh-1'").fetchone() == (0,)


def test_malformed_consistency_token_is_bad_user_input(client: httpx.Client) -> None:
    body = gql(client, "{ __typename }", headers={"X-Consistency-Token": "v9.garbage"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # A far-future position, in the unsigned format of earlier versions and as a well-formed but unsigned v2:
    # refused at once, before any read waits for a replay that never comes.
    for forged in ("v1.__________8", "v2." + "_" * 32):
        resp = client.post("/graphql", json={"query": '{ search(query: "council") { edges { cursor } } }'},
                           headers={"X-Consistency-Token": forged})
        assert resp.status_code == 400 and resp.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = gql(client, "{ __typename }", headers={"X-Max-Staleness-Ms": "soon"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
