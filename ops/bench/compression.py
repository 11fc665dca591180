"""``python -m ops bench compression``: bytes saved and CPU spent by gzip levels (and brotli, when installed).

The payloads are what the gateway sends: the GraphiQL page and its bundle (``graphiql.min.js``, when the vendor
assets are installed), a 20-result search response with headlines, and a page's whole text, the last two built
from the synthetic corpus and encoded with orjson as the gateway encodes them. For each payload and codec it
reports the compressed size, its ratio to the original, and the CPU time of one compression (``process_time``
over repeated runs, so other processes on the machine do not count). Brotli is not a dependency of the
gateway: ``pip install brotli`` before the run to include it. The result goes to ``docs/bench/compression.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from gateway.web import VENDOR_DIR, graphiql_html
from ops.corpus import generate

OUT = Path(__file__).resolve().parents[2] / "docs" / "bench" / "compression.json"


def payloads() -> dict[str, bytes]:
    pages = list(generate(400, seed=3))[:20]
    search = {
        "data": {"search": {
            "edges": [
                {
                    "cursor": f"djEuc2VhcmNoLm5ld2VzdC4{i:04d}.{p.meeting_date.isoformat()}.{p.id}",
                    "headline": p.text[:180].replace("council", "<mark>council</mark>"),
                    "node": {"id": f"TWVldGluZ1BhZ2U6{p.id}", "sourceId": p.id, "pageNumber": p.page_number,
                             "document": {"meetingName": "City Council", "meetingDate": p.meeting_date.isoformat(),
                                          "documentType": p.document_type.upper()}},
                }
                for i, p in enumerate(pages)
            ],
            "pageInfo": {"hasNextPage": True, "endCursor": "x"}, "totalCount": {"count": 1000, "exact": False},
        }},
        "extensions": {"traceId": "0af7651916cd43dd8448eb211c80319c"},
    }
    out = {
        "graphiql page (HTML)": graphiql_html().encode(),
        "search, 20 results with headlines (JSON)": orjson.dumps(search),
        "one page's text (JSON)": orjson.dumps({"data": {"node": {"text": pages[0].text}}}),
    }
    bundle = VENDOR_DIR / "graphiql" / "graphiql.min.js"
    if bundle.exists():
        out["graphiql.min.js"] = bundle.read_bytes()
    return out


def _gzip(level: int) -> Callable[[bytes], bytes]:
    return lambda data: gzip.compress(data, level)


def _brotli(module: Any, quality: int) -> Callable[[bytes], bytes]:
    return lambda data: bytes(module.compress(data, quality=quality))


def codecs() -> dict[str, Callable[[bytes], bytes]]:
    out = {f"gzip-{level}": _gzip(level) for level in (1, 4, 6, 9)}
    try:
        import brotli  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return out
    for quality in (4, 5, 11):
        out[f"br-{quality}"] = _brotli(brotli, quality)
    return out


def measure(data: bytes, codec: Callable[[bytes], bytes], *, min_cpu_s: float = 0.3) -> tuple[int, float]:
    """(compressed size, CPU milliseconds per compression), repeating until ``min_cpu_s`` of CPU was spent."""
    size = len(codec(data))
    runs = 0
    started = time.process_time()
    while True:
        codec(data)
        runs += 1
        spent = time.process_time() - started
        if spent >= min_cpu_s or runs >= 2000:
            return size, spent / runs * 1000


def main(rest: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops bench compression", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(rest)
    rows: list[dict[str, Any]] = []
    for name, data in payloads().items():
        for codec_name, codec in codecs().items():
            size, cpu_ms = measure(data, codec)
            rows.append({"payload": name, "bytes": len(data), "codec": codec_name, "compressed": size,
                         "ratio": round(size / len(data), 3), "cpu_ms": round(cpu_ms, 3)})
            print(f"{name:<42} {len(data):>9,} {codec_name:<7} {size:>9,} {size / len(data):6.3f} {cpu_ms:8.3f} ms")
    report = {
        "benchmark": "compression",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 2)},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0
