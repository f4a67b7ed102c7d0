"""What a crash or an earlier run left at a transfer's destination, taken over or let go.

A final name already taken is adopted when it holds the source's bytes (a repeat, or our
own copy published just before a crash) and never overwritten when it does not. A row whose
camera copy is gone before the journal recorded its copy keeps a published copy found at
its destination (hashed, then handed to the archive like any buffer movie), or is marked
vanished. `Transfer.recover` decides which step a row left mid-flight needs; these are the
pieces of it that look at what lies on disk.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from embuffer import journal as j
from embuffer.journal import Journal, Movie
from embuffer.safecopy import nofollow
from embuffer.safecopy.hashing import hash_path, hash_tree


def adopt_existing(journal: Journal, movie_id: int, source: Path, dest: Path) -> bool:
    """The final name is taken (a repeat, or our own copy published just before a crash).
    Identical bytes: count it as verified. Different bytes: never overwrite."""
    manifest: list[tuple[str, int, str]] = []
    if nofollow.is_folder(source):
        # the members' list, so that remove_source removes exactly what was compared
        source_size, source_hash, manifest = hash_tree(source)
    else:
        source_size, source_hash = hash_path(source)
    dest_size, dest_hash = hash_path(dest, drop_cache=True)
    if (source_size, source_hash) != (dest_size, dest_hash):
        journal.update_movie(movie_id, state=j.MATCHED)
        return False
    stat = source.stat(follow_symlinks=False)
    journal.update_movie(
        movie_id,
        state=j.VERIFIED,
        size=source_size,
        hash=source_hash,
        manifest=json.dumps(manifest) if manifest else None,
        source_mtime_ns=_tree_mtime(source, stat.st_mtime_ns),
        buffer_mtime_ns=dest.stat(follow_symlinks=False).st_mtime_ns,
        buffer_visible_at=time.time(),
        verified_at=time.time(),
    )
    journal.event("identical_exists", movie_id=movie_id, detail=str(dest))
    return True


def source_gone(journal: Journal, movie: Movie) -> str:
    """The camera copy is gone but the journal never recorded our copy as verified. If
    a published copy sits at the destination (the crash came between publishing and the
    journal write, and someone removed the source meanwhile), keep it: hash it and hand it
    to the archive like any buffer movie, so it reaches primary before any purge."""
    dest = movie.dest if movie.dest_path else None
    if dest is not None and os.path.lexists(dest):
        size, digest = hash_path(dest, drop_cache=True)
        now = time.time()
        final = j.QUARANTINED if in_quarantine(movie) else j.DONE
        journal.update_movie(
            movie.id,
            state=final,
            size=size,
            hash=digest,
            verified_at=now,
            buffer_visible_at=now,
            buffer_mtime_ns=dest.stat(follow_symlinks=False).st_mtime_ns,
            reason="camera copy removed before the journal recorded the copy; "
            "the published copy was kept and hashed",
        )
        journal.event(
            "recovered", movie_id=movie.id, camera=movie.camera, nbytes=size, detail=str(dest)
        )
        return "kept the published copy"
    journal.update_movie(
        movie.id, state=j.VANISHED, reason="source disappeared before it was copied"
    )
    return "vanished"


def in_quarantine(movie: Movie) -> bool:
    return bool(movie.target == "quarantine")


def _tree_mtime(path: Path, default: int) -> int:
    if not path.is_dir():
        return default
    newest = default
    for root, _dirs, files in os.walk(path):
        for name in files:
            newest = max(
                newest, os.stat(os.path.join(root, name), follow_symlinks=False).st_mtime_ns
            )
    return newest
