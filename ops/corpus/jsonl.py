"""The synthetic corpus as ingest JSONL, so the ingest benchmark can time ``python -m ops ingest`` on it."""

from __future__ import annotations

import json
from pathlib import Path

from ops.corpus.planning import plan
from ops.corpus.text import document_pages


def write_corpus_jsonl(path: Path, pages: int, seed: int = 1, *, prefix: str = "") -> int:
    """Write the synthetic corpus (``pages`` pages for ``seed``) as ingest JSONL.

    Every line carries ``municipality_name`` and ``state`` so an ingest creates the towns it does not know.
    ``prefix`` is put before every subdomain and page id ("bench-" gives ``bench-maplewood.nj``), so the same
    corpus can be loaded beside the one ``ops corpus`` loaded, and deleted afterwards by its subdomains.
    Returns the number of lines written.
    """
    corpus = plan(pages, seed)
    written = 0
    with path.open("w", encoding="utf-8") as out:
        for doc in corpus.documents:
            town = corpus.municipalities[doc.municipality_id - 1]
            for page in document_pages(corpus, doc):
                line = {
                    "subdomain": prefix + town.subdomain,
                    "kind": page.document_type,
                    "id": prefix + page.id,
                    "meeting": doc.meeting_name,
                    "date": page.meeting_date.isoformat(),
                    "page": page.page_number,
                    "text": page.text,
                    "page_image": page.page_image,
                    "municipality_name": town.name,
                    "state": town.state,
                }
                out.write(json.dumps(line, ensure_ascii=False))
                out.write("\n")
                written += 1
    return written


