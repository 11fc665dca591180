"""Test data that several test modules set up the same way: a scratch database at an older schema, and a
town of crafted pages next to the synthetic corpus."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import psycopg
from psycopg import sql

from migrations import runner
from ops import stack


@contextlib.contextmanager
def scratch_database(layout: stack.StackLayout, name: str, *, before: int) -> Iterator[str]:
    """A database of its own on the test primary, migrated up to (not including) migration ``before``; yields
    its DSN and drops it afterwards."""
    admin = f"host=127.0.0.1 port={layout.node_ports[0]} dbname=postgres user=postgres connect_timeout=3"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = admin.replace("dbname=postgres", f"dbname={name}")
    try:
        runner.migrate(dsn, migrations=[m for m in runner.discover() if m.version < before])
        yield dsn
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def add_town(admin_dsn: str, subdomain: str, name: str, pages: Sequence[tuple[str, object, str]]) -> None:
    """A town with one one-page document per ``(source id, date, text)``, then ANALYZE."""
    with psycopg.connect(admin_dsn, autocommit=True, prepare_threshold=None) as conn:
        town = conn.execute(
            "INSERT INTO municipality (subdomain, name, state, kind) VALUES (%s, %s, 'ZX', 'town') RETURNING id",
            [subdomain, name],
        ).fetchone()[0]  # type: ignore[index]
        for source_id, day, text in pages:
            doc = conn.execute(
                "INSERT INTO meeting_document (municipality_id, meeting_name, meeting_date, document_type) "
                "VALUES (%s, %s, %s, 'minutes') RETURNING id",
                [town, f"Board{source_id.replace('-', '')}", day],
            ).fetchone()[0]  # type: ignore[index]
            conn.execute(
                "INSERT INTO meeting_page (id, meeting_date, document_id, municipality_id, document_type,"
                " page_number, text) VALUES (%s, %s, %s, %s, 'minutes', 1, %s)",
                [source_id, day, doc, town, text],
            )
        conn.execute("ANALYZE meeting_page")
