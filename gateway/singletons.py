"""Jobs that run once per host however many workers serve: a lock file decides which worker runs them.

Reading pg_stat_statements (and anything else whose result is shared) once per host is enough; N workers doing
it would multiply the load on every node for nothing. Every worker tries to take an exclusive ``flock`` on one
file; the holder runs the jobs, the others retry now and then, so when the holder dies (the kernel drops its
lock) another worker takes over within one retry interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

LOCK_DIR_ENV = "GATEWAY_RUN_DIR"


class Singletons:
    """``path`` None: no other worker exists, this process always runs the jobs."""

    def __init__(self, path: Path | None, *, retry_s: float = 5.0) -> None:
        self._path = path
        self._retry_s = retry_s
        self._fd: int | None = None

    @classmethod
    def from_env(cls) -> Singletons:
        """The lock file the serving supervisor named for its workers (none: a lone process)."""
        run_dir = os.environ.get(LOCK_DIR_ENV)
        return cls(Path(run_dir) / "singletons.lock" if run_dir else None)

    @property
    def held(self) -> bool:
        return self._path is None or self._fd is not None

    def try_acquire(self) -> bool:
        if self.held:
            return True
        assert self._path is not None
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    async def run_while_held(self, job: Callable[[], Awaitable[None]]) -> None:
        """Wait for the lock, then run ``job`` until cancelled; the lock is released on the way out."""
        try:
            # Polling on purpose: the lock belongs to another process, no event of ours can say it is free.
            while not self.try_acquire():  # noqa: ASYNC110
                await asyncio.sleep(self._retry_s)
            await job()
        finally:
            self.release()
