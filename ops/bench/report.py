"""What every benchmark report carries: the machine, the code measured, the server's settings, p50/p95."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ops import stack
from ops.common.stats import percentile

PROJECT = stack.PROJECT_DIR
RESULTS_DIR = PROJECT / "docs" / "bench"


Conn = psycopg.Connection[Any]


# --- statistics and reporting -------------------------------------------------------------------------------


def summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(samples), 2),
        "p95": round(percentile(samples, 95) or float("nan"), 2),
        "min": round(min(samples), 2),
        "max": round(max(samples), 2),
        "n": len(samples),
    }


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **code_version(),
    }
    return info


def code_version() -> dict[str, str]:
    """Which search SQL was measured: others edit schema/ while benchmarks run."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT, capture_output=True, text=True,
                          check=False).stdout.strip()
    digest = hashlib.sha1((PROJECT / "schema" / "search_sql.py").read_bytes()).hexdigest()[:12]  # noqa: S324
    return {"git_head": head, "search_sql_sha1": digest}


def server_info(conn: Conn) -> dict[str, Any]:
    names = ("server_version", "shared_buffers", "work_mem", "effective_cache_size", "random_page_cost",
             "maintenance_work_mem", "max_parallel_workers_per_gather", "jit")
    return {n: scalar(conn, sql.SQL("SELECT current_setting({})").format(sql.Literal(n))) for n in names}


def write_report(name: str, report: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{name}.json"
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return out


def scalar(conn: Conn, query: str | sql.SQL | sql.Composed, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def timed_ms(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def fetch_all(conn: Conn, text: str, params: dict[str, Any]) -> None:
    conn.execute(text, params).fetchall()


def say(*parts: object) -> None:
    print(*parts, flush=True)
