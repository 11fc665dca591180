"""What a load run's samples say: latency percentiles, errors by code, reads by node, a per-second timeline."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from ops.bench.loadgen import Sample
from ops.common.stats import percentile


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def latency_summary(samples: Iterable[Sample]) -> dict[str, Any]:
    """Count, errors and p50/p95/p99 (ms) of the successful requests among ``samples``."""
    rows = list(samples)
    ok = [s.latency_ms for s in rows if s.ok]
    return {
        "requests": len(rows),
        "errors": sum(1 for s in rows if not s.ok),
        "p50_ms": _r(percentile(ok, 50)),
        "p95_ms": _r(percentile(ok, 95)),
        "p99_ms": _r(percentile(ok, 99)),
        "max_ms": _r(max(ok, default=None)),
    }


def errors_by_code(samples: Iterable[Sample]) -> dict[str, int]:
    return dict(Counter(s.code or "?" for s in samples if not s.ok).most_common())


def error_examples(samples: Iterable[Sample], *, per_code: int = 3) -> dict[str, list[dict[str, Any]]]:
    """A few failed requests of each code, with their message and time, as evidence for the report."""
    out: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        if s.ok:
            continue
        bucket = out.setdefault(s.code or "?", [])
        if len(bucket) < per_code:
            bucket.append({"kind": s.kind, "t": round(s.started, 3), "message": (s.message or "")[:300]})
    return out


def reads_by_node(samples: Iterable[Sample]) -> dict[str, Any]:
    """How many successful reads each node served, and its share (a request may touch several nodes)."""
    counts: Counter[str] = Counter()
    retried: Counter[str] = Counter()
    for s in samples:
        if s.kind == "read" and s.ok:
            counts.update(set(s.nodes))
            if s.retried:
                retried.update(set(s.nodes))
    total = sum(counts.values())
    return {
        node: {"reads": n, "share": round(n / total, 4) if total else None, "after_a_retry": retried[node]}
        for node, n in sorted(counts.items())
    }


def slowest(samples: Iterable[Sample], *, count: int = 8) -> list[dict[str, Any]]:
    """The slowest requests, with when they ran and where: the tail of a drill is in them."""
    rows = sorted(samples, key=lambda s: s.latency_ms, reverse=True)[:count]
    return [
        {
            "kind": s.kind,
            "started_s": round(s.started, 3),
            "latency_ms": round(s.latency_ms, 1),
            "ok": s.ok,
            "code": s.code,
            "nodes": list(s.nodes),
            "retried": s.retried,
        }
        for s in rows
    ]


def timeline(samples: Sequence[Sample], *, duration_s: float, step_s: float = 1.0) -> list[dict[str, Any]]:
    """Per ``step_s`` bucket (by completion time): successes and errors of each kind, and p95 of each kind."""
    buckets = max(1, int(duration_s / step_s) + 1)
    rows: list[dict[str, Any]] = []
    per: list[list[Sample]] = [[] for _ in range(buckets + 1)]
    for s in samples:
        per[min(buckets, max(0, int(s.ended / step_s)))].append(s)
    for i, group in enumerate(per):
        row: dict[str, Any] = {"t": round(i * step_s, 3)}
        for kind in ("read", "write"):
            mine = [s for s in group if s.kind == kind]
            row[f"{kind}_ok"] = sum(1 for s in mine if s.ok)
            row[f"{kind}_errors"] = sum(1 for s in mine if not s.ok)
            row[f"{kind}_p95_ms"] = _r(percentile([s.latency_ms for s in mine if s.ok], 95))
        rows.append(row)
    while len(rows) > 1 and not any(
        rows[-1][k] for k in ("read_ok", "read_errors", "write_ok", "write_errors")
    ):
        rows.pop()  # trailing empty buckets after the last answer
    return rows
