"""Quarantine: files embuffer cannot place are moved aside on the buffer, never deleted.

A quarantined file gets the same verified copy as any movie (so the camera share can be
freed safely), lands in `<quarantine>/<camera host>/<original name>` (with a numeric suffix
if that name is taken), and its reason is kept in the journal. `embuffer quarantine list`
shows them; `embuffer quarantine retry` matches them again (e.g. after a database fix);
`release` and `remove` take one out on a person's word, with evidence (quarantine_exit.py).
Quarantine is not a placed movie: it stops at the reserve (safecopy/space.py), and the file
stays on the camera share meanwhile.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from embuffer import journal as j
from embuffer.config import Config
from embuffer.journal import Journal, Movie
from embuffer.journal import queries as q
from embuffer.journal.escape import one_line
from embuffer.safecopy.copy import Ownership
from embuffer.safecopy.space import ensure_room, size_of
from embuffer.safecopy.transfer import Transfer

log = logging.getLogger("embuffer.quarantine")


def _names(folder: Path, name: str) -> Iterator[Path]:
    """`name`, `name.1`, `name.2`, ... in turn. Taken names are offered too: the copy adopts
    one that holds identical bytes (this very file, published before a crash or a power cut
    took the journal's record of it), so a file is never quarantined twice."""
    yield folder / name
    for counter in itertools.count(1):
        yield folder / f"{name}.{counter}"


def quarantine_movie(
    config: Config, journal: Journal, transfer: Transfer, movie_id: int, reason: str
) -> None:
    """Move a journal row's source into quarantine (verified), recording why."""
    movie = journal.movie(movie_id)
    source = movie.source
    folder = config.quarantine / movie.camera
    ownership = Ownership(file_mode=config.file_mode, dir_mode=config.dir_mode)
    # A copy made before a crash is finished whatever the room; a sidecar was counted with
    # its movie. Callers that can leave the file on the camera share ask first (intake.py).
    # A copy already on the buffer (the earlier copy of a file the camera rewrote) holds its
    # room there already: refusing would only leave it under its aside name.
    on_buffer = config.buffer_root in source.parents
    if movie.state not in (j.COPIED, j.VERIFIED) and movie.kind != "sidecar" and not on_buffer:
        ensure_room(folder, size_of(source), config.reserve_percent, placed=False)
    for dest in _names(folder, source.name):
        if _same_file(dest, source) or _other_file_there(dest, source):
            continue  # the source itself, or a file of another size: no copy needed to know
        if _kept_for_another(journal, dest, movie_id):
            continue  # identical bytes, but another quarantined file's record: not shared
        if transfer.copy(
            movie_id, source, dest, ownership, target="quarantine", reason=reason, rel_path=None
        ):
            break
    if journal.movie(movie_id).state == j.COPIED:
        transfer.reread(movie_id)
    transfer.remove_source(movie_id, j.QUARANTINED)
    movie = journal.movie(movie_id)
    journal.event(
        "quarantined", movie_id=movie_id, camera=movie.camera, nbytes=movie.size, detail=reason
    )
    log.warning("quarantined %r -> %r: %s", str(source), str(dest), reason)


def _same_file(dest: Path, source: Path) -> bool:
    """The same file by device and inode, however the two paths are spelled."""
    try:
        return os.path.samestat(
            dest.stat(follow_symlinks=False), source.stat(follow_symlinks=False)
        )
    except FileNotFoundError:
        return False


def _kept_for_another(journal: Journal, dest: Path, movie_id: int) -> bool:
    return q.quarantined_elsewhere(journal.db, str(dest), movie_id)


def _other_file_there(dest: Path, source: Path) -> bool:
    try:
        there = dest.stat(follow_symlinks=False)
    except FileNotFoundError:
        return False
    if source.is_dir() or dest.is_dir():
        return source.is_dir() != dest.is_dir()
    return there.st_size != source.stat(follow_symlinks=False).st_size


def format_listing(movies: list[Movie]) -> str:
    if not movies:
        return "quarantine is empty"
    now = time.time()
    lines = [f"{'id':>6}  {'camera':<16} {'bytes':>12} {'days':>6}  file  (reason)"]
    for movie in movies:
        since = movie.source_removed_at or movie.first_seen  # when it went to quarantine
        lines.append(
            f"{movie.id:>6}  {movie.camera:<16} {movie.size or 0:>12} "
            f"{(now - since) / 86400:>6.1f}  {movie.dest_path!r}  ({movie.reason})"
        )
    total = sum(movie.size or 0 for movie in movies)
    lines.append(f"{len(movies)} file(s), {total} bytes")
    return "\n".join(one_line(line) for line in lines)  # reasons name camera files
