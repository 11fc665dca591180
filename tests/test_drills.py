"""Short forms of the failover drills, each on a throwaway stack of its own (the session stack is never failed).

Each test boots a primary and two replicas in a temp folder on free ports, loads a tiny corpus, runs the drill
with 10 clients for 12 s and checks the drill's targets and its report files. The stack is always destroyed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops import drills, stack
from ops.common.database import migrate_and_load
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
        found = stack.StackLayout.load(directory)
        if found is not None:
            # A throwaway stack needs no shutdown checkpoint: an immediate stop saves seconds per node.
            for name in found.node_names:
                with contextlib.suppress(stack.StackError):
                    stack.stop_node(found, name, mode="immediate")
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


def test_primary_failover_drill_with_sync_loses_no_acked_write(
    drill_stack: tuple[Path, int], tmp_path: Path
) -> None:
    directory, base = drill_stack
    report = drills.run_drill("primary-failover", _options(directory, base, tmp_path, writers=3, sync=True))

    assert report["requests"]["failed_reads"] == 0, report["errors"]
    # Writes come back on the new primary; how soon is a figure for the drill's report, not a pass/fail here.
    gap = report["recovery"]["writes_unavailable"]
    assert gap is not None and gap["seconds"] is not None, gap
    acked = report["acknowledged_writes"]
    assert acked["acked"] > 0 and acked["lost"] == 0, acked
    assert report["topology"]["new_primary"] in ("node2", "node3")
    behaviour = [t for t in report["targets"] if not t["target"].startswith("writes unavailable")]
    assert all(t["met"] for t in behaviour), report["targets"]
    _files_written(report, tmp_path, "primary-failover-sync")
    # Every node streams from the new primary, and the drill put replication back to asynchronous.
    layout = stack.StackLayout.load(directory)
    assert layout is not None
    primary, standbys = drills.check_topology(layout)
    assert primary == report["topology"]["new_primary"] and len(standbys) == 2
    assert drills.show_setting(layout, primary, "synchronous_standby_names") == ""
