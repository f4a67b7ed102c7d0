"""A quarantined file leaves quarantine only on a person's word, with evidence.

embuffer never deletes a quarantined file by itself (purge does not look there). Staff take
one out with `embuffer quarantine release ID --to PATH` (copied there, verified against the
hash taken when it was quarantined, then removed from quarantine) or `embuffer quarantine
remove ID --reason TEXT` (deleted). Either way the journal row is closed with its evidence,
as purge closes its rows: the paths, size and hash recorded and found, who, why and when,
in `purge_evidence` and in an event of its own. The file goes before the row says so (each
step made durable first), so a crash between leaves a row that the same command finishes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embuffer import journal as j
from embuffer.config import Config
from embuffer.journal import Journal, Movie
from embuffer.safecopy import nofollow
from embuffer.safecopy.copy import Ownership, copy_path
from embuffer.safecopy.hashing import hash_path
from embuffer.safecopy.space import ensure_room

log = logging.getLogger("embuffer.quarantine")


class QuarantineExitError(Exception):
    """The request cannot be carried out; nothing was moved or deleted."""


class RefusedTarget(QuarantineExitError):
    """`--to` names the quarantined copy itself or a place inside quarantine: releasing
    there would remove the only copy (an operator's slip, refused as a usage error)."""


@dataclass(frozen=True)
class Request:
    by: str  # who asked
    why: str


def _quarantined(journal: Journal, movie_id: int) -> Movie:
    try:
        movie = journal.movie(movie_id)
    except KeyError:
        raise QuarantineExitError(f"no journal row {movie_id}") from None
    if movie.state != j.QUARANTINED or not movie.dest_path:
        raise QuarantineExitError(
            f"row {movie_id} is not in quarantine (state {movie.state}); see "
            "`embuffer quarantine list`"
        )
    return movie


def _in_quarantine(config: Config, movie: Movie) -> Path:
    """The row's copy, which must lie in the quarantine folder (rows of older releases may
    say otherwise: then a person decides by hand)."""
    path = movie.dest
    if not path.is_relative_to(config.quarantine):
        raise QuarantineExitError(f"{path} is not under {config.quarantine}; nothing done")
    return path


def _refuse_inside_quarantine(config: Config, path: Path, target: Path) -> None:
    """The release removes `path` after the copy: a target that is that very file (by any
    spelling, a hard link too) or lies in quarantine would leave no copy anywhere else."""
    where = Path(os.path.abspath(target))
    inside = (where, Path(os.path.realpath(where.parent)) / where.name)
    quarantine = (config.quarantine, Path(os.path.realpath(config.quarantine)))
    if any(spelled.is_relative_to(folder) for spelled in inside for folder in quarantine):
        raise RefusedTarget(f"--to {target} is inside quarantine {config.quarantine}; refused")
    with contextlib.suppress(FileNotFoundError):
        if os.path.samestat(os.lstat(target), os.lstat(path)):
            raise RefusedTarget(f"--to {target} is the quarantined file itself; refused")


def _found(path: Path) -> tuple[int, str] | None:
    """(size, hash) of the quarantined copy as it is now; None when it is gone."""
    try:
        return hash_path(path, drop_cache=True)
    except FileNotFoundError:
        return None


def _evidence(movie: Movie, request: Request, found: tuple[int, str] | None) -> dict[str, Any]:
    return {
        "path": movie.dest_path,
        "camera": movie.camera,
        "camera_path": movie.source_path,
        "quarantined_because": movie.reason,
        "size": movie.size,
        "hash": movie.hash,
        "size_found": None if found is None else found[0],
        "hash_found": None if found is None else found[1],
        "by": request.by,
        "why": request.why,
        "at": time.time(),
    }


def _take_out(path: Path) -> None:
    """Remove the quarantined copy through its folder's descriptor (a link planted in its
    place is removed, never what it points to) and make the removal durable."""
    with (
        contextlib.suppress(FileNotFoundError),
        nofollow.folder(path.parent) as folder_fd,
    ):
        with contextlib.suppress(FileNotFoundError):
            nofollow.remove_in(folder_fd, path.name)
        os.fsync(folder_fd)


def _close(
    journal: Journal, movie: Movie, state: str, action: str, evidence: dict[str, Any]
) -> None:
    text = json.dumps(evidence, sort_keys=True)
    with journal.transaction():
        journal.update_movie(movie.id, state=state, purge_evidence=text)
        journal.event(
            action, movie_id=movie.id, camera=movie.camera, nbytes=movie.size, detail=text
        )
    journal.make_durable()
    log.warning("%s quarantined row %d: %s", action, movie.id, text)


def release(
    config: Config, journal: Journal, movie_id: int, to: Path, request: Request
) -> dict[str, Any]:
    """Copy the quarantined file to `to` (a new path, or an existing folder to put it in),
    verify it there, then remove it from quarantine. Returns the evidence."""
    movie = _quarantined(journal, movie_id)
    path = _in_quarantine(config, movie)
    target = to / path.name if nofollow.is_folder(to) else to
    _refuse_inside_quarantine(config, path, target)
    found = _found(path)
    if found is None:
        raise QuarantineExitError(f"{path} is gone from quarantine; nothing to release")
    if found != (movie.size, movie.hash):
        raise QuarantineExitError(
            f"{path} is not the file that was quarantined ({found[0]} bytes, hash {found[1]}; "
            f"recorded {movie.size} bytes, {movie.hash}); nothing moved"
        )
    if not nofollow.lexists(target):
        ensure_room(target.parent, found[0], config.reserve_percent, placed=True)
        copy_path(path, target, Ownership(file_mode=config.file_mode, dir_mode=config.dir_mode))
    # re-read from the device: also how a copy left by an interrupted release is adopted
    if _found(target) != found:
        raise QuarantineExitError(f"{target} exists and holds other bytes; nothing removed")
    evidence = {**_evidence(movie, request, found), "action": "released", "to": str(target)}
    _take_out(path)
    _close(journal, movie, j.RELEASED, "quarantine_released", evidence)
    return evidence


def remove(config: Config, journal: Journal, movie_id: int, request: Request) -> dict[str, Any]:
    """Delete the quarantined file on request; the evidence keeps what it was."""
    if not request.why.strip():
        raise QuarantineExitError("a reason is required to remove a quarantined file")
    movie = _quarantined(journal, movie_id)
    path = _in_quarantine(config, movie)
    evidence = {**_evidence(movie, request, _found(path)), "action": "removed"}
    _take_out(path)
    _close(journal, movie, j.REMOVED, "quarantine_removed", evidence)
    return evidence
