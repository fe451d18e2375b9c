"""Whole files under their final name: written as ``NAME.part-PID-THREAD`` and renamed.

Below :mod:`zarrgeno.io.writing` and the remote chunk cache (which both write single files),
so neither needs the other; it imports nothing of zarrgeno.
"""

from __future__ import annotations

import glob
import os
import re
import threading
from pathlib import Path

#: A file written in place is ``NAME.part-PID-THREAD`` beside NAME until complete.
PART = re.compile(r"\.part-(\d+)-\d+$")


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a killed but not yet reaped process (a zombie) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def write_whole(final: Path, data: bytes) -> None:
    """Write ``final`` as ``NAME.part-PID-THREAD`` renamed over it: never a partial file
    under its name. The part file sits in the same directory, so the rename is atomic even
    when the store is a mount point or a link to another disk; on failure it is removed,
    and :func:`remove_dead_parts` removes what a killed run left."""
    part = final.with_name(f"{final.name}.part-{os.getpid()}-{threading.get_ident()}")
    try:
        part.write_bytes(data)
        os.replace(part, final)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def remove_dead_parts(folder: Path, *, of: str | None = None) -> None:
    """Remove the part files left under ``folder`` by killed runs (not by runs still
    going); with ``of``, only those of the file of that name in ``folder`` itself."""
    if of is None:
        files = [Path(where, name) for where, _, names in os.walk(folder) for name in names]
    else:
        files = [p for p in folder.glob(f"{glob.escape(of)}.part-*") if p.is_file()]
    for path in files:
        match = PART.search(path.name)
        if match and not pid_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
