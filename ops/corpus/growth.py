"""Growing one corpus in doubling steps, so a benchmark can measure it at several sizes without reloading.

The largest corpus of a series is planned once (:func:`ops.corpus.plan`); its documents, in date order, are
dealt into ``2**(steps - 1)`` interleaved classes by position (``i % modulus``). Step 0 loads one class, and
each later step loads as many classes as are loaded already, so the corpus doubles: 1/16, 2/16, 4/16, 8/16
and 16/16 of 2,000,000 pages for five steps. Because the classes interleave, every step is a fair sample of
the whole: all twenty years, every municipality, the same mix of bodies and document sizes. The corpus at
each size is therefore the same kind of corpus as :func:`ops.corpus.load` makes, not its first pages by date.

A step COPYs its documents and then their pages over parallel connections into the *indexed* partitions
(the GIN pending list takes the new entries, merged at the end with ``gin_clean_pending_list``), then
ANALYZEs: what an incremental ingest into a live database does.
"""

from __future__ import annotations

import dataclasses
import time

import psycopg

from migrations import partitions
from ops.corpus import loader
from ops.corpus.model import CorpusError, LoadStats, Plan
from ops.corpus.planning import plan


@dataclasses.dataclass(frozen=True)
class Step:
    """One doubling step: the residues (positions modulo ``modulus``) of the documents it adds."""

    index: int
    modulus: int
    residues: tuple[int, ...]

    @property
    def selection(self) -> loader.Selection:
        return (self.modulus, self.residues)


def steps(count: int) -> list[Step]:
    """``count`` doubling steps: step 0 adds residue 0, step j adds the odd multiples of modulus / 2**j."""
    if count < 1:
        raise ValueError("count must be >= 1")
    modulus = 2 ** (count - 1)
    out = [Step(0, modulus, (0,))]
    for j in range(1, count):
        stride = modulus // 2**j
        out.append(Step(j, modulus, tuple(stride * (2 * i + 1) for i in range(2 ** (j - 1)))))
    return out


def prepare(dsn: str, corpus: Plan) -> None:
    """Create the partitions the corpus needs and load every municipality (an empty database is required)."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        for table in ("meeting_page", "meeting_document", "municipality"):
            if loader._has_rows(conn, table):
                raise CorpusError(f"{table} is not empty: a growing corpus starts from an empty database")
        partitions.ensure_range(conn, corpus.first_date, corpus.last_date)
        with conn.transaction(), conn.cursor() as cursor:
            loader._copy_lines(
                cursor,
                loader._COPY_MUNICIPALITIES,
                (
                    f"{m.id}\t{loader._copy_text(m.subdomain)}\t{loader._copy_text(m.name)}\t{m.state}\tUS\t"
                    f"{m.kind}\n"
                    for m in corpus.municipalities
                ),
            )


def load_step(dsn: str, corpus: Plan, step: Step, *, workers: int = 2, progress: bool = False) -> LoadStats:
    """COPY the documents and pages of ``step`` into the (indexed) tables, merge GIN pending lists, ANALYZE."""
    started = time.perf_counter()
    documents = loader.select(corpus.documents, step.selection)
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        with conn.transaction(), conn.cursor() as cursor:
            loader._copy_lines(
                cursor,
                loader._COPY_DOCUMENTS,
                (
                    f"{d.id}\t{d.municipality_id}\t{d.meeting_name}\t{d.meeting_date.isoformat()}\t"
                    f"{d.document_type}\n"
                    for d in documents
                ),
            )
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('public.meeting_document', 'id'), "
                "coalesce(max(id), 0) + 1, false) FROM public.meeting_document"
            )
    pages_started = time.perf_counter()
    shares = loader._shares(documents, max(1, workers))
    text_bytes = loader._parallel(dsn, corpus, shares, None, step.selection) if shares else 0
    pages_seconds = time.perf_counter() - pages_started
    analyze_started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(loader._CLEAN_GIN_PENDING)
        conn.execute("ANALYZE public.meeting_document, public.meeting_page")
    now = time.perf_counter()
    stats = LoadStats(
        municipalities=0,
        documents=len(documents),
        pages=sum(d.pages for d in documents),
        text_bytes=text_bytes,
        workers=max(1, len(shares)),
        seconds=now - started,
        pages_seconds=pages_seconds,
        analyze_seconds=now - analyze_started,
    )
    if progress:
        print(stats.summary(), flush=True)
    return stats


def planned(pages: int, seed: int) -> Plan:
    """The plan of the largest corpus of the series (every step is a subset of it)."""
    return plan(pages, seed)
