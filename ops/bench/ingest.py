"""``python -m ops bench ingest``: pages/s until searchable on every node, against the floor of the same run.

For each stack shape (``--replicas 0 2``: a throwaway stack of its own each, so the 1M-page benchmark stack
is left alone) and each variant of server settings to compare (``--variants wal_compression=off
wal_compression=lz4,default_toast_compression=lz4 ...``), on an empty, migrated database:

1. **the floor**: the same pages COPYed over the same number of parallel connections into an UNLOGGED table
   without indexes that computes the same ``search_vector`` as a stored generated column,
   ``to_tsvector('public.civic', text)`` (what ``meeting_page``'s trigger computes for every text under 128 KiB,
   and what its generated column computed before migration 0011): the work no design avoids, moving the bytes
   and computing every vector once. The floor is the same whatever the schema does, so runs before and after a
   change to how ``meeting_page`` computes its vectors compare against the same thing. When the database has
   ``meeting_page``'s trigger function (migration 0011), the same COPY is also timed into a table whose
   ``search_vector`` that trigger fills (``floor_trigger``): the cost of the trigger against the generated
   column, in the same run (a BEFORE ROW trigger also keeps COPY from inserting rows in batches). With
   ``--floor-runs N`` both floors are timed N times, alternately, and their medians reported;
2. **ingest**: ``python -m ops ingest``'s engine (:func:`ops.ingest.ingest_jsonl`) end to end, new partitions
   loaded, indexed and attached, ANALYZE done; while it runs, every replica's replay lag is sampled twice a
   second (bytes behind the primary's current WAL position);
3. **until searchable on every node**: after the ingest returns, the time until every replica has replayed
   the primary's final WAL position, and a check that each node finds the same pages for a word.

The rate compared with the floor is pages / (ingest + catch-up). The JSONL corpus is written first (not
timed) and the COPY data for the floor is prepared in memory (not timed). A variant's settings are applied
with ``ALTER SYSTEM`` on the primary and a reload, so the floor and the ingest of a variant run under the same
settings. Results go to ``docs/bench/ingest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ops import stack
from ops.bench.report import machine, say, write_report

FLOOR_VECTOR = "to_tsvector('public.civic'::regconfig, text)"
VECTOR_TRIGGER_FUNCTION = "public.civic_page_search_vector"


def _connect(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True, prepare_threshold=None)


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def floor_data(jsonl: Path, workers: int) -> list[bytes]:
    """The pages as COPY text, split into ``workers`` shares (prepared before timing)."""
    shares: list[list[str]] = [[] for _ in range(workers)]
    with jsonl.open(encoding="utf-8") as src:
        for i, line in enumerate(src):
            row = json.loads(line)
            shares[i % workers].append(
                f"{_copy_text(row['id'])}\t{row['date']}\t{row['page']}\t{_copy_text(row['text'])}\n"
            )
    return ["".join(s).encode() for s in shares]


def has_vector_trigger(admin: str) -> bool:
    """Whether the database has the trigger function that keeps ``meeting_page.search_vector`` (0011)."""
    with _connect(admin) as conn:
        row = conn.execute("SELECT to_regproc(%s) IS NOT NULL", [VECTOR_TRIGGER_FUNCTION]).fetchone()
        return bool(row and row[0])


def floor(admin: str, data: list[bytes], *, trigger: bool = False) -> float:
    """Seconds to COPY ``data`` in parallel into an unlogged, unindexed table computing the same vector.

    The vector is a generated column (:data:`FLOOR_VECTOR`), or with ``trigger`` an ordinary column filled by
    ``meeting_page``'s own trigger function.
    """
    with _connect(admin) as conn:
        conn.execute("DROP TABLE IF EXISTS public.bench_floor")
        vector = sql.SQL("") if trigger else sql.SQL(" GENERATED ALWAYS AS ({}) STORED").format(sql.SQL(FLOOR_VECTOR))
        conn.execute(
            sql.SQL(
                "CREATE UNLOGGED TABLE public.bench_floor (id text, meeting_date date, page_number int, text text, "
                "search_vector tsvector{})"
            ).format(vector)
        )
        if trigger:
            conn.execute(
                sql.SQL(
                    "CREATE TRIGGER bench_floor_vector BEFORE INSERT ON public.bench_floor "
                    "FOR EACH ROW EXECUTE FUNCTION {}()"
                ).format(sql.SQL(VECTOR_TRIGGER_FUNCTION))
            )

    def one(chunk: bytes) -> None:
        with _connect(admin) as c, c.cursor() as cur:
            with cur.copy("COPY public.bench_floor (id, meeting_date, page_number, text) FROM STDIN") as copy:
                for start in range(0, len(chunk), 1 << 20):
                    copy.write(chunk[start : start + (1 << 20)])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(data)) as pool:
        for future in [pool.submit(one, d) for d in data]:
            future.result()
    seconds = time.perf_counter() - started
    with _connect(admin) as conn:
        conn.execute("DROP TABLE public.bench_floor")
    return seconds


def floors(admin: str, data: list[bytes], runs: int) -> tuple[float, float | None, dict[str, list[float]]]:
    """Median seconds of the generated-column floor and of the trigger floor (None without the trigger).

    The two are timed alternately, ``runs`` times each, so that a neighbour's load on a shared machine weighs on
    both alike; the samples are returned too.
    """
    trigger = has_vector_trigger(admin)
    samples: dict[str, list[float]] = {"generated": [], "trigger": []}
    for _ in range(max(1, runs)):
        samples["generated"].append(round(floor(admin, data), 2))
        if trigger:
            samples["trigger"].append(round(floor(admin, data, trigger=True), 2))
    generated_s = statistics.median(samples["generated"])
    trigger_s = statistics.median(samples["trigger"]) if samples["trigger"] else None
    return generated_s, trigger_s, samples


class LagSampler(threading.Thread):
    """Samples every replica's replay lag behind the primary (bytes) until stopped."""

    def __init__(self, primary: str, replicas: list[str], interval_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.primary = primary
        self.replicas = replicas
        self.interval_s = interval_s
        self.samples: list[int] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with contextlib.ExitStack() as stack_:
            conns = [stack_.enter_context(_connect(d)) for d in [self.primary, *self.replicas]]
            while not self._halt.is_set():
                with contextlib.suppress(psycopg.Error):
                    row = conns[0].execute("SELECT pg_current_wal_lsn()::text").fetchone()
                    head = str(row[0]) if row else "0/0"
                    worst = 0
                    for c in conns[1:]:
                        got = c.execute(
                            "SELECT pg_wal_lsn_diff(%s::pg_lsn, coalesce(pg_last_wal_replay_lsn(), '0/0'))", [head]
                        ).fetchone()
                        worst = max(worst, int(got[0]) if got and got[0] is not None else 0)
                    self.samples.append(worst)
                self._halt.wait(self.interval_s)

    def stop(self) -> list[int]:
        self._halt.set()
        self.join()
        return self.samples


def catch_up(primary: str, replicas: list[str], timeout_s: float = 1800.0) -> float:
    """Seconds until every replica has replayed the primary's current WAL position."""
    with _connect(primary) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        target = str(row[0]) if row else "0/0"
    started = time.perf_counter()
    for dsn in replicas:
        with _connect(dsn) as conn:
            while True:
                got = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]
                ).fetchone()
                if got and got[0]:
                    break
                if time.perf_counter() - started > timeout_s:
                    raise RuntimeError(f"a replica did not catch up within {timeout_s:.0f} s")
                time.sleep(0.1)
    return time.perf_counter() - started


def _empty(admin: str) -> None:
    """Back to an empty database: every partition dropped (the ingest makes its own), tables truncated."""
    with _connect(admin) as conn:
        parts = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'public.meeting_page'::regclass AND c.relname <> 'meeting_page_default'"
        ).fetchall()
        for (name,) in parts:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier("public", str(name))))
        conn.execute("TRUNCATE public.meeting_page, public.meeting_document, public.municipality RESTART IDENTITY CASCADE")
        conn.execute("CHECKPOINT")


def _set_wal(admin: str, settings: dict[str, str]) -> None:
    with _connect(admin) as conn:
        for name, value in settings.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")


def _searchable(dsns: list[str]) -> list[int]:
    counts = []
    for dsn in dsns:
        with _connect(dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM public.meeting_page WHERE search_vector @@ "
                "websearch_to_tsquery('public.civic', 'council')"
            ).fetchone()
            counts.append(int(row[0]) if row else 0)
    return counts


def one_shape(args: argparse.Namespace, replicas: int, jsonl: Path, data: list[bytes], work: Path) -> list[dict[str, Any]]:
    from migrations import runner
    from ops.ingest import ingest_jsonl

    directory = work / f"stack-{replicas}"
    results = []
    try:
        layout = stack.up(directory, replicas=replicas, base_port=args.base_port + 20 * replicas,
                          memory_mb=args.memory_mb)
        admin = layout.bouncer_dsn("node1_session", user="postgres")
        primary = layout.direct_dsn(layout.node_names[0])
        standbys = [layout.direct_dsn(n) for n in layout.node_names[1:]]
        runner.migrate(admin)
        for variant in args.variants:
            settings = dict(item.split("=", 1) for item in variant.split(","))
            _empty(admin)
            _set_wal(admin, settings)
            floor_s, floor_trigger_s, floor_samples = floors(admin, data, args.floor_runs)
            with _connect(primary) as conn:
                row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
                wal_start = str(row[0]) if row else "0/0"
            sampler = LagSampler(primary, standbys) if standbys else None
            if sampler:
                sampler.start()
            started = time.perf_counter()
            summary = ingest_jsonl(admin, [jsonl], workers=args.workers, progress=False)
            ingest_s = time.perf_counter() - started
            lag = sampler.stop() if sampler else []
            after_s = catch_up(primary, standbys) if standbys else 0.0
            with _connect(primary) as conn:
                row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", [wal_start]).fetchone()
                wal_bytes = int(row[0]) if row else 0
            counts = _searchable([primary, *standbys])
            total = ingest_s + after_s
            floor_rate = args.pages / floor_s
            rate = args.pages / total
            result = {
                "replicas": replicas, "settings": variant, "pages": args.pages, "workers": args.workers,
                "floor_s": round(floor_s, 1), "floor_pages_per_s": round(floor_rate, 1),
                "floor_trigger_s": round(floor_trigger_s, 1) if floor_trigger_s else None,
                "floor_trigger_pages_per_s": round(args.pages / floor_trigger_s, 1) if floor_trigger_s else None,
                "floor_trigger_over_generated": round(floor_s / floor_trigger_s, 3) if floor_trigger_s else None,
                "floor_samples_s": floor_samples,
                "ingest_s": round(ingest_s, 1), "catch_up_after_s": round(after_s, 1),
                "until_searchable_everywhere_s": round(total, 1),
                "pages_per_s_until_searchable": round(rate, 1), "ratio_to_floor": round(rate / floor_rate, 3),
                "phases_s": {k: round(v, 1) for k, v in summary.phases.items()},
                "two_phase": summary.two_phase, "wal_mb": round(wal_bytes / 1e6, 1),
                "lag_during_mb": {"max": round(max(lag, default=0) / 1e6, 1),
                                  "mean": round(sum(lag) / len(lag) / 1e6, 1) if lag else 0.0},
                "council_pages_per_node": counts, "load_average": [round(x, 2) for x in os.getloadavg()],
            }
            say(json.dumps(result))
            results.append(result)
    finally:
        if not args.keep:
            stack.destroy(directory)
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| replicas | settings | floor pages/s | ingest s | catch-up s | pages/s until searchable "
             "| x floor | WAL MB | lag max MB |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r['replicas']} | {r['settings']} | {r['floor_pages_per_s']:,.0f} | {r['ingest_s']} | "
                     f"{r['catch_up_after_s']} | {r['pages_per_s_until_searchable']:,.0f} | {r['ratio_to_floor']} | "
                     f"{r['wal_mb']:,.0f} | {r['lag_during_mb']['max']:,.0f} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ops.corpus.jsonl import write_corpus_jsonl

    at_start = machine()
    work = Path(tempfile.mkdtemp(prefix="civic-bench-ingest-"))
    work.chmod(0o755)  # the stacks inside it run as the postgres user, who must be able to walk into it
    jsonl = Path(args.jsonl) if args.jsonl else work / "pages.jsonl"
    try:
        if not jsonl.exists():
            started = time.monotonic()
            lines = write_corpus_jsonl(jsonl, args.pages, seed=1)
            say(f"wrote {lines:,} JSONL lines ({jsonl.stat().st_size / 1e9:.2f} GB) in "
                f"{time.monotonic() - started:.0f} s (not timed)")
        data = floor_data(jsonl, args.workers)
        results = []
        for replicas in args.replicas:
            results += one_shape(args, replicas, jsonl, data, work)
        report = {"benchmark": "ingest", "pages": args.pages, "workers": args.workers, "machine": at_start,
                  "machine_at_end": machine(), "target_ratio_with_2_replicas": 0.5, "results": results}
        out = write_report(args.out, report)
        say(markdown(results))
        say(f"written to {out}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops bench ingest")
    parser.add_argument("--pages", type=int, default=200_000)
    parser.add_argument("--replicas", type=int, nargs="+", default=[0, 2], help="stack shapes to measure")
    parser.add_argument(
        "--variants", nargs="+",
        default=["wal_compression=off", "wal_compression=lz4",
                 "wal_compression=lz4,default_toast_compression=lz4"],
        help="server settings to compare, each 'name=value[,name=value]' (applied with ALTER SYSTEM)")
    parser.add_argument("--base-port", type=int, default=60432)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--floor-runs", type=int, default=1,
        help="time each floor this many times, generated and trigger alternately; the medians are reported")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway stacks")
    parser.add_argument("--jsonl", default="", help="reuse (or keep) the corpus JSONL at this path")
    parser.add_argument("--memory-mb", type=int, default=2048, help="RAM each node plans for")
    parser.add_argument("--out", default="ingest", help="name of the JSON under docs/bench/")
    return run(parser.parse_args(rest))
