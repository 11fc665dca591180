"""The two entry points a caller (the CLI, a benchmark, a scheduler) uses: ingest JSONL files, or a Datasette."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import httpx

from migrations.model import DOCUMENT_TYPES as DOCUMENT_TYPES
from ops.ingest.loader import IngestError, IngestSummary, connect, ensure_municipality, run_ingest
from ops.ingest.records import (
    SUBDOMAIN_RE,
    BadRow,
    DocumentType,
    RowDefaults,
    RowError,
    type_from_file_name,
)
from ops.ingest.sources import DatasetteSource, JsonlSource, Source


def ingest_jsonl(
    admin_dsn: str,
    paths: Sequence[Path | str],
    *,
    document_type: DocumentType | None = None,
    municipality: str | None = None,
    workers: int = 2,
    batch_size: int = 2000,
    checkpoint: Path | None = None,
    resume: bool = False,
    progress: bool = False,
    max_batches: int | None = None,
    on_bad_row: Callable[[BadRow], None] | None = None,
) -> IngestSummary:
    """Upsert the page rows of JSONL ``paths`` (format: :mod:`ops.ingest.sources`) into the database.

    ``admin_dsn`` reaches the primary as the tables' owner, directly or through PgBouncer in *session* mode
    (the loader uses temporary tables and an advisory lock). ``document_type`` and ``municipality`` are the
    defaults for lines without ``kind`` or ``subdomain``; without ``document_type`` a file name containing
    "agenda" or "minute" supplies the type. ``workers`` connections load in parallel, ``batch_size`` lines make
    a batch (one transaction per worker, one checkpoint step). With ``checkpoint``, the position is saved
    after every committed batch, and ``resume`` continues from it (without ``resume`` the run starts over).
    ``max_batches`` stops after that many batches as an interruption would (new partitions stay pending until
    a later run finishes them). Bad rows are skipped, counted, kept in the summary (the first 1,000) and
    passed to ``on_bad_row``. Raises :class:`IngestError` when the run cannot go on.
    """
    sources: list[Source] = []
    for raw in paths:
        path = Path(raw)
        kind = document_type or type_from_file_name(path.name)
        sources.append(JsonlSource(path, RowDefaults(subdomain=municipality, document_type=kind)))
    return run_ingest(
        admin_dsn,
        sources,
        workers=workers,
        batch_size=batch_size,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        max_batches=max_batches,
        on_bad_row=on_bad_row,
    )


def latest_date(admin_dsn: str, subdomain: str, document_type: DocumentType) -> dt.date | None:
    """The newest meeting date stored for a municipality and type (what ``--since auto`` starts from)."""
    with connect(admin_dsn) as conn:
        row = conn.execute(
            "SELECT max(d.meeting_date) FROM public.meeting_document d JOIN public.municipality m "
            "ON m.id = d.municipality_id WHERE m.subdomain = %s AND d.document_type = %s",
            [subdomain, document_type],
        ).fetchone()
    return row[0] if row and isinstance(row[0], dt.date) else None


def ingest_datasette(
    admin_dsn: str,
    base_url: str,
    municipality: str,
    *,
    name: str | None = None,
    state: str | None = None,
    document_types: Sequence[DocumentType] = DOCUMENT_TYPES,
    since: dt.date | Literal["auto"] | None = None,
    page_size: int = 1000,
    workers: int = 2,
    checkpoint: Path | None = None,
    resume: bool = False,
    progress: bool = False,
    max_batches: int | None = None,
    on_bad_row: Callable[[BadRow], None] | None = None,
    client: httpx.Client | None = None,
    timeout_s: float = 30.0,
) -> IngestSummary:
    """Upsert the pages of one municipality's Datasette (``{base_url}/meetings/agendas.json`` and ``minutes``).

    The municipality ``municipality`` (a subdomain) must exist, or is created from ``name`` and ``state``.
    ``since`` sets ``date__gte`` for an incremental run; ``"auto"`` uses the newest meeting date already
    stored for each type (its pages are read again and found unchanged, and any page added to that meeting
    is picked up). A batch is one reply of ``page_size`` rows; the checkpoint keeps the ``_next`` token, and a
    resumed run keeps the ``since`` of its checkpoint. Other arguments as for :func:`ingest_jsonl`.
    """
    if not SUBDOMAIN_RE.match(municipality):
        raise IngestError(f"{municipality!r} is not a civic.band subdomain like 'alameda.ca'")
    with connect(admin_dsn) as conn:
        try:
            _, created = ensure_municipality(conn, municipality, name=name, state=state)
        except RowError as exc:
            raise IngestError(f"{exc}: pass --name and --state (name=, state=)") from None
    own_client = client is None
    http = client or httpx.Client(
        timeout=timeout_s, follow_redirects=True, headers={"user-agent": "civic-ingest"}
    )
    try:
        sources: list[Source] = []
        for kind in document_types:
            start = latest_date(admin_dsn, municipality, kind) if since == "auto" else since
            sources.append(
                DatasetteSource(http, base_url, kind, municipality, since=start, page_size=page_size)
            )
        summary = run_ingest(
            admin_dsn,
            sources,
            workers=workers,
            batch_size=page_size,
            checkpoint=checkpoint,
            resume=resume,
            progress=progress,
            max_batches=max_batches,
            on_bad_row=on_bad_row,
        )
    finally:
        if own_client:
            http.close()
    summary.municipalities_created += created
    return summary
