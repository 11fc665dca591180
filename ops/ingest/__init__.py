"""Bulk ingest of meeting pages: ``python -m ops ingest``.

Two sources feed the same loader: JSONL files of civic.band page rows (:class:`~ops.ingest.sources.JsonlSource`;
the line format is documented in :mod:`ops.ingest.sources` and :mod:`ops.ingest.records`) and a
civic.band-style Datasette JSON API (:class:`~ops.ingest.sources.DatasetteSource`). Rows are upserted:
running the same input again rewrites nothing, a changed page is updated. Runs are resumable from a JSON
checkpoint, load over parallel connections, load brand-new partitions before indexing and attaching them, skip
and report bad rows, and ANALYZE what they wrote. :mod:`ops.ingest.loader` describes a run step by step.

Public API::

    summary = ingest_jsonl(admin_dsn, ["alameda.jsonl"], workers=2)
    summary = ingest_datasette(admin_dsn, "https://alameda.ca.civic.band", "alameda.ca", since="auto")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ops.ingest.api import ingest_datasette, ingest_jsonl, latest_date
    from ops.ingest.loader import IngestError, IngestSummary, ensure_municipality, run_ingest
    from ops.ingest.records import BadRow, PageRow
    from ops.ingest.sources import DatasetteSource, JsonlSource

# Loaded on first use: `python -m ops` builds its parser from ops.ingest.cli for every command, and a command
# that does not ingest should not pay for importing httpx, tqdm and the loader.
_EXPORTS = {
    "ingest_datasette": "api",
    "ingest_jsonl": "api",
    "latest_date": "api",
    "IngestError": "loader",
    "IngestSummary": "loader",
    "ensure_municipality": "loader",
    "run_ingest": "loader",
    "BadRow": "records",
    "PageRow": "records",
    "DatasetteSource": "sources",
    "JsonlSource": "sources",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ops.ingest' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ops.ingest.{module}"), name)


__all__ = [
    "BadRow",
    "DatasetteSource",
    "IngestError",
    "IngestSummary",
    "JsonlSource",
    "PageRow",
    "ensure_municipality",
    "ingest_datasette",
    "ingest_jsonl",
    "latest_date",
    "run_ingest",
]
