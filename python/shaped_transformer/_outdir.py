"""The guard of an output folder that a command writes (``report --out``, ``atlas --out``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

__all__ = ["check_out"]


def check_out(out: Path, *, marker: str, ours: Callable[[str], bool], what: str) -> None:
    """Refuses ``out`` (ValueError naming it) when it is the current folder or one
    of its parents, an existing file, or a non-empty folder that holds neither the
    command's ``marker`` file nor only names the command writes (``ours``): a
    command never writes among, or replaces, a user's own files."""
    here = Path.cwd().resolve()
    full = out.resolve()
    if full == here or full in here.parents:
        raise ValueError(f"--out {out}: is the current folder or one of its parents; choose a new folder")
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"--out {out}: exists and is not a folder")
        names = {p.name for p in out.iterdir()}
        if names and marker not in names and not all(ours(n) for n in names):
            raise ValueError(f"--out {out}: exists, is not empty and holds no previous {what}; choose another folder")
