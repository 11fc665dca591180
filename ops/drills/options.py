"""What a drill run is asked to do, and the targets it is judged by."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ops import stack

PROJECT = stack.PROJECT_DIR
DEFAULT_REPORTS = PROJECT / "docs" / "drills"
#: Targets of issue 13 for the longest gap between two acknowledged writes, per drill. Node loss: the leader
#: lock's ttl (20 s) plus promotion and the gateway's discovery.
WRITES_UNAVAILABLE_TARGET_S = {"node-loss": 25.0, "rejoin": 25.0, "crash": 10.0, "switchover": 5.0}
#: The old primary must rejoin as a replica within this long of its Patroni starting again.
REJOIN_TARGET_S = 60.0
# Lines of the gateway's log that tell the routing story (ejections, readmissions, elections), for the report.
LOG_KEYWORDS = ("ejected", "readmitted", "primary", "refused", "unavailable", "Traceback", "ERROR")


class DrillError(stack.StackError):
    """The drill cannot run (or could not put the stack back together); the message says what to do."""


@dataclasses.dataclass(kw_only=True)
class DrillOptions:
    """Settings of one drill run; the defaults are the CLI's."""

    directory: Path = stack.DEFAULT_DIR
    base_port: int = stack.DEFAULT_BASE_PORT
    clients: int = 50
    #: Clients (out of ``clients``) that write; None: 5 for the failover drill, 0 for replica loss.
    writers: int | None = None
    duration_s: float = 60.0
    #: When the fault happens, as a fraction of the duration.
    fault_at: float = 1 / 3
    #: How long the lost node stays down (replica-loss; rejoin: counted from the promotion).
    down_s: float = 10.0
    sync: bool = False
    pages: int = 20_000
    reports: Path = DEFAULT_REPORTS
    port: int = 0
    #: The replica to stop (replica-loss); default: the last replica.
    node: str | None = None
    health_interval_s: float = 0.5
    #: Stem of the report files; default: the drill's name (with ``-sync`` for --sync).
    name: str | None = None
    progress: bool = True
