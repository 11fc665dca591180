"""Finding PostgreSQL's programs: Debian installs each major version's binaries outside PATH."""

from __future__ import annotations

import glob
import shutil
from pathlib import Path

INSTALL_GLOB = "/usr/lib/postgresql/*/bin"


def bindirs() -> list[tuple[int, Path]]:
    """Every installed ``/usr/lib/postgresql/<major>/bin``, newest major first."""
    found = [
        (int(path.parent.name), path)
        for path in (Path(p) for p in glob.glob(INSTALL_GLOB))
        if path.parent.name.isdigit()
    ]
    return sorted(found, key=lambda item: item[0], reverse=True)


def find_program(name: str, *, min_major: int = 15, on_path: str | None = None) -> Path | None:
    """The newest installed ``name`` of major ``min_major`` or later; else ``on_path`` (default ``name``) on PATH.

    Newest first because client tools such as pg_dump refuse servers newer than themselves. None when nothing
    is installed; callers raise their own error, which names the package to install.
    """
    for major, bindir in bindirs():
        if major >= min_major and (bindir / name).exists():
            return bindir / name
    found = shutil.which(on_path or name)
    return Path(found) if found else None
