"""The scale curve's model: power-law fits of the measured classes, projections to 10M and 100M pages, the plot.

Everything here is arithmetic on ``docs/bench/scale.json`` (written by :mod:`ops.bench.scale`), so the model
can be redone without measuring again (``python -m ops bench scale --replot``). The assumptions are named
constants, and :func:`project` copies them into the report next to the figures they produce.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

PROJECT_TO = (10_000_000, 100_000_000)
# Assumptions of the projection (stated in the report and in docs/scaling.md).
LOAD_SEARCHES_PER_S = 100.0  # the stated load: searches per second at peak, spread evenly over the classes
REPLICA_CORES = 16  # cores of one replica machine
TARGET_UTILISATION = 0.6  # run replicas at 60 % CPU so that a node loss or a burst does not queue searches
HOT_HEAP_SHARE = 0.05  # share of the page heap (text for headlines, recent pages) that must stay in memory
DISK_HEADROOM = 1.5  # WAL, vacuum, index rebuilds and bloat on top of the live data
MACHINE_RAM_GB = 512.0  # a large single machine
MACHINE_DISK_TB = 15.0  # its NVMe
INTERACTIVE_P95_MS = 300.0  # a search slower than this on an idle node is too slow whatever the replica count


def fit_power(points: list[tuple[float, float]]) -> dict[str, float] | None:
    """Least squares on logs: y = c * n**b. None with fewer than two usable points."""
    pts = [(math.log(n), math.log(y)) for n, y in points if n > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in pts) / sxx
    a = my - b * mx
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in pts)
    ss_tot = sum((y - my) ** 2 for _, y in pts)
    return {"exponent": round(b, 3), "coefficient": math.exp(a), "r2": round(1 - ss_res / ss_tot, 3) if ss_tot else 1.0}


def at(fit: dict[str, float], n: float) -> float:
    return float(fit["coefficient"] * n ** fit["exponent"])


def fit_linear(points: list[tuple[float, float]]) -> tuple[float, float]:
    """y = a + k * n by least squares: (a, k)."""
    mx = sum(n for n, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((n - mx) ** 2 for n, _ in points) or 1.0
    k = sum((n - mx) * (y - my) for n, y in points) / sxx
    return my - k * mx, k


def _fulltext(sizes: dict[str, int]) -> int:
    """The full-text index's bytes (reports before RUM was measured call it ``gin``)."""
    return int(sizes.get("fulltext", sizes.get("gin", 0)))


def _classes(report: dict[str, Any]) -> list[str]:
    return [c["name"] for c in report["classes"]]


def _series(report: dict[str, Any], cls: str, side: str, stat: str) -> list[tuple[float, float]]:
    out = []
    for size in report["sizes"]:
        for r in size.get("results", []):
            if r["class"] == cls and side in r:
                out.append((float(size["pages"]), float(r[side][stat])))
    return out


def project(report: dict[str, Any]) -> dict[str, Any]:
    """Fits per class and projections of latency, disk, hot set and replicas to :data:`PROJECT_TO`."""
    classes: dict[str, Any] = {}
    for cls in _classes(report):
        entry: dict[str, Any] = {}
        for side in ("gateway", "sql"):
            for stat in ("p50", "p95"):
                fit = fit_power(_series(report, cls, side, stat))
                if fit is None:
                    continue
                entry[f"{side}_{stat}"] = {**fit, "coefficient": float(f"{fit['coefficient']:.6g}"),
                                           **{f"at_{n}": round(at(fit, n), 1) for n in PROJECT_TO}}
        p95 = entry.get("sql_p95")
        if p95 and p95["exponent"] > 0.05:
            crossing = (INTERACTIVE_P95_MS / p95["coefficient"]) ** (1 / p95["exponent"])
            entry["pages_where_sql_p95_reaches_interactive_bound"] = int(min(crossing, 1e12))
        classes[cls] = entry
    sizes = report["sizes"]
    model: dict[str, Any] = {
        "assumptions": {
            "load_searches_per_s": LOAD_SEARCHES_PER_S, "mix": "equal shares of the measured classes",
            "cpu_ms_per_search": "direct-SQL p50 of the class (warm cache, one backend: CPU-bound)",
            "replica_cores": REPLICA_CORES, "target_utilisation": TARGET_UTILISATION,
            "hot_set": f"every index + {HOT_HEAP_SHARE:.0%} of the page table",
            "disk_headroom": DISK_HEADROOM, "machine_ram_gb": MACHINE_RAM_GB, "machine_disk_tb": MACHINE_DISK_TB,
            "interactive_p95_ms": INTERACTIVE_P95_MS,
            "extrapolation": "power laws fitted on 5 sizes; 100M is 50x the largest size measured",
        },
        "classes": classes,
    }
    if len(sizes) >= 2:
        pts = [(float(s["pages"]), float(s["bytes"]["database"])) for s in sizes]
        _, per_page = fit_linear(pts)
        idx_a, idx_k = fit_linear([(float(s["pages"]), float(s["bytes"]["indexes"])) for s in sizes])
        tab_a, tab_k = fit_linear([(float(s["pages"]), float(s["bytes"]["pages_table"])) for s in sizes])
        model["bytes_per_page"] = {"database": round(per_page), "indexes": round(idx_k), "pages_table": round(tab_k)}
        projections = {}
        for n in PROJECT_TO:
            db = per_page * n
            hot = idx_a + idx_k * n + HOT_HEAP_SHARE * (tab_a + tab_k * n)
            cpu_ms = [at(c["sql_p50"], n) for c in classes.values() if "sql_p50" in c]
            mean_ms = sum(cpu_ms) / len(cpu_ms) if cpu_ms else float("nan")
            capacity = TARGET_UTILISATION * REPLICA_CORES * 1000.0 / mean_ms if mean_ms > 0 else float("nan")
            projections[str(n)] = {
                "database_gb_per_node": round(db / 1e9, 1),
                "disk_gb_per_node_with_headroom": round(db * DISK_HEADROOM / 1e9, 1),
                "hot_set_gb": round(hot / 1e9, 1),
                "mean_cpu_ms_per_search": round(mean_ms, 1),
                "searches_per_s_per_replica": round(capacity, 1),
                "replicas_for_load": math.ceil(LOAD_SEARCHES_PER_S / capacity) if capacity > 0 else None,
                "fits_one_machine": db * DISK_HEADROOM / 1e12 <= MACHINE_DISK_TB and hot / 1e9 <= MACHINE_RAM_GB,
                "classes_over_interactive_bound": sorted(
                    name for name, c in classes.items() if "sql_p95" in c and at(c["sql_p95"], n) > INTERACTIVE_P95_MS),
            }
        model["projections"] = projections
    return model


def markdown(report: dict[str, Any]) -> str:
    """The tables docs/scaling.md shows: p50/p95 per class and size, sizes, ingest, and the fits."""
    sizes = report["sizes"]
    head = "| class | " + " | ".join(f"{s['pages']:,}" for s in sizes) + " | exponent (p50) |"
    lines = ["Gateway p50 / p95 ms (direct SQL p50 in brackets):", "", head,
             "|" + " --- |" * (len(sizes) + 2)]
    model = report.get("model", {}).get("classes", {})
    for cls in _classes(report):
        cells = []
        for s in sizes:
            r = next((r for r in s.get("results", []) if r["class"] == cls), None)
            if r is None or "gateway" not in r:
                cells.append("n/a")
            else:
                cells.append(f"{r['gateway']['p50']:.0f} / {r['gateway']['p95']:.0f} ({r['sql']['p50']:.0f})")
        exp = model.get(cls, {}).get("gateway_p50", {}).get("exponent", "")
        lines.append(f"| {cls} | " + " | ".join(cells) + f" | {exp} |")
    lines += ["", "| pages | database GB | page table GB | full-text index GB | other indexes GB | ingest pages/s |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in sizes:
        b = s["bytes"]
        lines.append(f"| {s['pages']:,} | {b['database'] / 1e9:.2f} | {b['pages_table'] / 1e9:.2f} | "
                     f"{_fulltext(b) / 1e9:.2f} | {b['btree_and_other_indexes'] / 1e9:.2f} | "
                     f"{s['ingest']['pages_per_second']:,.0f} |")
    proj = report.get("model", {}).get("projections", {})
    if proj:
        lines += ["", "| projected to | DB GB/node | disk GB/node | hot set GB | replicas for load | one machine? |",
                  "| ---: | ---: | ---: | ---: | ---: | --- |"]
        for n, p in proj.items():
            lines.append(f"| {int(n):,} | {p['database_gb_per_node']} | {p['disk_gb_per_node_with_headroom']} | "
                         f"{p['hot_set_gb']} | {p['replicas_for_load']} | {p['fits_one_machine']} |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Latency per class (gateway p50, fitted and extrapolated to 100M) and bytes per size, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 6))
    model = report.get("model", {}).get("classes", {})
    for cls in _classes(report):
        pts = _series(report, cls, "gateway", "p50")
        if not pts:
            continue
        (line,) = left.plot([n for n, _ in pts], [y for _, y in pts], marker="o", label=cls)
        fit = model.get(cls, {}).get("gateway_p50")
        # A negative exponent is noise (a cost does not fall as the corpus grows): not extrapolated.
        if fit and fit["exponent"] >= 0:
            xs = [pts[0][0] * 1.5**i for i in range(40) if pts[0][0] * 1.5**i <= PROJECT_TO[-1] * 1.01]
            left.plot(xs, [at(fit, x) for x in xs], linestyle=":", color=line.get_color())
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("pages")
    left.set_ylabel("gateway p50, ms (cache off); dotted: fitted power law")
    left.set_title("Search latency by class")
    left.legend(fontsize=7)
    left.grid(True, which="both", alpha=0.3)
    sizes = report["sizes"]
    xs = [s["pages"] for s in sizes]
    for key, label in (("database", "database"), ("pages_table", "page table (heap+TOAST)"),
                       ("fulltext", "full-text index (GIN or RUM)"),
                       ("btree_and_other_indexes", "B-tree and other indexes")):
        ys = [(_fulltext(s["bytes"]) if key == "fulltext" else s["bytes"][key]) / 1e9 for s in sizes]
        right.plot(xs, ys, marker="o", label=label)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("pages")
    right.set_ylabel("GB")
    right.set_title("Size on disk")
    right.legend(fontsize=8)
    right.grid(True, which="both", alpha=0.3)
    commit = report.get("machine", {}).get("git_head", "")
    fig.suptitle(f"python -m ops bench scale (commit {commit}, {report.get('machine', {}).get('cpus')} cores)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
