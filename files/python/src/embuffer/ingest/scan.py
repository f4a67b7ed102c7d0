"""List the movie candidates at the top level of a camera folder (when each is whole:
settle.py).

Camera shares are CIFS mounts, which deliver no inotify events, so embuffer polls with one
os.scandir per interval (cheap: one directory read) and re-stats only the pending files in
between. The listing gives names and types only: over SMB a file's size and mtime cost a
request of their own, so files that settled and wait are stat'ed only when they are due for a
look (waiting.py). Symbolic links are never followed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from embuffer.safecopy.formats import movie_suffix
from embuffer.safecopy.partials import is_partial_name

log = logging.getLogger("embuffer.scan")

SIDECAR_SUFFIX = ".xml"


@dataclass(frozen=True)
class Candidate:
    name: str
    path: Path
    is_dir: bool


def is_candidate_name(name: str, is_dir: bool) -> bool:
    if name == ".DS_Store" or is_partial_name(name):
        return False
    if is_dir:
        return name.endswith(".frames") or name.startswith("20")
    # Leginon's transfer took `*.mrc*` (a K2's .mrcs, a compressed .mrc.bz2) beside the movie
    # suffixes of the one table; so does embuffer.
    return ".mrc" in name.lower() or movie_suffix(name) is not None


def list_candidates(folder: Path, warned: set[str]) -> list[Candidate]:
    """Top-level candidates; symlinks are skipped (and reported once each)."""
    found: list[Candidate] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_symlink():
                if entry.name not in warned:
                    warned.add(entry.name)
                    log.warning(
                        "skip symlink %r in %s: embuffer never follows links", entry.name, folder
                    )
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if not is_dir and not entry.is_file(follow_symlinks=False):
                continue
            if is_candidate_name(entry.name, is_dir):
                found.append(Candidate(entry.name, Path(entry.path), is_dir))
    found.sort(key=lambda candidate: candidate.name)
    return found


def sidecar_for(candidate: Candidate) -> Path | None:
    """A Falcon `.xml` sidecar with the same stem travels with its movie."""
    if candidate.is_dir:
        return None
    stem = candidate.name.rsplit(".", 1)[0]
    sidecar = candidate.path.with_name(stem + SIDECAR_SUFFIX)
    if sidecar.is_file() and not sidecar.is_symlink():
        return sidecar
    return None
