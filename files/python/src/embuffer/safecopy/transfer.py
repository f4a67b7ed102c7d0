"""Move one journal row's file from a source to a destination without ever losing it.

The steps and the journal state written around each (see journal.py for the states):
  COPYING   -> copy to a partial name, hash in flight, fsync, publish       (verified_copy)
  COPIED    -> re-read the published copy from the device, compare hashes
  VERIFIED  -> remove the source, but only if it is still the file that was copied
  DONE / QUARANTINED
A crash between any two steps is repaired by `recover()`, which only ever finishes a step
or undoes a partial one: a source is never removed before its copy was verified.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from embuffer import journal as j
from embuffer.journal import Journal, Movie
from embuffer.journal import queries as q
from embuffer.safecopy import nofollow
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
from embuffer.safecopy.hashing import bytes_differing, hash_path, hash_tree
from embuffer.safecopy.partials import remove_partials

log = logging.getLogger("embuffer.transfer")


class VerificationFailed(Exception):
    pass


class SourceBusy(OSError):
    """The camera copy could not be removed because the camera software still holds it
    (a CIFS sharing violation reads as EACCES, EBUSY or ETXTBSY here). The buffer copy is
    verified and recorded; the removal is simply tried again later."""


class SourceRewritten(Exception):
    """The camera rewrote the file with other bytes after it was copied: the earlier copy is
    a movie of its own. The row is back to "matched" (the file is copied again); the caller
    moves the earlier copy, at `earlier`, out of the buffer root (to quarantine)."""

    def __init__(self, movie_id: int, earlier: Path, source: Path) -> None:
        super().__init__(f"{source} was rewritten after its copy; earlier copy at {earlier}")
        self.movie_id = movie_id
        self.earlier = earlier
        self.source = source


# An append rewrites a few bytes of what was there: an MRC header's nz and sizes, a TIFF
# IFD's link to the next page. More than this differing means other bytes, another movie.
APPEND_REWRITES_AT_MOST_BYTES = 64

# what a Windows share answers when the camera software still has the file open
BUSY_ERRNOS = (errno.EACCES, errno.EBUSY, errno.ETXTBSY, errno.EPERM)


@dataclass(frozen=True)
class Pending:
    """A copy written under its partial name, waiting for fsync and publish."""

    movie_id: int
    source: Path
    dest: Path
    result: CopyResult


@dataclass
class Transfer:
    """The copy/verify/remove-source machinery bound to one journal."""

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
            return self._adopt_existing(movie_id, source, dest)
        except BaseException:
            self.journal.update_movie(movie_id, state=j.MATCHED)
            raise
        return Pending(movie_id, source, dest, result)

    def finish(self, pending: Pending) -> bool:
        """Publish a Pending copy; same answer as `copy`."""
        try:
            finish_partial(pending.dest, pending.result.partial)
        except DestinationExists:
            return self._adopt_existing(pending.movie_id, pending.source, pending.dest)
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
            return self._adopt_existing(movie_id, source, dest)
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
            manifest=_manifest_json(result),
            buffer_visible_at=time.time(),
        )

    def _adopt_existing(self, movie_id: int, source: Path, dest: Path) -> bool:
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
            self.journal.update_movie(movie_id, state=j.MATCHED)
            return False
        stat = source.stat(follow_symlinks=False)
        self.journal.update_movie(
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
        self.journal.event("identical_exists", movie_id=movie_id, detail=str(dest))
        return True

    # ---- step 2: verify --------------------------------------------------------------------
    def verify(self, movie_id: int, *, record: bool = True) -> float:
        """Re-read the published copy from the device. Returns the time it was verified; with
        record=False the caller writes that together with its next step (one journal commit
        fewer: a crash before that commit simply verifies again)."""
        movie = self.journal.movie(movie_id)
        dest = movie.dest
        size, digest = hash_path(dest, drop_cache=True)
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
                _remove_copied_members(source, movie.members)
            elif not self._remove_camera_file(movie, source, fields):
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

    def _source_busy(self, movie: Movie, fields: dict[str, object], error: OSError) -> None:
        """Record the verification (so the retry does not re-read the copy) and say why the
        camera copy is still there."""
        verified = {"verified_at": fields["verified_at"]} if "verified_at" in fields else {}
        reason = f"camera still holds the file ({os.strerror(error.errno or 0)}); removal retried"
        with self.journal.transaction():
            first = movie.reason != reason  # one event per refusal, not one per retry
            self.journal.update_movie(movie.id, state=j.VERIFIED, reason=reason, **verified)
            if first:
                self.journal.event(
                    "source_busy",
                    movie_id=movie.id,
                    camera=movie.camera,
                    detail=str(movie.source_path),
                )
        raise SourceBusy(error.errno, f"{movie.source_path}: {reason}")

    def _source_rewritten(self, movie: Movie, new_size: int) -> None:
        """The camera appended to (or rewrote) the file after it was copied, so the copy on
        the buffer is an earlier state of it and must not stay under the final name. When the
        camera's file still holds all of it (an append: at most a header's counts or a page
        link rewritten), the earlier copy is removed; otherwise it is a movie of its own and
        SourceRewritten tells the caller to move it to quarantine. Either way the row goes
        back to "matched", so the next pass copies the file again, whole."""
        dest = movie.dest
        source = movie.source
        size = int(movie.size or 0)
        gone = not os.path.lexists(dest)  # moved to quarantine before a crash: nothing left
        appended = gone or (
            new_size >= size
            and bytes_differing(dest, source, APPEND_REWRITES_AT_MOST_BYTES)
            <= APPEND_REWRITES_AT_MOST_BYTES
        )
        if not appended:
            # the caller moves it to quarantine first, then calls `copy_again`; till then the
            # row keeps its state, so no pass can copy over the earlier copy's name
            self.journal.event(
                "source_changed",
                movie_id=movie.id,
                camera=movie.camera,
                detail=f"{source} rewritten with other bytes after its copy; the earlier "
                f"copy {dest} goes to quarantine",
            )
            raise SourceRewritten(movie.id, dest, source)
        outcome = "the earlier, shorter copy was removed from the buffer"
        detail = f"{source} changed after its copy ({size} -> {new_size} bytes); {outcome}"
        remove_tree_quietly(dest)
        self.copy_again(movie.id, outcome)
        with self.journal.transaction():
            self.journal.event(
                "source_changed", movie_id=movie.id, camera=movie.camera, detail=detail
            )
        log.warning("%s; it is copied again", detail)

    def _remove_camera_file(self, movie: Movie, source: Path, fields: dict[str, object]) -> bool:
        """Unlink the camera file if it still holds the bytes that were copied (through the
        folder's descriptor: a link swapped in for a folder redirects nothing). False when
        it was rewritten meanwhile (handled: the row is not finished)."""
        with nofollow.folder(source.parent) as folder_fd:
            current = os.stat(source.name, dir_fd=folder_fd, follow_symlinks=False)
            if current.st_size != movie.size or current.st_mtime_ns != movie.source_mtime_ns:
                self._source_rewritten(movie, current.st_size)
                return False
            try:
                os.unlink(source.name, dir_fd=folder_fd)
            except OSError as error:
                if error.errno not in BUSY_ERRNOS:
                    raise
                self._source_busy(movie, fields, error)
        return True

    def rename_aside(self, earlier: Path, aside: Path) -> None:
        """Rename a published copy to `aside` in its folder, never replacing a file, and make
        the new name durable (its row was made durable before)."""
        if earlier.parent != aside.parent:
            raise ValueError(f"{aside} is not beside {earlier}")
        with nofollow.folder(earlier.parent) as folder_fd:
            try:
                os.link(
                    earlier.name,
                    aside.name,
                    src_dir_fd=folder_fd,
                    dst_dir_fd=folder_fd,
                    follow_symlinks=False,
                )
            except FileExistsError:
                raise DestinationExists(str(aside)) from None
            os.unlink(earlier.name, dir_fd=folder_fd)
            os.fsync(folder_fd)

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
        self.journal.update_movie(
            movie_id,
            state=j.MATCHED,
            size=None,
            hash=None,
            verified_at=None,
            buffer_visible_at=None,
            reason=f"source changed after copy; {why}; copied again",
        )

    # ---- crash repair ----------------------------------------------------------------------
    def _source_gone(self, movie: Movie) -> str:
        """The camera copy is gone but the journal never recorded our copy as verified. If
        a published copy sits at the destination (the crash came between publishing and the
        journal write, and someone removed the source meanwhile), keep it: hash it and hand it
        to the archive like any buffer movie, so it reaches primary before any purge."""
        dest = movie.dest if movie.dest_path else None
        if dest is not None and os.path.lexists(dest):
            size, digest = hash_path(dest, drop_cache=True)
            now = time.time()
            final = j.QUARANTINED if _in_quarantine(movie) else j.DONE
            self.journal.update_movie(
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
            self.journal.event(
                "recovered", movie_id=movie.id, camera=movie.camera, nbytes=size, detail=str(dest)
            )
            return "kept the published copy"
        self.journal.update_movie(
            movie.id, state=j.VANISHED, reason="source disappeared before it was copied"
        )
        return "vanished"

    def recover(self, movie: Movie) -> str:
        """Bring a row left mid-flight by a crash to a consistent state; returns what was done."""
        if movie.state in (j.SEEN, j.MATCHED, j.COPYING):
            if movie.dest_path:
                remove_partials(Path(movie.dest_path))
            if movie.state == j.COPYING:
                self.journal.update_movie(movie.id, state=j.MATCHED)
            if not os.path.lexists(movie.source_path or ""):
                return self._source_gone(movie)
            return "retry"
        if self.copy_vanished(movie):
            return "retry"
        verified_at = self.verify(movie.id, record=False) if movie.state == j.COPIED else None
        final = j.QUARANTINED if _in_quarantine(movie) else j.DONE
        self.remove_source(
            movie.id,
            final,
            verified_at=verified_at,
            event="quarantined" if final == j.QUARANTINED else "ingested",
        )
        return "finished"


def _in_quarantine(movie: Movie) -> bool:
    return bool(movie.target == "quarantine")


def _manifest_json(result: CopyResult) -> str | None:
    if not result.manifest:
        return None
    return json.dumps(result.manifest)


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


def _remove_copied_members(source: Path, members: list[tuple[str, int, str]]) -> None:
    """Remove exactly the files that were copied, then the folders they leave empty. Anything
    else that appeared meanwhile (or a symlink) stays, and so does its folder."""
    for relpath, size, _digest in members:
        member = source / relpath
        try:
            info = nofollow.lstat(member)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if info.st_size == size and stat.S_ISREG(info.st_mode):
            nofollow.remove(member)
    for root, dirs, _files in os.walk(source, topdown=False):
        for name in dirs:
            _rmdir_if_empty(Path(root) / name)
    _rmdir_if_empty(source)


def _rmdir_if_empty(folder: Path) -> None:
    try:
        with nofollow.folder(folder.parent) as parent_fd:
            os.rmdir(folder.name, dir_fd=parent_fd)  # refuses a link, and a folder not empty
    except OSError:
        pass
