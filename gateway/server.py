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
* Metrics have a listener of their own, ``GATEWAY_METRICS_HOST:GATEWAY_METRICS_PORT``: both sockets are bound
  here and handed to every worker, and the app answers ``/metrics`` only on the metrics socket, so the public
  port serves no metrics.
* Logs are one line per event (``gateway.logs``): the same configuration in the supervisor and every worker.
* Shutdown is graceful: on SIGTERM the workers stop accepting, and requests in flight get
  ``GATEWAY_GRACEFUL_SHUTDOWN_S`` to finish.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import socket
import tempfile
from pathlib import Path

from gateway.logs import log_config
from gateway.settings import Settings
from gateway.singletons import LOCK_DIR_ENV

log = logging.getLogger("gateway.server")


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


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket that worker processes inherit (as uvicorn binds its own)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


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
    # The workers build their settings from the environment: command-line overrides go there too, so that
    # every worker knows which socket is the public one.
    if host:
        os.environ["GATEWAY_HOST"] = host
    if port:
        os.environ["GATEWAY_PORT"] = str(port)
    settings = settings.model_copy(update={"host": host or settings.host, "port": port or settings.port})
    config = uvicorn.Config(
        "gateway.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=count,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http=GuardedHttpToolsProtocol if _has("httptools") else "h11",
        log_config=log_config(fmt=settings.log_format, level=settings.log_level, access_log=settings.access_log),
        log_level=settings.log_level,
        access_log=False,  # gateway.access writes the access line, with the request's ids
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
    )
    sockets = [config.bind_socket()]
    listener = settings.metrics_listener
    if listener is not None:
        sockets.append(bind(*listener))
        log.info("metrics on http://%s:%d/metrics", *listener)
    elif settings.metrics_port:
        log.warning("metrics on the public port (GATEWAY_METRICS_PORT equals GATEWAY_PORT)")
    server = uvicorn.Server(config)
    try:
        if count > 1:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=sockets).run()
        else:
            server.run(sockets=sockets)
    except KeyboardInterrupt:
        pass
    finally:
        for sock in sockets:
            sock.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0 if count > 1 or server.started else 3
