"""Move one journal row's file from a source to a destination without ever losing it.

The steps and the journal state written around each (see journal/movie.py for the states):
  COPYING   -> copy to a partial name, hash in flight, fsync, publish       (copy.py)
  COPIED    -> re-read the published copy from the device, compare hashes  (reread)
  VERIFIED  -> remove the source, but only if it is still the file that was copied
  DONE / QUARANTINED
A crash between any two steps is repaired by `recover()`, which only ever finishes a step
or undoes a partial one: a source is never removed before its copy was verified.

This module owns the steps and the journal writes around them (`Transfer`). What step 3
does to the camera copy lies in source_removal.py; what a crash left at the destination
(a copy to adopt, a copy whose source is gone) in leftovers.py.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from embuffer import journal as j
from embuffer.journal import Journal, Movie
from embuffer.journal import queries as q
from embuffer.safecopy import leftovers, nofollow, source_removal
from embuffer.safecopy.copy import (
    CopyResult,
    DestinationExists,
    Ownership,
    Progress,
    copy_path,
    finish_partial,
    make_folders,
    remove_tree_quietly,
    write_partial,
)
from embuffer.safecopy.hashing import hash_path
from embuffer.safecopy.partials import remove_partials
from embuffer.safecopy.source_removal import (
    APPEND_REWRITES_AT_MOST_BYTES,
    BUSY_ERRNOS,
    SourceBusy,
    SourceRewritten,
)

__all__ = [
    "APPEND_REWRITES_AT_MOST_BYTES",
    "BUSY_ERRNOS",
    "Pending",
    "SourceBusy",
    "SourceRewritten",
    "Transfer",
    "VerificationFailed",
]


class VerificationFailed(Exception):
    pass


@dataclass(frozen=True)
class Pending:
    """A copy written under its partial name, waiting for fsync and publish."""

    movie_id: int
    source: Path
    dest: Path
    result: CopyResult


@dataclass
class Transfer:
    """The copy/reread/remove-source machinery bound to one journal."""

    journal: Journal
    stop: threading.Event
    progress: Progress | None = None  # bytes copied, for a progress bar on a terminal

    # ---- step 1: copy ----------------------------------------------------------------------
    def begin(
        self, movie_id: int, source: Path, dest: Path, ownership: Ownership, **fields: object
    ) -> Pending | bool:
        """Like `copy`, but for a plain file stop after writing the partial copy and return
        a Pending to `finish` (fsync, publish) in another thread, so the next copy can start
        while this one is flushed. Folders are copied whole right away (True)."""
        if nofollow.is_folder(source):
            return self.copy(movie_id, source, dest, ownership, **fields)
        self._mark_copying(movie_id, dest, fields)
        make_folders(dest.parent, ownership)
        try:
            result = write_partial(source, dest, ownership, stop=self.stop, progress=self.progress)
        except DestinationExists:
            return leftovers.adopt_existing(self.journal, movie_id, source, dest)
        except BaseException:
            self.journal.update_movie(movie_id, state=j.MATCHED)
            raise
        return Pending(movie_id, source, dest, result)

    def finish(self, pending: Pending) -> bool:
        """Publish a Pending copy; same answer as `copy`."""
        try:
            finish_partial(pending.dest, pending.result.partial)
        except DestinationExists:
            return leftovers.adopt_existing(
                self.journal, pending.movie_id, pending.source, pending.dest
            )
        except BaseException:
            self.journal.update_movie(pending.movie_id, state=j.MATCHED)
            raise
        self._record_copy(pending.movie_id, pending.result)
        return True

    def _mark_copying(self, movie_id: int, dest: Path, fields: dict[str, object]) -> None:
        fields.update(state=j.COPYING, dest_path=str(dest), copy_started_at=time.time())
        q.mark_copying(self.journal, movie_id, fields)

    def copy(
        self, movie_id: int, source: Path, dest: Path, ownership: Ownership, **fields: object
    ) -> bool:
        """Copy and publish. True when the destination now holds the source's bytes
        (state COPIED, or VERIFIED when an identical copy was already there). False when the
        destination holds DIFFERENT bytes: the caller decides (quarantine). `fields` are
        recorded in the same journal write that marks the copy as started."""
        self._mark_copying(movie_id, dest, fields)
        make_folders(dest.parent, ownership)
        try:
            result = copy_path(source, dest, ownership, stop=self.stop, progress=self.progress)
        except DestinationExists:
            return leftovers.adopt_existing(self.journal, movie_id, source, dest)
        except BaseException:
            # Nothing published; back to "matched" so the next pass tries again.
            self.journal.update_movie(movie_id, state=j.MATCHED)
            raise
        self._record_copy(movie_id, result)
        return True

    def _record_copy(self, movie_id: int, result: CopyResult) -> None:
        self.journal.update_movie(
            movie_id,
            state=j.COPIED,
            size=result.size,
            hash=result.hash,
            source_mtime_ns=result.source_mtime_ns,
            buffer_mtime_ns=result.source_mtime_ns,  # the copy carries its source's mtime
            manifest=json.dumps(result.manifest) if result.manifest else None,
            buffer_visible_at=time.time(),
        )

    # ---- step 2: reread --------------------------------------------------------------------
    def reread(self, movie_id: int, *, record: bool = True) -> float:
        """Re-read the published copy from the device. Returns the time it was verified; with
        record=False the caller writes that together with its next step (one journal commit
        fewer: a crash before that commit simply verifies again)."""
        movie = self.journal.movie(movie_id)
        dest = movie.dest
        # A stop ends the re-read (CopyAborted): the row stays copied, the published copy
        # whole, the camera copy kept; the next start re-reads it (recover).
        size, digest = hash_path(dest, drop_cache=True, stop=self.stop)
        if (size, digest) != (movie.size, movie.hash):
            # Our copy is bad and the source is intact: discard the copy, retry later.
            self.journal.event(
                "verify_failed",
                movie_id=movie_id,
                camera=movie.camera,
                detail=f"{dest}: {digest} != {movie.hash}",
            )
            remove_tree_quietly(dest)
            self.journal.update_movie(
                movie_id, state=j.MATCHED, reason=f"verification failed at {time.ctime()}"
            )
            raise VerificationFailed(f"{dest} re-read as {digest}, copied as {movie.hash}")
        verified_at = time.time()
        if record:
            self.journal.update_movie(movie_id, state=j.VERIFIED, verified_at=verified_at)
        return verified_at

    # ---- step 3: remove the source ---------------------------------------------------------
    def remove_source(
        self,
        movie_id: int,
        final_state: str,
        *,
        verified_at: float | None = None,
        event: str | None = None,
    ) -> None:
        """Remove the camera copy of a verified movie, then record the final state (and the
        verification time and an event, when given) in one transaction."""
        movie = self.journal.movie(movie_id)
        source = movie.source
        fields: dict[str, object] = {"state": final_state, "source_removed_at": time.time()}
        if verified_at is not None:
            fields["verified_at"] = verified_at
        if os.path.lexists(source):
            # The copy's journal record (hash, destination) must be on the device before its
            # source goes; recovery after a power cut relies on it.
            self.journal.make_durable()
            if movie.kind == "dir":
                source_removal.remove_copied_members(source, movie.members)
            elif not source_removal.remove_camera_file(self.journal, movie, source, fields):
                return
            # No fsync of the camera folder: were the unlink lost in a power cut, the movie
            # would reappear on the camera, find its identical copy and simply go again.
        with self.journal.transaction():
            self.journal.update_movie(movie_id, **fields)
            if event is not None:
                self.journal.event(
                    event,
                    movie_id=movie_id,
                    camera=movie.camera,
                    nbytes=movie.size,
                    detail=str(movie.dest_path),
                )

    def rename_aside(self, earlier: Path, aside: Path) -> None:
        """Rename a published copy to `aside` in its folder, never replacing a file, and make
        the new name durable (its row was made durable before)."""
        source_removal.rename_aside(earlier, aside)

    def copy_vanished(self, movie: Movie) -> bool:
        """A row whose published copy is gone (set aside before a crash, removed by hand)
        while the camera file is still there: copy it again. True when that was the case."""
        dest = Path(movie.dest_path or "")
        if os.path.lexists(dest) or not os.path.lexists(movie.source_path or ""):
            return False
        self.copy_again(movie.id, f"its copy {dest} is gone")
        return True

    def copy_again(self, movie_id: int, why: str) -> None:
        """Back to "matched": the next pass copies the camera file again, whole."""
        source_removal.copy_again(self.journal, movie_id, why)

    # ---- crash repair ----------------------------------------------------------------------
    def recover(self, movie: Movie) -> str:
        """Bring a row left mid-flight by a crash to a consistent state; returns what was done."""
        if movie.state in (j.SEEN, j.MATCHED, j.COPYING):
            if movie.dest_path:
                remove_partials(Path(movie.dest_path))
            if movie.state == j.COPYING:
                self.journal.update_movie(movie.id, state=j.MATCHED)
            if not os.path.lexists(movie.source_path or ""):
                return leftovers.source_gone(self.journal, movie)
            return "retry"
        if self.copy_vanished(movie):
            return "retry"
        verified_at = self.reread(movie.id, record=False) if movie.state == j.COPIED else None
        final = j.QUARANTINED if leftovers.in_quarantine(movie) else j.DONE
        self.remove_source(
            movie.id,
            final,
            verified_at=verified_at,
            event="quarantined" if final == j.QUARANTINED else "ingested",
        )
        return "finished"
