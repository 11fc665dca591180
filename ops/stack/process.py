"""Running servers as the ``postgres`` user, and starting and stopping them by pid file.

PostgreSQL refuses to run as root, and developers and CI are root: when we are root every server runs as the
``postgres`` system user (via ``runuser``) and the data folder belongs to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from ops.stack.layout import SERVER_USER, StackError


def _is_root() -> bool:
    return os.geteuid() == 0


def as_server_user(cmd: Sequence[str]) -> list[str]:
    if _is_root():
        return ["runuser", "-u", SERVER_USER, "--", *cmd]
    return list(cmd)


def run_command(cmd: Sequence[str], *, what: str, timeout: float = 120.0) -> str:
    proc = subprocess.run(
        as_server_user(cmd), capture_output=True, text=True, timeout=timeout, check=False, cwd="/"
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise StackError(f"{what} failed: {' | '.join(tail)}")
    return proc.stdout


def server_uid_gid() -> tuple[int, int]:
    if not _is_root():
        return os.geteuid(), os.getegid()
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise StackError(
            "no 'postgres' system user: install PostgreSQL with 'apt-get install postgresql'"
        ) from None
    return entry.pw_uid, entry.pw_gid


def prepare_dir(directory: Path) -> None:
    """Create the data folder for the server user, or explain why it cannot be used."""
    uid, gid = server_uid_gid()
    if directory.exists():
        owner = directory.stat().st_uid
        if owner not in (uid, os.geteuid()):
            name = pwd.getpwuid(owner).pw_name if owner >= 0 else str(owner)
            raise StackError(
                f"data folder {directory} belongs to '{name}': remove it, 'chown -R {SERVER_USER} {directory}', "
                "or pass --dir with another folder"
            )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "run").mkdir(exist_ok=True)
    for path in [directory, directory / "run"]:
        os.chown(path, uid, gid)
        path.chmod(0o700)
    # The server user must be able to walk down to the folder; say so once instead of failing in initdb.
    for parent in directory.resolve().parents:
        mode = parent.stat().st_mode
        if _is_root() and not mode & 0o001 and parent.stat().st_uid != uid:
            raise StackError(
                f"{parent} is not searchable by '{SERVER_USER}': 'chmod o+x {parent}' or pass --dir under /tmp"
            )


def process_gone(pid: int) -> bool:
    """Whether ``pid`` has exited. A zombie counts as gone: it holds no socket or file any more, and the
    servers' parent is init, which may take seconds to reap it (in a container PID 1 is not always a real init)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return False
    return not process_gone(pid)


def stop_pidfile(pidfile: Path, *, timeout: float = 10.0) -> None:
    if not pid_alive(pidfile):
        return
    pid = int(pidfile.read_text().strip())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_gone(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


def spawn_daemon(cmd: Sequence[str], *, log: Path, pidfile: Path) -> int:
    """Start ``cmd`` as the server user, detached (own session, parent init), output appended to ``log``.

    The shell's ``$!`` is the daemon's own pid: ``setsid`` runs in the background of a shell without job
    control, so it is no process group leader and calls setsid() without forking before it execs ``cmd``. The
    pid goes to ``pidfile``, by which the stack stops (or a drill kills) exactly that process later.
    """
    shell = f"setsid {shlex.join(cmd)} >>{shlex.quote(str(log))} 2>&1 </dev/null & echo $!"
    out = run_command(["sh", "-c", shell], what=f"starting {Path(cmd[0]).name} (see {log})")
    pid = int(out.strip().splitlines()[-1])
    pidfile.write_text(f"{pid}\n")
    uid, gid = server_uid_gid()
    os.chown(pidfile, uid, gid)
    return pid
