"""Output folders: which ones badseg may write into or replace, and stale staging folders.

A result folder ``OUT`` (a poisoned export) is written into a staging folder beside it,
``.OUT.partial-PID``, and renamed into place at the end; a folder it replaces is first moved
aside to ``.OUT.old-PID``. Rules every command follows:

- never write to (or replace) the working directory, a folder above it, the home folder or a
  folder above that, or the filesystem root (``refuse_protected``);
- never write inside a dataset source, nor to a folder holding one (``refuse_overlap``);
- a staging folder whose process is gone is removed by the next write to the same ``OUT``
  (``clean_stale_staging``).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path


class OutputError(ValueError):
    """An output folder badseg must not write to or replace."""


def protected_reason(path: Path) -> str | None:
    """Why ``path`` may never be an output folder (None when it may)."""
    p = path.expanduser().resolve()
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if p == cwd:
        return "it is the working directory"
    if p == home:
        return "it is the home folder"
    if p == Path(p.anchor):
        return "it is the filesystem root"
    if p in cwd.parents:
        return "it is a folder above the working directory"
    if p in home.parents:
        return "it is a folder above the home folder"
    return None


def refuse_protected(out: Path) -> None:
    """Raise ``OutputError`` when ``out`` is the working directory, above it, home, or root."""
    reason = protected_reason(out)
    if reason:
        raise OutputError(f"refusing to write to {out}: {reason}; name a new folder instead, "
                          f"e.g. {os.path.join(str(out), 'badseg-out')}")


def refuse_overlap(out: Path, source: Path | None, what: str = "the source dataset folder") -> None:
    """Raise ``OutputError`` when ``out`` is ``source``, inside it, or holds it."""
    if source is None:
        return
    o, s = out.expanduser().resolve(), Path(source).expanduser().resolve()
    if o == s or s in o.parents or o in s.parents:
        raise OutputError(f"refusing to write {out}: it overlaps {what} {source}")


def staging_path(out: Path, kind: str = "partial") -> Path:
    """``.OUT.<kind>-PID`` beside ``out`` (``kind``: ``partial`` being written, ``old`` being replaced)."""
    return out.parent / f".{out.name}.{kind}-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_staging(out: Path) -> list[Path]:
    """Remove ``.OUT.partial-PID`` / ``.OUT.old-PID`` folders beside ``out`` whose process is gone.

    Returns the removed paths. Folders of a live process (a concurrent write) are left alone.
    """
    parent = out.parent
    if not parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.(?:partial|old)-(\d+)$")
    removed = []
    for p in parent.iterdir():
        m = pattern.match(p.name)
        if m and p.is_dir() and not p.is_symlink() and not pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed
