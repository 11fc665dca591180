"""Short forms of the failover drills, each on a throwaway stack of its own (the session stack is never failed).

Each test boots etcd, a primary and two replicas under Patroni in a temp folder on free ports, loads a tiny
corpus, runs the drill with 10 clients and checks the drill's targets and its report files. The stack is always
destroyed. The node-loss drill is the CI form of issue 13's target: the primary's node SIGKILLed, nothing done
by anyone, and writes must come back by Patroni alone, with no failed read and no acknowledged write lost.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops import drills, stack
from ops.common.database import migrate_and_load
from tests.conftest import DRILL_TIMINGS
from tests.helpers import free_base_port

pytestmark = pytest.mark.slow

PAGES = 2000




@pytest.fixture()
def drill_stack() -> Iterator[tuple[Path, int]]:
    directory = Path(tempfile.mkdtemp(prefix="civic-drill-test-", dir="/tmp"))
    base = free_base_port(replicas=2)
    try:
        # A small memory share per node: the suite runs several stacks side by side on one machine.
        layout = stack.up(directory, replicas=2, base_port=base, memory_mb=512)
        migrate_and_load(stack.primary_admin_dsn(layout), pages=PAGES, progress=False, workers=1)
        yield directory, base
    finally:
        # A throwaway stack needs no clean shutdown: destroy kills every server before deleting the folder.
        stack.destroy(directory)
        shutil.rmtree(directory, ignore_errors=True)


def _options(directory: Path, base: int, reports: Path, **overrides: object) -> drills.DrillOptions:
    opts = drills.DrillOptions(
        directory=directory,
        base_port=base,
        clients=10,
        duration_s=12.0,
        down_s=3.0,
        pages=PAGES,
        reports=reports,
        progress=False,
    )
    for key, value in overrides.items():
        setattr(opts, key, value)
    return opts


def _files_written(report: dict[str, object], reports: Path, name: str) -> None:
    data = json.loads((reports / f"{name}.json").read_text())
    assert data["drill"] == report["drill"]
    assert (reports / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replica_loss_drill_fails_no_read(drill_stack: tuple[Path, int], tmp_path: Path) -> None:
    directory, base = drill_stack
    report = drills.run_drill("replica-loss", _options(directory, base, tmp_path))

    assert report["requests"]["reads"] > 0
    assert report["requests"]["failed_reads"] == 0, report["errors"]
    assert report["topology"]["victim"] == "node3"
    assert report["detection"]["readyz_shows_node_down_s"] is not None
    assert report["recovery"]["readmitted_after_restart_s"] is not None, report["readyz_changes"]
    assert [e["what"] for e in report["events"]][:2] == ["fault", "stopped"]
    assert set(report["latency_ms"]) == {"before", "during", "after"}
    _files_written(report, tmp_path, "replica-loss")
    # The stack is whole again: the same primary, both replicas streaming.
    assert drills.check_topology(stack.StackLayout.load(directory) or pytest.fail("no layout")) == (
        "node1",
        ["node2", "node3"],
    )


#: Issue 13: writes are back within the leader lock's ttl (20 s) plus promotion and discovery (25 s), plus
#: slack for the gateway's health poll and a loaded 2-core machine in CI. Speed is reported, not asserted.
WRITES_BACK_WITHIN_S = 25.0 + 5.0


def test_node_loss_drill_recovers_writes_by_itself_and_loses_nothing(
    drill_stack: tuple[Path, int], tmp_path: Path
) -> None:
    directory, base = drill_stack
    opts = _options(directory, base, tmp_path, writers=3, sync=True, duration_s=45.0, fault_at=0.2)
    report = drills.run_drill("node-loss", opts)

    recovery, detection = report["recovery"], report["detection"]
    gap = recovery["writes_unavailable"]
    acked = report["acknowledged_writes"]
    DRILL_TIMINGS.append(
        f"node-loss drill (sync): Patroni promoted {report['topology']['new_primary']} "
        f"{detection['patroni_promoted_s']} s after the kill; /readyz showed it at "
        f"{detection['readyz_shows_new_primary_s']} s; writes unavailable {gap and gap['seconds']} s; "
        f"{report['requests']['reads']} reads ({report['requests']['failed_reads']} failed), "
        f"{acked['acked']} acknowledged writes ({acked['lost']} lost); healed after the drill in "
        f"{recovery['healed_after_drill_s']} s"
    )
    assert report["requests"]["failed_reads"] == 0, report["errors"]
    assert gap is not None and gap["seconds"] is not None, gap
    assert gap["seconds"] <= WRITES_BACK_WITHIN_S, gap
    assert acked["acked"] > 0 and acked["lost"] == 0, acked
    assert recovery["writes_acked_by_old_primary_after_promotion"] == 0
    assert report["topology"]["new_primary"] in ("node2", "node3")
    assert [e["what"] for e in report["events"]][:3] == ["fault", "stopped", "promoted"]
    _files_written(report, tmp_path, "node-loss-sync")
    # The lost node was started again after the load and rejoined the new primary (Patroni's pg_rewind).
    assert recovery["healed_after_drill_s"] is not None
    layout = stack.StackLayout.load(directory)
    assert layout is not None
    primary, standbys = drills.check_topology(layout)
    assert primary == report["topology"]["new_primary"] and "node1" in standbys
