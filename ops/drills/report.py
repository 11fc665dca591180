"""A drill's report: phases, gaps and recovery times as JSON, a Markdown summary and a PNG timeline.

Longer than most modules because :func:`build_report` gathers every figure of one report in one place, which
is easier to check against the report's fields than a chain of small helpers.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ops import stack
from ops.bench import load as bench_load
from ops.bench import load_stats, loadgen
from ops.common.stats import percentile
from ops.drills.faults import PRIMARY_FAULTS, Scenario
from ops.drills.options import LOG_KEYWORDS, REJOIN_TARGET_S, WRITES_UNAVAILABLE_TARGET_S, DrillOptions
from ops.drills.watch import Readiness, RunData, readiness_changes
from ops.stack import patroni


def _first_after(seen: Sequence[Readiness], t: float, test: Callable[[Readiness], bool]) -> float | None:
    return next((r.t for r in seen if r.t >= t and test(r)), None)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


def _since(t: float | None, origin: float | None) -> float | None:
    return None if t is None or origin is None else round(t - origin, 3)


def _phase_stats(samples: Sequence[loadgen.Sample], start: float, end: float | None) -> dict[str, Any]:
    inside = [s for s in samples if s.started >= start and (end is None or s.started < end)]
    return {
        "from_s": round(start, 3),
        "to_s": None if end is None else round(end, 3),
        "reads": load_stats.latency_summary(s for s in inside if s.kind == "read"),
        "writes": load_stats.latency_summary(s for s in inside if s.kind == "write"),
    }


def _longest_write_gap(samples: Sequence[loadgen.Sample], t_fault: float | None) -> dict[str, Any] | None:
    """The longest time between two consecutive acknowledged writes around the fault: how long writes were out."""
    acks = sorted(s.ended for s in samples if s.kind == "write" and s.ok)
    if t_fault is None or not acks:
        return None
    before = [t for t in acks if t < t_fault]
    after = [t for t in acks if t >= t_fault]
    if not after:
        return {"from_s": before[-1] if before else None, "to_s": None, "seconds": None}
    points = [*(before[-1:] or [t_fault]), *after]
    gap = max(itertools.pairwise(points), key=lambda p: p[1] - p[0], default=(t_fault, after[0]))
    return {"from_s": round(gap[0], 3), "to_s": round(gap[1], 3), "seconds": round(gap[1] - gap[0], 3)}


def _gateway_log_excerpt(path: Path, *, limit: int = 60) -> list[str]:
    if not path.exists():
        return []
    lines = [
        line.rstrip()
        for line in path.read_text(errors="replace").splitlines()
        if any(k in line for k in LOG_KEYWORDS)
    ]
    return lines[:limit]


def build_report(
    *,
    kind: str,
    name: str,
    opts: DrillOptions,
    layout: stack.StackLayout,
    pages: int,
    words: Sequence[str],
    writers: int,
    sc: Scenario,
    data: RunData,
    verified: dict[str, Any] | None,
    unknown: dict[str, int] | None,
    files: dict[str, Any],
) -> dict[str, Any]:
    """Everything the drill measured, with its targets; see docs/operations.md for each field's meaning."""
    samples = data.result.samples
    clock = data.clock
    seen = data.readiness
    reads = [s for s in samples if s.kind == "read"]
    writes = [s for s in samples if s.kind == "write"]
    t_fault = clock.first("fault")
    victim = sc.victim
    detection: dict[str, Any] = {}
    recovery: dict[str, Any] = {}
    t_recovered: float | None = None
    if kind == "replica-loss" and t_fault is not None:
        t_restart = clock.first("restart")
        t_dead = _first_after(seen, t_fault, lambda r: r.healthy.get(victim) is False)
        # Reads in flight at the fault count too: they were sent to the node before it died.
        retried = [s.started for s in reads if s.retried and s.ended >= t_fault]
        before_restart = [t for t in retried if t_restart is None or t < t_restart]
        detection = {
            "readyz_shows_node_down_s": _since(t_dead, t_fault),
            # Negative: every read that met the dead node had been sent before the crash.
            "last_read_sent_to_dead_node_s": _since(max(before_restart, default=None), t_fault),
            "reads_retried_on_another_node": len(retried),
            "note": "a read sent to the dead node fails there and is retried by the router on another node "
            "(extensions.routing retried=true); the last such read is when reads stopped going to it",
        }
        readmitted = (
            _first_after(seen, t_restart, lambda r: r.healthy.get(victim) is True)
            if t_restart is not None
            else None
        )
        first_read = min(
            (
                s.started
                for s in reads
                if s.ok and victim in s.nodes and t_restart is not None and s.started >= t_restart
            ),
            default=None,
        )
        lags = [
            r.lag_s.get(victim)
            for r in seen
            if readmitted is not None and r.t >= readmitted and r.lag_s.get(victim) is not None
        ]
        recovery = {
            "restarted_at_s": t_restart,
            "readmitted_after_restart_s": _since(readmitted, t_restart),
            "first_read_served_after_restart_s": _since(first_read, t_restart),
            "reads_served_after_restart": sum(
                1
                for s in reads
                if s.ok and victim in s.nodes and t_restart is not None and s.started >= t_restart
            ),
            "streaming_after_restart_s": _since(clock.first("restored"), t_restart),
            # The lag /readyz reported for the node once readmitted: above the gateway's staleness bound (5 s by
            # default) it is healthy but gets no reads.
            "readyz_lag_after_readmission_s": {
                "min": min((x for x in lags if x is not None), default=None),
                "max": max((x for x in lags if x is not None), default=None),
            },
        }
        t_recovered = readmitted
    elif kind in PRIMARY_FAULTS and t_fault is not None:
        new = sc.new_primary
        t_dead = _first_after(seen, t_fault, lambda r: r.healthy.get(victim) is False)
        t_new = _first_after(seen, t_fault, lambda r: new is not None and r.primary == new)
        first_ack = min(
            (s.ended for s in writes if s.ok and s.started >= t_fault and new in s.nodes), default=None
        )
        detection = {
            "readyz_shows_primary_down_s": _since(t_dead, t_fault),
            "readyz_shows_new_primary_s": _since(t_new, t_fault),
            "patroni_promoted_s": _since(clock.first("promoted"), t_fault),
        }
        gap = _longest_write_gap(samples, t_fault)
        # A lost node that stays down is left out: "all healthy" means every node that is meant to be up.
        expected = [n for n in layout.node_names if not (sc.victim_stays_down and n == victim)]
        all_back = _first_after(
            seen,
            clock.first("restored") or float("inf"),
            lambda r: r.primary == new and all(r.healthy.get(n) for n in expected),
        )
        t_restart = clock.first("restart")
        # Writes acknowledged by the old primary once the new one was primary (promoted by the drill's clock, or
        # its first acknowledged write, whichever came first): acknowledged by two primaries, a split brain.
        # Patroni's leader lock must keep this at 0.
        t_new_primary = min((t for t in (clock.first("promoted"), first_ack) if t is not None), default=None)
        two_primaries = sum(
            1
            for s in writes
            if s.ok
            and new != victim
            and victim in s.nodes
            and t_new_primary is not None
            and s.ended >= t_new_primary
        )
        recovery = {
            "first_write_acked_by_new_primary_s": _since(first_ack, t_fault),
            "writes_unavailable": gap,
            "topology_restored_s": _since(clock.first("restored"), t_fault),
            "readyz_all_nodes_healthy_s": _since(all_back, t_fault),
            "rejoined_after_restart_s": _since(clock.first("rejoined"), t_restart),
            "writes_acked_by_old_primary_after_promotion": two_primaries,
            "healed_after_drill_s": sc.healed_s,
            # etcd-cut: when the old primary was seen read-only, and its last acknowledged write, after the cut.
            "old_primary_read_only_s": _since(clock.first("demoted"), t_fault),
            "old_primary_last_write_acked_s": _since(
                max((s.ended for s in writes if s.ok and victim in s.nodes and s.started >= t_fault), default=None),
                t_fault,
            ),
        }
        t_recovered = all_back
    phases = {
        "before": _phase_stats(samples, 0.0, t_fault),
        "during": _phase_stats(samples, t_fault, t_recovered) if t_fault is not None else None,
        "after": _phase_stats(samples, t_recovered, None) if t_recovered is not None else None,
    }
    failed_reads = sum(1 for s in reads if not s.ok)
    targets: list[dict[str, Any]] = [
        {"target": "0 failed reads", "actual": failed_reads, "met": failed_reads == 0},
    ]
    if sc.failed:
        targets.append({"target": "fault script completed", "actual": sc.failed, "met": False})
    if kind == "replica-loss":
        served = recovery.get("first_read_served_after_restart_s")
        targets.append(
            {
                "target": "replica readmitted and serving reads again before the end",
                "actual": served,
                "met": served is not None,
            }
        )
    else:
        gap_s = (recovery.get("writes_unavailable") or {}).get("seconds")
        bound = WRITES_UNAVAILABLE_TARGET_S.get(kind)
        if bound is not None:
            targets.append(
                {
                    "target": f"writes unavailable <= {bound:.0f} s",
                    "actual": gap_s,
                    "met": gap_s is not None and gap_s <= bound,
                }
            )
        if kind == "etcd-cut":
            stopped = recovery.get("old_primary_last_write_acked_s")
            demoted = recovery.get("old_primary_read_only_s")
            targets.append(
                {
                    "target": f"the cut-off primary stops accepting writes within ttl ({patroni.TTL_S} s)",
                    "actual": {"last_write_acked_s": stopped, "read_only_s": demoted},
                    "met": demoted is not None and demoted <= patroni.TTL_S,
                }
            )
        doubled = recovery.get("writes_acked_by_old_primary_after_promotion")
        targets.append(
            {"target": "0 writes acknowledged by two primaries", "actual": doubled, "met": doubled == 0}
        )
        lost = verified["lost"] if verified else None
        if opts.sync:
            targets.append(
                {"target": "0 acknowledged writes lost (--sync)", "actual": lost, "met": lost == 0}
            )
        if kind == "rejoin":
            back = recovery.get("rejoined_after_restart_s")
            targets.append(
                {
                    "target": f"old primary rejoins as a replica <= {REJOIN_TARGET_S:.0f} s after its restart",
                    "actual": back,
                    "met": back is not None and back <= REJOIN_TARGET_S,
                }
            )
    by_code_reads = load_stats.errors_by_code(reads)
    by_code_writes = load_stats.errors_by_code(writes)
    return {
        "drill": kind,
        "name": name,
        "machine": bench_load.machine(),
        "settings": {
            "clients": opts.clients,
            "writers": writers,
            "duration_s": opts.duration_s,
            "fault_at_s": round(opts.duration_s * opts.fault_at, 3),
            "down_s": opts.down_s if kind in ("replica-loss", "rejoin") else None,
            "sync": opts.sync,
            "patroni": {
                "ttl_s": patroni.TTL_S,
                "loop_wait_s": patroni.LOOP_WAIT_S,
                "retry_timeout_s": patroni.RETRY_TIMEOUT_S,
            },
            "health_interval_s": opts.health_interval_s,
            "corpus_pages": pages,
            "search_words": list(words),
            "stack_dir": layout.dir,
        },
        "topology": {
            "primary_before": sc.primary_before,
            "standbys_before": sc.standbys_before,
            "victim": victim,
            "new_primary": sc.new_primary,
            "primary_after": stack.current_primary(layout),
        },
        "requests": {
            "total": len(samples),
            "reads": len(reads),
            "writes": len(writes),
            "failed_reads": failed_reads,
            "failed_writes": sum(1 for s in writes if not s.ok),
        },
        "errors": {
            "reads_by_code": by_code_reads,
            "writes_by_code": by_code_writes,
            "examples": load_stats.error_examples(samples),
        },
        "latency_ms": phases,
        "detection": detection,
        "recovery": recovery,
        "acknowledged_writes": ({**(verified or {}), "unknown_outcome": unknown} if writers else None),
        "reads_by_node": load_stats.reads_by_node(reads),
        "slowest_requests": load_stats.slowest(samples),
        "events": [dataclasses.asdict(e) for e in clock.events],
        "readyz_changes": readiness_changes(seen),
        "readyz_polls": {
            "answered": sum(1 for r in seen if r.status is not None),
            "failed": sum(1 for r in seen if r.status is None),
            "latency_ms_p50": _ms(
                percentile([r.latency_s for r in seen if r.latency_s is not None], 50)
            ),
            "latency_ms_max": _ms(max((r.latency_s for r in seen if r.latency_s is not None), default=None)),
        },
        "gateway_log_excerpt": _gateway_log_excerpt(Path(files["gateway_log"])),
        "timeline": load_stats.timeline(samples, duration_s=opts.duration_s),
        "targets": targets,
        "files": files,
    }


def plot_timeline(report: dict[str, Any], path: Path) -> None:
    """Requests per second, errors per second and p95 per second, with the fault and recovery steps marked."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a file only
    import matplotlib.pyplot as plt

    rows = report["timeline"]
    # Each row is the bucket [t, t + 1 s): draw it at its middle, so an error is never drawn before its cause.
    t = [r["t"] + 0.5 for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True, constrained_layout=True)
    rps, err, lat = axes
    rps.plot(t, [r["read_ok"] for r in rows], label="reads ok / s", color="tab:blue")
    if report["settings"]["writers"]:
        rps.plot(t, [r["write_ok"] for r in rows], label="writes ok / s", color="tab:green")
    rps.set_ylabel("requests / s")
    width = 0.9
    err.bar(t, [r["read_errors"] for r in rows], width=width, label="failed reads / s", color="tab:red")
    if report["settings"]["writers"]:
        err.bar(
            t,
            [r["write_errors"] for r in rows],
            width=width,
            bottom=[r["read_errors"] for r in rows],
            label="failed writes / s",
            color="tab:orange",
        )
    err.set_ylabel("errors / s")
    err.set_ylim(bottom=0, top=max(1, *(r["read_errors"] + r["write_errors"] for r in rows)) * 1.15)
    lat.plot(t, [r["read_p95_ms"] for r in rows], label="read p95", color="tab:blue")
    if report["settings"]["writers"]:
        lat.plot(t, [r["write_p95_ms"] for r in rows], label="write p95", color="tab:green")
    lat.set_ylabel("p95 latency (ms)")
    lat.set_xlabel("seconds since the load started")
    colors = {
        "fault": "red",
        "promoted": "purple",
        "restart": "purple",
        "rejoined": "teal",
        "demoted": "orange",
        "reattached": "gray",
        "restored": "green",
    }
    for event in report["events"]:
        color = colors.get(event["what"])
        if color is None:
            continue
        for ax in axes:
            ax.axvline(
                event["t"], color=color, linestyle="--" if event["what"] != "fault" else "-", linewidth=1
            )
        rps.annotate(
            event["what"],
            (event["t"], 0.97),
            xycoords=("data", "axes fraction"),
            xytext=(-3, 0),
            textcoords="offset points",
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
            color=color,
        )
    during = report["latency_ms"]["during"]
    if during is not None:
        end = during["to_s"] if during["to_s"] is not None else t[-1]
        for ax in axes:
            ax.axvspan(during["from_s"], end, color="red", alpha=0.06)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    met = all(x["met"] for x in report["targets"])
    fig.suptitle(
        f"{report['name']}: {report['settings']['clients']} clients, {report['requests']['total']:,} requests, "
        f"{report['requests']['failed_reads']} failed reads; targets {'met' if met else 'MISSED'}"
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_report(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [
        f"{report['name']}: {report['requests']['total']:,} requests ({report['requests']['reads']:,} reads, "
        f"{report['requests']['writes']:,} writes)"
    ]
    lines.append(
        f"errors: reads {report['errors']['reads_by_code'] or 'none'}, "
        f"writes {report['errors']['writes_by_code'] or 'none'}"
    )
    for phase, stats in report["latency_ms"].items():
        if stats is None:
            continue
        r = stats["reads"]
        lines.append(
            f"  {phase:<6} reads p50/p95/p99 {r['p50_ms']}/{r['p95_ms']}/{r['p99_ms']} ms ({r['requests']:,})"
        )
    lines.append(f"detection: {json.dumps({k: v for k, v in report['detection'].items() if k != 'note'})}")
    lines.append(f"recovery: {json.dumps(report['recovery'])}")
    if report["acknowledged_writes"] is not None:
        acked = report["acknowledged_writes"]
        lines.append(
            f"acknowledged writes: {acked.get('acked')} checked on {acked.get('checked_on')}, "
            f"lost {acked.get('lost')}; unknown outcome {acked.get('unknown_outcome')}"
        )
    for target in report["targets"]:
        lines.append(
            f"target {target['target']}: {'met' if target['met'] else 'MISSED'} (actual {target['actual']})"
        )
    lines.append(f"report {report['files']['json']}, timeline {report['files']['png']}")
    return "\n".join(lines)
