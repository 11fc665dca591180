"""A database ready for a benchmark, drill or test: migrated, with the synthetic corpus loaded."""

from __future__ import annotations

import psycopg

from ops.corpus import LoadStats


def page_count(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        row = conn.execute("SELECT count(*) FROM public.meeting_page").fetchone()
    return int(row[0]) if row else 0


def migrate_and_load(
    dsn: str,
    *,
    pages: int,
    seed: int = 1,
    workers: int = 2,
    progress: bool = True,
    reload_smaller: bool = False,
) -> tuple[int, LoadStats | None]:
    """Apply the migrations, then load ``pages`` synthetic pages unless pages are there already.

    Returns the number of pages present and the load's statistics (None when nothing was loaded). A database
    that holds pages is used as it is, so drills run against whatever corpus a developer loaded; with
    ``reload_smaller`` a database holding fewer than ``pages`` is emptied and loaded again, as benchmarks
    need a corpus of a known size. ``dsn`` is an admin, session-mode DSN to the primary.
    """
    from migrations import runner
    from ops import corpus

    runner.migrate(dsn)
    have = page_count(dsn)
    if have >= pages or (have and not reload_smaller):
        return have, None
    if reload_smaller:
        # Also when no page is there: a failed load leaves municipalities and documents behind.
        if have:
            print(f"reloading: {have:,} pages present, {pages:,} wanted", flush=True)
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
            conn.execute(
                "TRUNCATE public.meeting_page, public.meeting_document, public.municipality RESTART IDENTITY CASCADE"
            )
    stats = corpus.load(dsn, pages=pages, seed=seed, workers=workers, progress=progress)
    return pages, stats
