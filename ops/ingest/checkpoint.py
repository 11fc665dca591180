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
        return cls(path, {str(k): dict(v) for k, v in raw["positions"].items() if isinstance(v, dict)})

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


class CommitTracker:
    """Moves the checkpoint past a batch once it and every earlier batch have committed (thread-safe).

    ``register`` is called by the reader, in batch order, with the number of transactions (worker tasks) the
    batch was split into and the source position just after it; ``task_done`` by the workers as each of those
    commits. ``on_advance(pages)`` runs, under the tracker's lock, with the pages of the batches the watermark
    just passed (the progress bar counts committed pages this way).
    """

    def __init__(self, checkpoint: Checkpoint, *, on_advance: Callable[[int], None] | None = None) -> None:
        self.checkpoint = checkpoint
        self._on_advance = on_advance
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._next = 0  # the lowest batch number not yet past the watermark
        self.committed_batches = 0

    def register(self, seq: int, *, tasks: int, source: str, position: Position, pages: int) -> None:
        """Announce batch ``seq`` (0, 1, 2, ... in order); a batch of no tasks is committed at once."""
        with self._lock:
            self._pending[seq] = _Pending(tasks, source, position, pages)
            self._advance()

    def task_done(self, seq: int) -> None:
        """One transaction of batch ``seq`` has committed."""
        with self._lock:
            self._pending[seq].tasks_left -= 1
            self._advance()

    def _advance(self) -> None:
        moved = False
        pages = 0
        while (head := self._pending.get(self._next)) is not None and head.tasks_left <= 0:
            del self._pending[self._next]
            self.checkpoint.positions[head.source] = head.position
            pages += head.pages
            self._next += 1
            self.committed_batches += 1
            moved = True
        if moved:
            self.checkpoint.save()
            if self._on_advance is not None:
                self._on_advance(pages)
