"""Purge's look at a buffer copy before it removes it: is it still the bytes primary holds?

Unchanged identity (size, mtime, ctime, inode, device as the archive recorded them): it is,
without reading a byte. Anything else (a ctime moved by chmod, chown or setxattr, a rewrite
whose mtime was put back, a row archived by an earlier release that recorded no identity)
is settled by re-hashing it against the hash primary was verified with:
  - same bytes: the new identity is recorded and the copy is purged as usual;
  - other bytes: the copy is kept and handed back to the archive with its new hash, which
    archives it again; the primary copy of the earlier bytes is kept beside the new one
    (movie_copy.py). The user's edit reaches primary, and nothing is lost either way.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from embuffer.archive import buffer_identity as ident
from embuffer.journal import Journal, Movie
from embuffer.safecopy.hashing import hash_path, hash_tree

log = logging.getLogger("embuffer.purge")


@dataclass(frozen=True)
class BufferCheck:
    keep: str | None  # why the copy stays this time; None: it may go
    how: str = ""  # how it was found to hold the archived bytes, for the purge evidence
    # the copy's identity when it was found so (None: it was gone); purge compares it again
    # right before the removal, so that an edit made meanwhile is never removed unseen
    identity: ident.BufferIdentity | None = None


def check_buffer_copy(
    journal: Journal, movie: Movie, *, paranoid: bool, dry_run: bool
) -> BufferCheck:
    path = movie.dest
    try:
        before = ident.current(path)
    except (FileNotFoundError, NotADirectoryError):
        return BufferCheck(None, "already gone")  # the journal is brought up to date
    except ident.NotAMovie as error:
        return BufferCheck(str(error))
    except OSError as error:
        return BufferCheck(f"buffer copy not readable ({error})")
    recorded = ident.recorded(movie)
    if recorded is None:
        why = "no identity recorded (archived before purge recorded one)"
    else:
        changes = before.differences(recorded)
        if not changes and not paranoid:
            return BufferCheck(None, "size, mtime, ctime, inode and device as archived", before)
        why = f"changed: {', '.join(changes)}" if changes else "--paranoid"
    try:
        size, digest, manifest = rehash_copy(path, movie)
        after = ident.current(path)
    except OSError as error:
        return BufferCheck(f"buffer copy not readable ({error})")
    if replace(after, ctime_trusted=before.ctime_trusted) != before:
        return BufferCheck(f"buffer copy {path} changed while it was re-hashed; next purge")
    if (size, digest) == (movie.size, movie.hash):
        if not dry_run:
            # as it was before the bytes were read: a ctime too recent then stays unrecorded
            journal.update_movie(movie.id, **before.columns())
        return BufferCheck(None, f"re-hashed ({why}): the bytes primary holds", before)
    if not dry_run:
        archive_again(journal, movie, before, (size, digest, manifest), why)
    verb = "to be archived again" if dry_run else "queued to be archived again"
    return BufferCheck(
        f"buffer copy {path} changed after it was archived ({why}) and re-hashed as other "
        f"bytes ({size} bytes {digest}); {verb}, the earlier primary copy is kept beside it"
    )


def rehash_copy(path: Path, movie: Movie) -> tuple[int, str, list[tuple[str, int, str]]]:
    if movie.kind == "dir":
        return hash_tree(path)
    size, digest = hash_path(path, drop_cache=True)
    return size, digest, []


def archive_again(
    journal: Journal,
    movie: Movie,
    identity: ident.BufferIdentity,
    content: tuple[int, str, list[tuple[str, int, str]]],
    why: str,
) -> None:
    """Back into the archive's backlog with the bytes the buffer holds now. primary_path and
    primary_hash keep naming the earlier copy: the archive sets exactly that one aside."""
    size, digest, manifest = content
    detail = json.dumps(
        {
            "buffer_path": movie.dest_path,
            "why": why,
            "archived_hash": movie.hash,
            "archived_size": movie.size,
            "new_hash": digest,
            "new_size": size,
            "primary_path": movie.primary_path,
        }
    )
    with journal.transaction():
        journal.update_movie(
            movie.id,
            size=size,
            hash=digest,
            manifest=json.dumps(manifest) if manifest else movie.manifest,
            primary_verified_at=None,
            archive_error=None,
            buffer_mtime_ns=identity.mtime_ns,
            **ident.unrecorded(),
        )
        journal.event(
            "changed_after_archive",
            movie_id=movie.id,
            camera=movie.camera,
            nbytes=size,
            detail=detail,
        )
    log.warning(
        "buffer copy %s changed after it was archived (%s); archived again", movie.dest_path, why
    )
