"""``python -m gateway serve``: uvicorn with uvloop and httptools, one or several worker processes.

Python runs one request at a time per process, so one process uses one core; N workers use N. With more than
one worker:

* uvicorn's supervisor starts the workers and restarts a dead one; each worker builds its own app from the
  environment (``create_app_from_env``), validated once here before any worker starts.
* Metrics are one view across workers: prometheus_client's multiprocess mode, in a fresh folder named by
  ``PROMETHEUS_MULTIPROC_DIR``, which the supervisor creates and removes.
* Jobs that must run once per host (the pg_stat_statements collector) go to whichever worker holds a lock
  file in the same folder.
* The pools of all workers share PgBouncer's server connections: each worker's pool per node is
  ``min(GATEWAY_POOL_MAX_SIZE, max(1, GATEWAY_PGBOUNCER_POOL_SIZE // workers))``, so N workers together never
  ask one node for more than PgBouncer can serve without queueing.
* Shutdown is graceful: on SIGTERM the workers stop accepting, and requests in flight get
  ``GATEWAY_GRACEFUL_SHUTDOWN_S`` to finish.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from gateway.settings import Settings
from gateway.singletons import LOCK_DIR_ENV


def default_workers() -> int:
    """One worker per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def pool_size_per_worker(settings: Settings, workers: int) -> int:
    """Each worker's pool size per node, so that all workers together stay within PgBouncer's pool."""
    return min(settings.pool_max_size, max(1, settings.pgbouncer_pool_size // max(1, workers)))


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def serve(settings: Settings, *, host: str | None = None, port: int | None = None, workers: int | None = None) -> int:
    """Serve until stopped; returns the exit status."""
    import uvicorn

    from gateway.http_protocol import BODY_TIMEOUT_ENV, HEAD_TIMEOUT_ENV, GuardedHttpToolsProtocol

    count = workers if workers is not None else (settings.workers or default_workers())
    run_dir = Path(tempfile.mkdtemp(prefix="civic-gateway-"))
    # Workers read their settings from the environment again: pass the derived pool size that way too.
    os.environ["GATEWAY_POOL_MAX_SIZE"] = str(pool_size_per_worker(settings, count))
    os.environ["GATEWAY_POOL_MIN_SIZE"] = str(min(settings.pool_min_size, pool_size_per_worker(settings, count)))
    os.environ[LOCK_DIR_ENV] = str(run_dir)
    os.environ[HEAD_TIMEOUT_ENV] = str(settings.http_head_timeout_s)
    os.environ[BODY_TIMEOUT_ENV] = str(settings.http_body_timeout_s)
    if not settings.cursor_secret:
        # Every worker must sign and check cursors and tokens with one key, or a cursor from one worker
        # would be refused by the next: without a configured secret, one is made here for this run.
        os.environ["GATEWAY_CURSOR_SECRET"] = secrets.token_urlsafe(32)
    if count > 1:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(run_dir)
    try:
        uvicorn.run(
            "gateway.app:create_app_from_env",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=count,
            loop="uvloop" if _has("uvloop") else "asyncio",
            http=GuardedHttpToolsProtocol if _has("httptools") else "h11",
            log_level="info",
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=settings.keep_alive_s,
            timeout_graceful_shutdown=settings.graceful_shutdown_s,
        )
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0
