"""``python -m gateway serve`` as a child process, for benchmarks and drills.

A separate process, so that the client generating load does not share the gateway's interpreter (and its
CPU time does not count as the gateway's).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import httpx

from ops.common.net import LOOPBACK, free_port
from ops.stack import PROJECT_DIR, StackError


class GatewayProcess:
    """The gateway on ``127.0.0.1:port``, ready (``/readyz`` answers 200) inside the ``with`` block.

    Its stderr (uvicorn's and the routing logger's warnings: ejections, readmissions, primary changes) goes to
    ``log_path``; with no ``log_path`` it goes to a temporary file that is deleted when the block ends well and
    kept (and named on stderr) when it fails. Its stdout, the access log, goes to ``stdout_path`` when given and
    is discarded otherwise: a pipe nobody reads while the gateway runs would fill and block it. Leaving the block terminates the gateway, and kills it if
    it does not exit within 30 s.
    """

    def __init__(
        self,
        env: dict[str, str],
        *,
        port: int,
        log_path: Path | None = None,
        ready_timeout_s: float = 60.0,
        workers: int = 1,
        stdout_path: Path | None = None,
        project_dir: Path = PROJECT_DIR,
    ) -> None:
        # Benchmarks and drills send all their load from one address: the per-client budgets are raised out of
        # the way (the limiter still counts every request, so its cost stays measured) unless ``env`` says otherwise.
        unlimited = {
            "GATEWAY_RATE_LIMIT_READS_PER_MINUTE": str(10**9),
            "GATEWAY_RATE_LIMIT_WRITES_PER_MINUTE": str(10**9),
        }
        # Metrics on a free port of their own (the default one would collide between gateways run side by side).
        metrics = {"GATEWAY_METRICS_PORT": str(free_port()), "GATEWAY_METRICS_HOST": LOOPBACK}
        self.env = {**os.environ, **unlimited, **metrics, **env}
        self.workers = workers
        # The tree whose ``gateway`` package is served: ``-m`` imports from the working directory first, so a
        # benchmark can serve an older commit's code (exported elsewhere) beside this one.
        self.project_dir = project_dir
        self.port = port
        self.url = f"http://{LOOPBACK}:{port}"
        metrics_port = self.env["GATEWAY_METRICS_PORT"]
        #: Where ``/metrics`` answers (the public URL when metrics share the public port).
        self.metrics_url = (
            self.url if metrics_port in {"0", str(port)} else f"http://{self.env.get('GATEWAY_METRICS_HOST') or LOOPBACK}:{metrics_port}"
        )
        self.ready_timeout_s = ready_timeout_s
        self._temporary_log = log_path is None
        if log_path is None:
            with tempfile.NamedTemporaryFile(prefix="gateway-", suffix=".log", delete=False) as tmp:
                log_path = Path(tmp.name)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.stdout_path = stdout_path
        self._stdout: IO[bytes] | None = None

    def __enter__(self) -> GatewayProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        if self.stdout_path is not None:
            self._stdout = self.stdout_path.open("ab")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--host",
                LOOPBACK,
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            env=self.env,
            cwd=self.project_dir,
            stdout=self._stdout if self._stdout is not None else subprocess.DEVNULL,
            stderr=self._log,
        )
        try:
            self._wait_ready()
        except BaseException as exc:
            self.__exit__(type(exc), exc, None)
            raise
        return self

    @property
    def pid(self) -> int:
        """The serving process (with several workers, their supervisor)."""
        assert self._proc is not None, "the gateway is not running"
        return self._proc.pid

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise StackError(
                    f"the gateway exited with status {self._proc.returncode}: see {self.log_path}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise StackError(
            f"the gateway was not ready within {self.ready_timeout_s:.0f} s: see {self.log_path}"
        )

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None
        if self._temporary_log:
            if not exc or exc[0] is None:
                self.log_path.unlink(missing_ok=True)
            else:
                print(f"gateway log kept in {self.log_path}", file=sys.stderr)
