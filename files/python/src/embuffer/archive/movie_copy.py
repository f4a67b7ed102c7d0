"""One movie from the buffer to primary: copied, re-read from the device, then recorded.

Files are written under a partial name here and published by the finisher (second thread);
folders (DE movies), bzip2 copies and names already on primary are handled whole here. A
movie counts as archived only after its primary copy was re-read and compared; what a user
cannot put back of the buffer copy it was read from (buffer_identity.py) is recorded with it,
for purge.

A movie changed on the buffer after its archive comes back with its new hash (purge found
it: buffer_check.py). Primary's copy of the earlier bytes is never overwritten: when the
name holds exactly what this movie was archived as before, it is renamed aside to
`<name>.superseded-<UTC time>` in the same folder (an `archived_again` event names both;
set_aside.py: a counter follows when that name is taken, and a failure leaves the copy where
it was), and the new bytes are archived under the name as usual. Edited once more before
that archive, the copy's newest bytes are what reaches primary: they count as archived when
the buffer copy, re-hashed, still holds exactly them (recorded as purge records an edit).
Anything else under the name is still refused (ConflictOnPrimary).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from embuffer.archive import buffer_identity as ident
from embuffer.archive.buffer_check import archive_again, rehash_copy
from embuffer.archive.compressed import copy_compressed, hash_compressed
from embuffer.archive.set_aside import set_aside
from embuffer.config import Config
from embuffer.journal import Journal, Movie
from embuffer.safecopy import nofollow
from embuffer.safecopy.copy import (
    DestinationExists,
    Ownership,
    Progress,
    copy_path,
    make_folders,
    write_partial,
)
from embuffer.safecopy.hashing import hash_path

log = logging.getLogger("embuffer.archive")


class Pending(NamedTuple):
    """What the finisher must publish and verify."""

    movie: Movie
    target: Path  # its primary path
    partial: str  # the partial name written there
    identity: ident.BufferIdentity  # the buffer copy's, taken before its bytes were read


class ConflictOnPrimary(OSError):
    """Primary already holds different bytes under this name; never overwritten."""


class MovieCopier:
    def __init__(
        self,
        config: Config,
        journal: Journal,
        stop: threading.Event,
        interrupt: threading.Event,
    ) -> None:
        assert config.archive.primary is not None
        self.config = config
        self.primary: Path = config.archive.primary
        self.journal = journal
        self.stop = stop
        self.interrupt = interrupt  # set by stop or by a pause seen mid-copy
        self.progress: Progress | None = None  # bytes copied, for a progress bar

    def start(self, movie: Movie) -> Pending | None:
        """Copy a movie to its partial name on primary; returns what the finisher must publish
        and verify, or None when it was handled completely here (folders, bz2, existing)."""
        if not self.primary.is_dir():
            raise FileNotFoundError(f"primary storage {self.primary} is not available")
        if movie.kind == "dir" or self.compressed(movie):
            self.mirror(movie)
            return None
        target = self.primary_path_for(movie)
        ownership = Ownership(movie.uid, movie.gid, self.config.file_mode, self.config.dir_mode)
        make_folders(target.parent, ownership)
        self.set_aside_earlier_copy(movie, target)
        identity = ident.current(movie.dest)
        self.interrupt.clear()
        try:
            result = write_partial(
                movie.dest,
                target,
                ownership,
                stop=_either(self.stop, self.interrupt),
                progress=self.progress,
            )
        except DestinationExists:
            # primary had it already: the buffer copy was not read, so no identity for it
            self.verify_and_record(movie, target, None)
            return None
        return Pending(movie, target, result.partial, identity)

    def primary_path_for(self, movie: Movie) -> Path:
        path = self.primary / str(movie.rel_path)
        if self.compressed(movie):
            path = path.with_name(path.name + ".bz2")
        return path

    def compressed(self, movie: Movie) -> bool:
        return (
            self.config.archive.compress_mrc
            and movie.kind == "file"
            and str(movie.rel_path).endswith(".mrc")
        )

    def mirror(self, movie: Movie) -> None:
        source = movie.dest
        target = self.primary_path_for(movie)
        if not self.primary.is_dir():
            raise FileNotFoundError(f"primary storage {self.primary} is not available")
        ownership = Ownership(movie.uid, movie.gid, self.config.file_mode, self.config.dir_mode)
        make_folders(target.parent, ownership)
        self.set_aside_earlier_copy(movie, target)
        interrupt = _either(self.stop, self.interrupt)
        self.interrupt.clear()
        identity: ident.BufferIdentity | None = ident.current(source)
        try:
            if self.compressed(movie):
                copy_compressed(source, target, ownership, stop=interrupt)
            else:
                copy_path(source, target, ownership, stop=interrupt, progress=self.progress)
        except DestinationExists:
            identity = None  # verified below (identical is adopted, different is an error)
        self.verify_and_record(movie, target, identity)

    def hash_primary(self, movie: Movie, target: Path) -> tuple[int, str]:
        """Size and hash of the movie's bytes in a primary copy, read from the device."""
        if self.compressed(movie):
            return hash_compressed(target)
        return hash_path(target, drop_cache=True)

    def set_aside_earlier_copy(self, movie: Movie, target: Path) -> None:
        """Before a movie that changed after its archive goes to primary again: rename the
        copy of its earlier bytes aside, never over anything (see the module's notes)."""
        earlier = movie.primary_hash
        if earlier is None or earlier == movie.hash or movie.primary_path != str(target):
            return  # not archived before, or archived with these very bytes
        if not nofollow.lexists(target) or self.hash_primary(movie, target)[1] != earlier:
            return  # nothing there, or not ours: the copy below adopts or refuses it
        # an OSError here leaves the copy under its name: the archive retries the movie later
        with nofollow.folder(target.parent) as folder_fd:
            aside = set_aside(folder_fd, target.name, time.time())
        self.journal.event(
            "archived_again",
            movie_id=movie.id,
            camera=movie.camera,
            nbytes=movie.size,
            detail=json.dumps(
                {"primary_path": str(target), "earlier_copy": str(target.parent / aside)}
            ),
        )
        log.warning("%s changed on the buffer: earlier primary copy kept as %s", target, aside)

    def verify_and_record(
        self, movie: Movie, target: Path, identity: ident.BufferIdentity | None
    ) -> None:
        """Re-read the primary copy from the device; only an equal one counts as archived.
        `identity`: the buffer copy's, taken before the bytes now on primary were read from
        it (None when they were not: purge then re-hashes it before removing it)."""
        size, digest = self.hash_primary(movie, target)
        if (size, digest) != (movie.size, movie.hash):
            movie = self.edited_again(movie, target, (size, digest))
            identity = None  # recorded as none: purge re-hashes the copy before removing it
        with self.journal.transaction():
            self.journal.update_movie(
                movie.id,
                primary_path=str(target),
                primary_hash=digest,
                primary_size=size if nofollow.is_folder(target) else nofollow.lstat(target).st_size,
                primary_verified_at=time.time(),
                archive_error=None,
                **(identity.columns() if identity is not None else ident.unrecorded()),
            )
            self.journal.event(
                "archived",
                movie_id=movie.id,
                camera=movie.camera,
                nbytes=movie.size,
                detail=str(target),
            )
        log.info("archived %s -> %s (verified)", movie.dest_path, target)

    def edited_again(self, movie: Movie, target: Path, on_primary: tuple[int, str]) -> Movie:
        """Primary holds other bytes than the journal names. When purge queued this movie to
        be archived again and its buffer copy was edited once more before this archive, what
        was copied are its newest bytes: re-hashed, the buffer copy still holds exactly them,
        and they are recorded as purge records an edit (no identity: purge re-hashes the copy
        before it removes it). Anything else is ConflictOnPrimary, never adopted."""
        conflict = ConflictOnPrimary(
            f"{target} holds different bytes ({on_primary[1]}) than the buffer copy "
            f"({movie.hash}); not overwritten, resolve by hand"
        )
        if movie.primary_hash in (None, movie.hash):
            raise conflict  # not an edit after an archive: a first archive keeps its hash
        try:
            before = ident.current(movie.dest)
            size, digest, manifest = rehash_copy(movie.dest, movie)
            after = ident.current(movie.dest)
        except OSError:
            raise conflict from None
        if replace(after, ctime_trusted=before.ctime_trusted) != before:
            raise conflict  # edited while it was re-hashed: the next pass looks again
        if (size, digest) != on_primary:
            raise conflict
        why = "edited again after it was queued to be archived again"
        archive_again(self.journal, movie, before, (size, digest, manifest), why)
        return self.journal.movie(movie.id)


def _either(first: threading.Event, second: threading.Event) -> threading.Event:
    """An event view that is set when either is (copy loops check `is_set()` only)."""

    class Either(threading.Event):
        def is_set(self) -> bool:
            return first.is_set() or second.is_set()

    return Either()
