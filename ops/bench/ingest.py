"""``python -m ops bench ingest``: N pages from JSONL until searchable (indexes built, ANALYZE done).

The run uses a throwaway stack of its own (so the 1M-page benchmark stack is left alone), migrated and empty,
writes the synthetic corpus as JSONL first (not timed), then times ``python -m ops ingest``'s engine
end to end, with its phases. As a baseline in the same run it times a plain COPY of the same rows into an
unindexed table without the tsvector (the floor any ingest pays for moving the bytes), and reports both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import psycopg

from ops import stack
from ops.bench.report import machine, write_report


def run(args: argparse.Namespace) -> int:
    from migrations import runner
    from ops.corpus.jsonl import write_corpus_jsonl
    from ops.ingest import ingest_jsonl

    work = Path(tempfile.mkdtemp(prefix="civic-bench-ingest-"))
    work.chmod(0o755)  # the stack inside it runs as the postgres user, who must be able to walk into it
    directory = Path(args.dir) if args.dir else work / "stack"
    jsonl = Path(args.jsonl) if args.jsonl else work / "pages.jsonl"
    try:
        if not jsonl.exists():
            started = time.monotonic()
            lines = write_corpus_jsonl(jsonl, args.pages, seed=1)
            print(f"wrote {lines:,} JSONL lines ({jsonl.stat().st_size / 1e9:.2f} GB) in "
                  f"{time.monotonic() - started:.0f} s (not timed)", flush=True)
        layout = stack.up(directory, replicas=args.replicas, base_port=args.base_port, memory_mb=args.memory_mb)
        admin = layout.bouncer_dsn("node1_session", user="postgres")
        runner.migrate(admin)
        baseline = _copy_baseline(admin, jsonl)
        summary = ingest_jsonl(admin, [jsonl], workers=args.workers or (os.cpu_count() or 2), progress=True)
        with psycopg.connect(admin, autocommit=True, prepare_threshold=None) as conn:
            row = conn.execute(
                "SELECT count(*) FROM meeting_page WHERE search_vector @@ websearch_to_tsquery('public.civic', 'council')"
            ).fetchone()
        report = {
            "benchmark": "ingest",
            "pages": args.pages,
            "replicas": args.replicas,
            "workers": args.workers or os.cpu_count(),
            "seconds": round(summary.seconds, 1),
            "pages_per_second": round(summary.pages_per_second, 1),
            "phases_s": {k: round(v, 1) for k, v in summary.phases.items()},
            "inserted": summary.inserted,
            "skipped": summary.skipped,
            "searchable_council_pages": int(row[0]) if row else 0,
            "baseline_plain_copy_s": baseline,
            "target_s": 150,
            "machine": machine(),
        }
        out = write_report("ingest", report)
        print(json.dumps(report, indent=2))
        print(f"written to {out}")
        return 0
    finally:
        if not args.dir and not args.keep:
            stack.destroy(directory)
        shutil.rmtree(work, ignore_errors=True)


def _copy_baseline(admin: str, jsonl: Path) -> float:
    """COPY the rows' text into an unlogged, unindexed table with no tsvector: the cost of moving the bytes."""
    with psycopg.connect(admin, autocommit=True, prepare_threshold=None) as conn:
        conn.execute("CREATE UNLOGGED TABLE IF NOT EXISTS bench_copy (id text, day date, page int, text text)")
        started = time.monotonic()
        with conn.cursor() as cur, cur.copy("COPY bench_copy FROM STDIN") as copy, jsonl.open() as src:
            for line in src:
                row = json.loads(line)
                copy.write_row((row["id"], row["date"], row["page"], row["text"]))
        seconds = time.monotonic() - started
        conn.execute("DROP TABLE bench_copy")
    return round(seconds, 1)


def main(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops bench ingest")
    parser.add_argument("--pages", type=int, default=1_000_000)
    parser.add_argument("--dir", default="", help="stack folder (default: a throwaway one, deleted afterwards)")
    parser.add_argument("--base-port", type=int, default=52432)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the throwaway stack")
    parser.add_argument("--jsonl", default="", help="reuse (or keep) the corpus JSONL at this path")
    parser.add_argument("--memory-mb", type=int, default=4096, help="RAM each node plans for")
    return run(parser.parse_args(rest))
