"""One drill run: the gateway, the load, the watcher and the fault script together, timed on one clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

from ops import stack
from ops.bench import load as bench_load
from ops.bench import loadgen
from ops.common.database import migrate_and_load
from ops.common.gateway_process import GatewayProcess
from ops.common.net import free_port
from ops.drills.faults import PRIMARY_FAULTS, SCRIPTS, Scenario, Script
from ops.drills.options import DrillError, DrillOptions
from ops.drills.proxy import EtcdCutProxy
from ops.drills.report import build_report, plot_timeline
from ops.drills.topology import (
    check_topology,
    checkpoint,
    heal,
    unknown_outcomes_applied,
    verify_acked,
    wait_sync,
)
from ops.drills.watch import Clock, RunData, watch_readyz


async def _drive(
    layout: stack.StackLayout, opts: DrillOptions, config: loadgen.LoadConfig, script: Script, sc: Scenario
) -> RunData:
    t0 = time.monotonic()
    clock = Clock(t0, echo=opts.progress)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_readyz(config.url, clock, stop))

    async def scripted() -> None:
        try:
            await script(layout, opts, clock, sc)
        except Exception as exc:  # the load goes on; the report says what failed
            sc.failed = f"{type(exc).__name__}: {exc}"
            clock.mark("error", sc.failed)

    fault = asyncio.create_task(scripted())
    result = await loadgen.LoadGenerator(config).run(t0=t0)
    # Recovery steps may outlast the load (a base backup of a big database); they are bounded by their own
    # timeouts, and the watcher keeps recording until they end, so the report still has the recovery times.
    async with asyncio.timeout(3600):
        await fault
    await asyncio.sleep(min(2.0, 4 * opts.health_interval_s))  # let /readyz show the final state
    stop.set()
    return RunData(result, await watcher, clock)


def _heal(layout: stack.StackLayout, sc: Scenario) -> None:
    """Start a node lost in the drill again (Patroni rewinds or re-clones it), so the next drill finds the
    stack whole; how long that took goes into the report."""
    sc.healed_s = heal(layout)


def run_drill(kind: str, opts: DrillOptions) -> dict[str, Any]:
    """Run the drill ``kind`` (see :data:`SCRIPTS`) and return its report (also written)."""
    if kind not in SCRIPTS:
        raise DrillError(f"unknown drill {kind!r}: choose {', '.join(SCRIPTS)}")
    failover = kind in PRIMARY_FAULTS
    writers = opts.writers if opts.writers is not None else (5 if failover else 0)
    if not 0 <= writers < opts.clients:
        raise DrillError("--writers must be at least 0 and less than --clients")
    name = opts.name or (kind + ("-sync" if opts.sync else ""))
    stamp = time.strftime("%Y%m%d-%H%M%S")

    # `up` also starts any Patroni an earlier drill left stopped: the node rejoins before the checks below.
    layout = stack.up(opts.directory, replicas=2, base_port=opts.base_port)
    primary, standbys = check_topology(layout)
    pages, _ = migrate_and_load(stack.primary_admin_dsn(layout), pages=opts.pages, progress=opts.progress)
    words = bench_load.search_words(layout)
    checkpoint(layout, [primary, *standbys])
    sc = Scenario(primary_before=primary, standbys_before=standbys)
    if not failover:
        sc.victim = opts.node or standbys[-1]
        if sc.victim not in standbys:
            raise DrillError(f"{sc.victim} is not a replica (replicas: {', '.join(standbys)})")
    else:
        sc.victim = primary
    sync_before = layout.synchronous
    if opts.sync and not sync_before:
        stack.set_synchronous_mode(layout, True)
    if opts.sync and not wait_sync(layout, primary):
        raise DrillError(f"no standby of {primary} became synchronous within 15 s")

    logs = Path(layout.dir) / "drill-logs"
    gateway_log = logs / f"{name}-{stamp}-gateway.log"
    ack_log = logs / f"{name}-{stamp}-acked.jsonl"
    port = opts.port or free_port()
    env = bench_load.gateway_env(layout, GATEWAY_HEALTH_INTERVAL_S=str(opts.health_interval_s))
    token = layout.dev_secret("dev-write-token")
    if opts.progress:
        print(
            f"{name}: {opts.clients} clients ({writers} writing) for {opts.duration_s:.0f} s on {pages:,} pages; "
            f"primary {primary}, replicas {', '.join(standbys)}; gateway log {gateway_log}",
            flush=True,
        )
    with contextlib.ExitStack() as cleanup:
        # Last in, first out: heal() runs after the etcd-cut node is pointed back at etcd.
        cleanup.callback(_heal, layout, sc)
        if opts.sync and not sync_before:
            cleanup.callback(stack.set_synchronous_mode, layout, False)
        if kind == "etcd-cut":
            # The primary's Patroni reaches etcd through a proxy that the fault closes. Afterwards it is
            # restarted pointing at etcd itself (PostgreSQL untouched) and rejoins as a replica.
            sc.proxy = cleanup.enter_context(EtcdCutProxy(layout.etcd_port, port=free_port()))
            stack.repoint_etcd(layout, primary, etcd_port=sc.proxy.port)
            cleanup.callback(stack.repoint_etcd, layout, primary, etcd_port=None)
            check_topology(layout)
        with GatewayProcess(env, port=port, log_path=gateway_log) as gw:
            if writers:
                loadgen.ensure_write_municipality(gw.url, token)
            config = loadgen.LoadConfig(
                url=gw.url,
                readers=opts.clients - writers,
                writers=writers,
                duration_s=opts.duration_s,
                words=words,
                token=token,
                ack_log=ack_log if writers else None,
            )
            data = asyncio.run(_drive(layout, opts, config, SCRIPTS[kind], sc))
        verified = verify_acked(layout, data.result.acked) if writers else None
        unknown = unknown_outcomes_applied(layout, data.result.samples) if writers else None
    report = build_report(
        kind=kind,
        name=name,
        opts=opts,
        layout=layout,
        pages=pages,
        words=words,
        writers=writers,
        sc=sc,
        data=data,
        verified=verified,
        unknown=unknown,
        files={"gateway_log": str(gateway_log), "acked_log": str(ack_log) if writers else None},
    )
    opts.reports.mkdir(parents=True, exist_ok=True)
    png = opts.reports / f"{name}.png"
    report["files"]["png"] = str(png)
    report["files"]["json"] = str(opts.reports / f"{name}.json")
    plot_timeline(report, png)
    (opts.reports / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
