"""The scale benchmark's arithmetic and growth plan, without servers (the benchmark itself runs by hand)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest

from ops.bench import scale_model
from ops.corpus import growth, loader, plan


def test_growth_steps_double_and_cover_every_document_once() -> None:
    steps = growth.steps(5)
    assert [len(s.residues) for s in steps] == [1, 1, 2, 4, 8]
    residues = [r for s in steps for r in s.residues]
    assert sorted(residues) == list(range(16))  # every class once, none twice
    corpus = plan(20_000, 1)
    loaded: list[int] = []
    sizes = []
    for step in steps:
        loaded += [d.id for d in loader.select(corpus.documents, step.selection)]
        sizes.append(len(loaded))
    assert sorted(loaded) == [d.id for d in corpus.documents]
    # Each step about doubles the documents, and even the first spans the whole date range.
    assert all(1.6 < b / a < 2.4 for a, b in itertools.pairwise(sizes))
    first = loader.select(corpus.documents, steps[0].selection)
    assert first[0].meeting_date.year <= corpus.first_date.year + 1
    assert first[-1].meeting_date.year >= corpus.last_date.year - 1


def _report(exponent: float) -> dict[str, Any]:
    sizes = []
    for pages in (125_000, 250_000, 500_000, 1_000_000):
        ms = 2.0 * (pages / 125_000) ** exponent
        result = {"class": "grows", "gateway": {"p50": ms + 1, "p95": 2 * ms + 1}, "sql": {"p50": ms, "p95": 2 * ms}}
        flat = {"class": "flat", "gateway": {"p50": 5.0, "p95": 9.0}, "sql": {"p50": 4.0, "p95": 8.0}}
        sizes.append({
            "pages": pages, "results": [result, flat],
            "ingest": {"pages_per_second": 1000.0},
            "bytes": {"database": 10_000 * pages, "pages_table": 8_000 * pages, "fulltext": 1_000 * pages,
                      "btree_and_other_indexes": 500 * pages, "indexes": 1_500 * pages},
        })
    return {"classes": [{"name": "grows"}, {"name": "flat"}], "sizes": sizes, "machine": {"git_head": "x"}}


def test_model_recovers_exponents_and_projects(tmp_path: Path) -> None:
    report = _report(1.0)
    model = scale_model.project(report)
    assert model["classes"]["grows"]["sql_p50"]["exponent"] == pytest.approx(1.0, abs=1e-3)
    assert model["classes"]["flat"]["sql_p50"]["exponent"] == pytest.approx(0.0, abs=1e-3)
    grows_at_100m = model["classes"]["grows"]["sql_p50"]["at_100000000"]
    assert grows_at_100m == pytest.approx(2.0 * 100_000_000 / 125_000, rel=1e-3)
    # 300 ms p95 = 4 * (pages / 125k): crossed at 9.375M pages.
    assert model["classes"]["grows"]["pages_where_sql_p95_reaches_interactive_bound"] == pytest.approx(
        9_375_000, rel=1e-3
    )
    ten = model["projections"]["10000000"]
    assert ten["database_gb_per_node"] == pytest.approx(100.0)
    assert ten["hot_set_gb"] == pytest.approx(15.0 + 0.05 * 80.0)
    mean_ms = (2.0 * 80 + 4.0) / 2
    assert ten["replicas_for_load"] == math.ceil(100 / (0.6 * 16 * 1000 / mean_ms))
    assert ten["classes_over_interactive_bound"] == ["grows"]
    report["model"] = model
    table = scale_model.markdown(report)
    assert "| grows |" in table and "| 1,000,000 |" in table
    png = tmp_path / "curve.png"
    scale_model.plot(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
