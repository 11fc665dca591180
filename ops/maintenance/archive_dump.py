"""Dumping a detached partition, proving the dump restores into a scratch database, and writing its manifest.

Files are written as ``.partial``, fsynced and renamed, so a crash never leaves a file that looks complete.
Client tools get the password through the environment, never argv, which every user of the host can read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from migrations import partitions
from ops.common.postgres import find_program
from ops.maintenance.archive_model import (
    CHECKSUM_METHOD,
    CHECKSUM_SQL,
    SCRATCH_PREFIX,
    ArchiveError,
    ArchiveItem,
    ArchivePolicy,
    ArchiveRun,
    Conn,
)


def find_pg_tool(name: str, *, server_major: int = 15) -> str:
    """Path of ``pg_dump``/``pg_restore`` able to handle this server: the newest installed major >= the server's."""
    found = find_program(name, min_major=server_major)
    if found is None:
        raise ArchiveError(
            f"{name} not found: install the PostgreSQL {server_major} client ('apt-get install postgresql')"
        )
    return str(found)


def _tool_target(dsn: str, *, dbname: str | None = None) -> tuple[str, dict[str, str]]:
    """A conninfo for a client tool, with the password moved to the environment (argv is world-readable)."""
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    env = dict(os.environ)
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = password
    if dbname is not None:
        params["dbname"] = dbname
    return make_conninfo("", **params), env


def scratch_dsn(conn: Conn, dsn: str, restore_dsn: str | None) -> str:
    """The server itself, not PgBouncer: a scratch database has no PgBouncer alias."""
    if restore_dsn:
        return restore_dsn
    row = conn.execute(
        "SELECT host(inet_server_addr()), current_setting('port'), current_setting('unix_socket_directories')"
    ).fetchone()
    assert row is not None
    addr, port, sockets = row
    params = {k: v for k, v in conninfo_to_dict(dsn).items() if k != "hostaddr"}
    params["host"] = str(addr) if addr else str(sockets).split(",")[0].strip()
    params["port"] = str(port)
    return make_conninfo("", **params)


def _run_tools(jobs: Sequence[tuple[list[str], str]], env: dict[str, str]) -> None:
    """Run client tools side by side (each is mostly waiting on the server); any failure fails them all."""
    procs = [
        (subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), what)
        for cmd, what in jobs
    ]
    deadline = time.monotonic() + ArchivePolicy.tool_timeout_s
    problems = []
    try:
        for proc, what in procs:
            try:
                _, stderr = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                problems.append(f"{what} timed out after {ArchivePolicy.tool_timeout_s:.0f} s")
                continue
            if proc.returncode != 0:
                tail = " | ".join(stderr.strip().splitlines()[-3:])
                problems.append(f"{what} failed (exit {proc.returncode}): {tail}")
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if problems:
        raise ArchiveError("; ".join(problems))


# --- dump, verify, drop -------------------------------------------------------------------------------------------


def fingerprint(conn: Conn, name: str) -> tuple[int, str]:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in partitions.PAGE_COLUMNS)
    query = sql.SQL(CHECKSUM_SQL).format(cols=cols, tbl=sql.Identifier("public", name))
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(partial: Path, final: Path) -> None:
    """Make a finished file durable under its final name (an archive we drop data for must survive a crash)."""
    _fsync(partial)
    partial.replace(final)
    _fsync(final.parent)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    _publish(partial, path)


def dump(run: ArchiveRun, item: ArchiveItem) -> None:
    stem = f"{item.name}-{run.stamp}"
    target, env = _tool_target(run.dsn)
    dump = run.dest / f"{stem}.dump"
    prereq = run.dest / f"{stem}.prereq.dump"
    # Quoted pattern: no wildcard or case folding can ever widen the selection beyond this one table.
    table_cmd = [run.pg_dump, "--no-password", "--format=custom", f'--table=public."{item.name}"']
    # Everything but relations (-T '*'): extensions, types, functions, text search configuration. Schema only
    # and no tables, so it locks nothing the gateway uses.
    prereq_cmd = [run.pg_dump, "--no-password", "--format=custom", "--schema-only", "--exclude-table=*"]
    _run_tools(
        [
            ([*table_cmd, f"--file={dump}.partial", f"--dbname={target}"], "pg_dump"),
            ([*prereq_cmd, f"--file={prereq}.partial", f"--dbname={target}"], "pg_dump (prerequisites)"),
        ],
        env,
    )
    _publish(Path(f"{dump}.partial"), dump)
    _publish(Path(f"{prereq}.partial"), prereq)
    item.dump_path, item.prereq_path, item.dump_sha256 = dump, prereq, sha256_of(dump)
    item._touch("dumped_at")


def verify(run: ArchiveRun, item: ArchiveItem) -> None:
    assert item.dump_path is not None and item.prereq_path is not None
    scratch = f"{SCRATCH_PREFIX}{os.getpid()}"
    run.conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    run.conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    try:
        target, env = _tool_target(run.scratch_dsn, dbname=scratch)
        base = [run.pg_restore, "--no-password", "--exit-on-error", "--no-owner", "--no-privileges"]
        _run_tools(
            [([*base, f"--dbname={target}", str(item.prereq_path)], "pg_restore (prerequisites)")], env
        )
        sections = ["--section=pre-data", "--section=data"]  # not post-data: index builds prove nothing here
        _run_tools([([*base, *sections, f"--dbname={target}", str(item.dump_path)], "pg_restore")], env)
        with psycopg.connect(
            run.scratch_dsn, dbname=scratch, autocommit=True, prepare_threshold=None
        ) as check:
            restored = fingerprint(check, item.name)
    finally:
        run.conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    if restored != (item.rows, item.checksum):
        raise ArchiveError(
            f"restore check failed for {item.name}: restored {restored[0]} rows / checksum {restored[1]}, "
            f"expected {item.rows} / {item.checksum}",
            item=item,
        )
    if sha256_of(item.dump_path) != item.dump_sha256:
        raise ArchiveError(f"{item.dump_path} changed while it was being verified", item=item)
    item._touch("verified_at")


def write_manifest(run: ArchiveRun, item: ArchiveItem, status: str) -> None:
    assert item.dump_path is not None and item.prereq_path is not None
    item.manifest_path = run.dest / f"{item.name}-{run.stamp}.manifest.json"
    server = run.conn.info.server_version
    _write_json(
        item.manifest_path,
        {
            "format": 1,
            "status": status,
            "parent": f"public.{partitions.PARENT}",
            "partition": f"public.{item.name}",
            "range": {"from": item.start.isoformat(), "to": item.end.isoformat(), "to_exclusive": True},
            "rows": item.rows,
            "checksum": item.checksum,
            "checksum_method": CHECKSUM_METHOD,
            "dump_file": item.dump_path.name,
            "dump_sha256": item.dump_sha256,
            "dump_bytes": item.dump_path.stat().st_size,
            "prereq_file": item.prereq_path.name,
            "prereq_sha256": sha256_of(item.prereq_path),
            "server_version": f"{server // 10000}.{server % 10000}",
            "strategy": run.strategy,
            "locks": {k: dataclasses.asdict(v) for k, v in item.locks.items()},
            "timestamps": item.timestamps,
            "notes": item.notes,
            "restore": [
                "createdb <db>  # an empty database",
                f"pg_restore --no-owner -d <db> {item.prereq_path.name}  # types, text search configuration",
                f"pg_restore --no-owner -d <db> {item.dump_path.name}",
                f"# or back into the live database (the table name is free again): pg_restore -d <live db> "
                f"{item.dump_path.name}, then {item.attach_sql()}",
            ],
        },
    )
