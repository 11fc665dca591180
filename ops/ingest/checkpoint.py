"""Where a run has got to in each source, kept in a JSON file so an interrupted run can be resumed.

The file looks like this (one entry per source; a JSONL file is keyed by its absolute path, a Datasette
table by its endpoint URL)::

    {
      "format": "civic-ingest-checkpoint/1",
      "updated": "2025-01-31T12:00:00Z",
      "positions": {
        "/data/alameda-agendas.jsonl": {"line": 4000, "offset": 10485760, "done": false},
        "https://alameda.ca.civic.band/meetings/minutes.json": {"next": "4000", "since": "2024-01-01",
                                                                "done": false}
      }
    }

A position always points just past the last row of a batch that is committed, and of every batch before it.
Batches are committed by parallel workers in any order, so :class:`CommitTracker` holds each finished batch back
until all earlier ones have finished too (a low watermark) and only then moves the checkpoint. Rows of
batches that had committed past the watermark are read again on resume; the upsert finds them unchanged.

With two-phase commit (:mod:`ops.ingest.loader`), each worker's share of a batch is a prepared transaction,
and a batch is committed by committing all of its shares. The checkpoint is then also the commit decision: the
file is saved with the position past the batch *and* the global ids of its prepared transactions
(``"committing"``) before the first ``COMMIT PREPARED``. A run that finds prepared transactions of an ingest
left over (the process died) commits those the file lists and rolls back the others, so a batch is either
committed whole or not at all, even across a crash.

The file is replaced atomically (a temporary file in the same folder, fsynced, then ``os.replace``), so a crash
leaves either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

FORMAT = "civic-ingest-checkpoint/1"

Position = dict[str, Any]


class CheckpointError(RuntimeError):
    """The checkpoint file cannot be read or does not fit this run; the message says what to do."""


@dataclasses.dataclass
class Checkpoint:
    """Per-source positions, and the file they are saved to (None: keep them in memory only)."""

    path: Path | None
    positions: dict[str, Position] = dataclasses.field(default_factory=dict)
    committing: list[str] = dataclasses.field(default_factory=list)  # gids decided to commit (see above)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """Read ``path``; a missing file is an empty checkpoint (nothing done yet)."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            raise CheckpointError(
                f"cannot read checkpoint {path}: {exc}; run without --resume to start over"
            ) from None
        if (
            not isinstance(raw, dict)
            or raw.get("format") != FORMAT
            or not isinstance(raw.get("positions"), dict)
        ):
            raise CheckpointError(f"{path} is not an ingest checkpoint ({FORMAT}); run without --resume")
        committing = raw.get("committing")
        return cls(
            path,
            {str(k): dict(v) for k, v in raw["positions"].items() if isinstance(v, dict)},
            [str(g) for g in committing] if isinstance(committing, list) else [],
        )

    @classmethod
    def decided(cls, path: Path | None) -> list[str]:
        """The gids a checkpoint file says were being committed (none when it is missing or unreadable)."""
        if path is None:
            return []
        try:
            return cls.load(path).committing
        except CheckpointError:
            return []

    def get(self, source: str) -> Position | None:
        """The saved position of ``source``, or None when the checkpoint has none."""
        return self.positions.get(source)

    def save(self) -> None:
        """Write the file atomically (no-op without a path)."""
        if self.path is None:
            return
        body = {
            "format": FORMAT,
            "updated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "positions": self.positions,
            "committing": self.committing,
        }
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(body, handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclasses.dataclass
class _Pending:
    tasks_left: int
    source: str
    position: Position
    pages: int
    gids: list[str] = dataclasses.field(default_factory=list)  # prepared shares, in task order


class CommitTracker:
    """Moves the checkpoint past a batch once it and every earlier batch have committed (thread-safe).

    ``register`` is called by the reader, in batch order, with the number of transactions (worker tasks) the
    batch was split into and the source position just after it; ``task_done`` by the workers as each of those
    commits. ``on_advance(pages)`` runs, under the tracker's lock, with the pages of the batches the watermark
    just passed (the progress bar counts committed pages this way). With ``commit``, a task may hand over the
    gid of its prepared transaction; when the watermark reaches its batch, the checkpoint is saved with the
    batch's gids as the decision, and ``commit(gids)`` commits them (under the lock, in batch order).
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        on_advance: Callable[[int], None] | None = None,
        commit: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self._on_advance = on_advance
        self._commit = commit
        self._lock = threading.Lock()
        self._moved = threading.Condition(self._lock)
        self._pending: dict[int, _Pending] = {}
        self._next = 0  # the lowest batch number not yet past the watermark
        self.committed_batches = 0

    @property
    def watermark(self) -> int:
        """The lowest batch number not committed yet."""
        with self._lock:
            return self._next

    def wait_below(self, seq: int, limit: int, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until fewer than ``limit`` batches before ``seq`` are uncommitted."""
        with self._moved:
            return self._moved.wait_for(lambda: seq - self._next < limit, timeout=timeout)

    def prepared(self) -> list[str]:
        """The gids of prepared shares not committed yet (what a failed run rolls back)."""
        with self._lock:
            return [g for p in self._pending.values() for g in p.gids]

    def register(self, seq: int, *, tasks: int, source: str, position: Position, pages: int) -> None:
        """Announce batch ``seq`` (0, 1, 2, ... in order); a batch of no tasks is committed at once."""
        with self._lock:
            self._pending[seq] = _Pending(tasks, source, position, pages)
            self._advance()

    def task_done(self, seq: int, gid: str | None = None) -> None:
        """One transaction of batch ``seq`` has committed, or (with ``gid``) is prepared under that id."""
        with self._lock:
            pending = self._pending[seq]
            pending.tasks_left -= 1
            if gid is not None:
                pending.gids.append(gid)
            self._advance()

    def _advance(self) -> None:
        moved = False
        pages = 0
        while (head := self._pending.get(self._next)) is not None and head.tasks_left <= 0:
            self.checkpoint.positions[head.source] = head.position
            if head.gids and self._commit is not None:
                # The decision is durable before the first COMMIT PREPARED: a crash in between is finished by
                # the next run (Checkpoint.committing), never left half done.
                self.checkpoint.committing = sorted(head.gids)
                self.checkpoint.save()
                self._commit(sorted(head.gids))
            del self._pending[self._next]
            pages += head.pages
            self._next += 1
            self.committed_batches += 1
            moved = True
        if moved:
            self.checkpoint.save()
            self._moved.notify_all()
            if self._on_advance is not None:
                self._on_advance(pages)
