"""The CPU regression gate: the gateway's CPU per request, in F, against a baseline kept in the repository.

F (bare graphql-core executing the 20-result search over plain dicts, plus json.dumps) is measured in the same
run, so the figures compare across machines of different speed. Each figure is the median of three rounds of
requests, and the gate only fails at 1.5x the baseline: a slower machine or a noisy neighbour moves F and the
gateway together, a regression in the gateway moves only the gateway. At 1.2x it prints a warning.

Refresh the baseline after an intended change with ``CIVIC_CPU_BASELINE=write make test`` (or this file alone).
"""

from __future__ import annotations

import json
import os
import re
import statistics
from pathlib import Path

import pytest

from ops import stack
from ops.bench.serving_cpu import SEARCH_PAGE, cpu_per_request, measure_f, request_kinds, served_gateway
from tests.conftest import CPU_WARNINGS

BASELINE = Path(__file__).with_name("cpu_baseline.json")
FAIL_AT = 1.5
WARN_AT = 1.2
ROUNDS = 3
REQUESTS = 120
#: Cheap requests are measured over more of them: a clock tick of /proc is 10 ms, and noise weighs more on them.
REQUESTS_BY_KIND = {"typename": 600, "search_hit": 600}


def test_the_search_page_query_is_the_one_measured() -> None:
    js = (Path(__file__).resolve().parents[1] / "gateway" / "static" / "js" / "queries.js").read_text()
    found = re.search(r"export const SEARCH = `(.*?)`;", js, re.DOTALL)
    assert found is not None
    assert " ".join(found.group(1).split()) == " ".join(SEARCH_PAGE.split())


@pytest.mark.slow
def test_cpu_per_request_stays_within_its_baseline(stack_layout: stack.StackLayout) -> None:
    env = {**stack_layout.gateway_env(), "GATEWAY_ROUTING_METADATA": "false", "GATEWAY_SEARCH_LOG_SAMPLE": "0"}
    kinds = request_kinds(unique=ROUNDS * (REQUESTS + 40) + 40)
    figures: dict[str, list[float]] = {name: [] for name in kinds}
    f_samples: list[float] = []
    with served_gateway(env, workers=1) as served:
        for round_no in range(ROUNDS):
            f_samples.append(measure_f(repeats=200, rounds=3))
            for name, bodies in kinds.items():
                offset = round_no * (REQUESTS + 40)
                rotated = bodies[offset:] + bodies[:offset]  # misses never repeat a key across rounds
                count = REQUESTS_BY_KIND.get(name, REQUESTS)
                figures[name].append(cpu_per_request(served, rotated, requests=count))
    f_s = statistics.median(f_samples)
    measured = {name: statistics.median(values) / f_s for name, values in figures.items()}
    if os.environ.get("CIVIC_CPU_BASELINE") == "write":
        BASELINE.write_text(json.dumps({k: round(v, 2) for k, v in measured.items()}, indent=2) + "\n")
    baseline = json.loads(BASELINE.read_text())
    report = ", ".join(f"{k} {v:.2f} F (baseline {baseline[k]})" for k, v in measured.items())
    over = {k: v / baseline[k] for k, v in measured.items() if v > FAIL_AT * baseline[k]}
    assert not over, f"CPU per request regressed past {FAIL_AT}x its baseline: {report}"
    for k, v in measured.items():
        if v > WARN_AT * baseline[k]:
            CPU_WARNINGS.append(f"{k}: {v:.2f} F is {v / baseline[k]:.2f}x its baseline {baseline[k]} F")
