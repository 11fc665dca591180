"""Processes by ancestry, read from /proc: what a benchmark needs to treat a server and its workers as one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def _parent(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # After the command name (which may hold spaces and parentheses): state, then the parent's pid.
    return int(raw.rsplit(")", 1)[1].split()[1])


def process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and every live descendant of it."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parents[int(entry)] = _parent(int(entry))
    found = []
    for pid in parents:
        p = pid
        while p > 1:
            if p == root_pid:
                found.append(pid)
                break
            p = parents.get(p, 0)
    return found


def set_priority(pids: list[int], niceness: int) -> list[int]:
    """Give ``pids`` the scheduling priority ``niceness``; returns those it could not (not permitted, gone)."""
    failed = []
    for pid in pids:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, niceness)
        except OSError:
            failed.append(pid)
    return failed
