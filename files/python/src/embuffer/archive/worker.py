"""Archive: buffer -> primary storage, same relative layout, verified; the buffer copy stays.

The backlog is every buffer movie whose primary copy is not verified yet, so whatever
arrived while the archive was down, paused or failing is simply still in the backlog; at
start (and every RECONCILE_SECONDS) files on the buffer that the journal does not know, for
example written by Leginon itself during an outage, are adopted: hashed and queued. A primary
store that is unreachable, read-only or full is retried with backoff and reported; a movie
is marked archived only after its primary copy was re-read from the device and compared.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import stat
import threading
import time
from pathlib import Path

from embuffer import journal as j
from embuffer.archive.compressed import copy_compressed, hash_compressed, sync_references
from embuffer.config import Config
from embuffer.journal import Journal, Movie
from embuffer.journal import queries as q
from embuffer.leginon.db import Backoff
from embuffer.safecopy import nofollow
from embuffer.safecopy.copy import (
    CopyAborted,
    DestinationExists,
    Ownership,
    Progress,
    SourceChanged,
    copy_path,
    finish_partial,
    make_folders,
    remove_tree_quietly,
    write_partial,
)
from embuffer.safecopy.formats import check_structure
from embuffer.safecopy.hashing import hash_path
from embuffer.safecopy.partials import is_partial_name

log = logging.getLogger("embuffer.archive")
RECONCILE_SECONDS = 3600.0
# a file found still being written is looked at again this soon
UNSETTLED_RECHECK_SECONDS = 60.0


def pause(journal: Journal, reason: str) -> bool:
    """Pause the archive durably; False when it was already paused for this reason."""
    current = journal.get_setting(q.ARCHIVE_PAUSE_KEY)
    if current and current.get("reason") == reason:
        return False  # keep the original start time
    journal.set_setting(
        q.ARCHIVE_PAUSE_KEY,
        {
            "reason": reason,
            "since": time.time(),
            "by": os.environ.get("SUDO_USER") or os.environ.get("USER"),
        },
    )
    journal.event("archive_paused", detail=reason)
    log.warning("archive paused: %s", reason)
    return True


def resume(journal: Journal) -> bool:
    if journal.get_setting(q.ARCHIVE_PAUSE_KEY) is None:
        return False
    journal.delete_setting(q.ARCHIVE_PAUSE_KEY)
    journal.event("archive_resumed")
    log.info("archive resumed")
    return True


def session_of(rel_path: str) -> str | None:
    """Leginon keeps a session's frames in `<...>/<session>/rawdata/`."""
    parts = Path(rel_path).parts[:-1]
    if len(parts) >= 2 and parts[-1] == "rawdata":
        return parts[-2]
    return parts[-1] if parts else None


class Archiver:
    def __init__(self, config: Config, journal: Journal, stop: threading.Event) -> None:
        assert config.archive.primary is not None
        self.config = config
        self.primary: Path = config.archive.primary
        self.journal = journal
        self.stop = stop
        self.backoff = Backoff(first=5.0, cap=300.0)
        self._interrupt = threading.Event()  # set by stop or by a pause seen mid-copy
        self.progress: Progress | None = None  # bytes copied, for a progress bar
        self._unsettled_seen = False  # reconcile met a file still being written

    # ---- service loop --------------------------------------------------------------------
    def run_forever(self) -> None:
        watcher = threading.Thread(target=self._watch_pause, daemon=True)
        watcher.start()
        last_reconcile = 0.0
        while not self.stop.is_set():
            if self.paused():
                self.stop.wait(1.0)
                continue
            try:
                due = RECONCILE_SECONDS if not self._unsettled_seen else UNSETTLED_RECHECK_SECONDS
                if time.monotonic() - last_reconcile > due:
                    self._unsettled_seen = False
                    self.reconcile()
                    last_reconcile = time.monotonic()
                if self.backoff.ready():
                    self.mirror_backlog()
            except Exception as error:  # noqa: BLE001 - logged, counted, retried after a pause
                delay = self.backoff.failed()
                log.error("archive pass failed: %r; retry in %.0f s", error, delay, exc_info=error)
                with contextlib.suppress(Exception):
                    self.journal.event("unexpected_error", detail=f"archive pass: {error!r}")
            self.stop.wait(self.config.archive.poll_seconds)

    def run_once(self) -> bool:
        """Mirror everything ready now. True when nothing is left behind."""
        if self.paused():
            log.warning(
                "archive is paused (%s); nothing mirrored",
                self.journal.get_setting(q.ARCHIVE_PAUSE_KEY).get("reason"),
            )
            return True
        self.reconcile()
        return self.mirror_backlog()

    def paused(self) -> bool:
        return self.journal.get_setting(q.ARCHIVE_PAUSE_KEY) is not None

    def _watch_pause(self) -> None:
        journal = Journal(self.journal.path)  # its own connection for this thread
        while not self.stop.is_set():
            if journal.get_setting(q.ARCHIVE_PAUSE_KEY) is not None:
                self._interrupt.set()
            self.stop.wait(1.0)
        self._interrupt.set()

    # ---- reconcile: adopt what the journal does not know ---------------------------------
    def reconcile(self) -> int:
        root = self.config.buffer_root
        known = q.known_rel_paths(self.journal.db)
        adopted = 0
        with nofollow.folder(root) as root_fd:
            # descriptor-based walk: a folder swapped for a link meanwhile is not entered
            for folder, dirs, files, folder_fd in os.fwalk(".", dir_fd=root_fd):
                dirs[:] = [d for d in dirs if d != "references" and not is_partial_name(d)]
                here = Path(os.path.normpath(root / folder))
                for name in list(dirs):
                    if name.endswith(".frames"):
                        dirs.remove(name)  # a DE movie folder is one movie
                        adopted += self._adopt(here / name, root, known, is_dir=True)
                for name in files:
                    info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
                    if not is_partial_name(name) and stat.S_ISREG(info.st_mode):
                        adopted += self._adopt(here / name, root, known, is_dir=False)
        if adopted:
            log.info(
                "adopted %d file(s) found on the buffer that the journal did not know", adopted
            )
        return adopted

    def _adopt(self, path: Path, root: Path, known: set[str], *, is_dir: bool) -> int:
        rel = str(path.relative_to(root))
        if rel in known:
            return 0
        try:
            if not self._settled(path, is_dir=is_dir):
                return 0  # still being written (by Leginon in an outage, say): next pass
            info = nofollow.lstat(path)
            size, digest = hash_path(path)
            if nofollow.lstat(path).st_mtime_ns != info.st_mtime_ns:
                return 0  # written to while it was hashed
        except OSError as error:
            log.error("cannot adopt %s: %s", path, error)
            return 0
        now = time.time()
        movie_id = self.journal.insert_movie(
            camera="adopted",
            kind="dir" if is_dir else "file",
            state=j.DONE,
            target="buffer",
            size=size,
            hash=digest,
            dest_path=str(path),
            rel_path=rel,
            uid=info.st_uid,
            gid=info.st_gid,
            session_name=session_of(rel),
            first_seen=now,
            closed_at=info.st_mtime,
            buffer_visible_at=info.st_mtime,
            # A file found on the buffer has been there since it was last written (a
            # migration from the legacy tools, frames Leginon wrote here in an outage): its
            # age for purge counts from then, not from today (purge.py names which was used).
            verified_at=min(now, info.st_mtime),
            buffer_mtime_ns=info.st_mtime_ns,  # what purge re-checks before removing it
        )
        self.journal.event("adopted", movie_id=movie_id, nbytes=size, detail=str(path))
        known.add(rel)
        return 1

    def _settled(self, path: Path, *, is_dir: bool) -> bool:
        """The ingest's rule for a file nobody copied: unchanged for the longest settle
        window of any camera; one whose structure says incomplete, for the grace period
        (then it is taken as it is, as the ingest quarantines an abandoned movie whole)."""
        cameras = self.config.cameras
        window = max((c.unstructured_settle_seconds for c in cameras), default=30.0)
        newest = nofollow.lstat(path).st_mtime
        if is_dir:
            for member in nofollow.regular_files(path):
                newest = max(newest, nofollow.lstat(path / member).st_mtime)
        unchanged = time.time() - newest
        if unchanged >= window and (is_dir or check_structure(path).complete is not False):
            return True
        grace = max((c.grace_minutes * 60 for c in cameras), default=1200.0)
        if unchanged >= max(window, grace):
            return True
        self._unsettled_seen = True  # look again soon, not at the next hourly reconcile
        return False

    # ---- mirror --------------------------------------------------------------------------
    def mirror_backlog(self) -> bool:
        """Mirror the backlog. Copies are pipelined: while one movie is flushed, published
        and re-read on primary (second thread), the next is already being copied."""
        clean = True
        sessions: set[Path] = set()
        finisher = _Finisher(self)
        try:
            for movie in q.backlog_movies(self.journal):
                if self.stop.is_set() or self.paused() or finisher.failed.is_set():
                    clean = False
                    break
                if self.primary_path_for(movie) in finisher.targets:
                    finisher.drain()  # two journal rows for one buffer file: one at a time
                if not os.path.lexists(movie.dest_path or ""):
                    # one row that cannot be read must not hold back every later movie
                    self.skip(movie, f"buffer copy {movie.dest_path} is missing")
                    clean = False
                    continue
                try:
                    pending = self.start(movie)
                    if pending is not None:
                        finisher.submit(pending)
                    sessions.add(movie.dest.parent)
                except CopyAborted:
                    clean = False
                    break
                except SourceChanged as error:
                    self.skip(movie, f"buffer copy changed while it was archived ({error})")
                    clean = False
                except ConflictOnPrimary as error:
                    self.record_error(movie, error, backoff=False)
                    clean = False
                except OSError as error:
                    self.record_error(movie, error)
                    clean = False
                    break
        finally:
            finisher.close()
        if finisher.failed.is_set() or finisher.conflicts:
            clean = False
        for folder in sessions:
            try:
                sync_references(folder, self.config.buffer_root, self.primary)
            except OSError as error:
                log.error("references of %s not mirrored: %s", folder, error)
                clean = False
        return clean

    def skip(self, movie: Movie, why: str) -> None:
        """A movie this pass cannot archive for a reason of its own: marked, counted (an
        alert fires), and the pass goes on with the next one; retried every pass."""
        if movie.archive_error != why:  # once per reason, not once per pass
            self.journal.update_movie(movie.id, archive_error=why)
            self.journal.event("archive_skipped", movie_id=movie.id, detail=why)
            log.error("archive of %s skipped: %s", movie.dest_path, why)

    def record_error(self, movie: Movie, error: Exception, *, backoff: bool = True) -> None:
        """Never counted as done: the movie stays in the backlog, the error is reported."""
        self.journal.update_movie(movie.id, archive_error=str(error))
        self.journal.event("archive_error", movie_id=movie.id, detail=str(error))
        if backoff:
            delay = self.backoff.failed()
            log.error("archive of %s failed: %s; retry in %.0f s", movie.dest_path, error, delay)
        else:
            log.error("archive of %s skipped: %s", movie.dest_path, error)

    def start(self, movie: Movie) -> tuple[Movie, Path, str] | None:
        """Copy a movie to its partial name on primary; returns what the finisher must publish
        and verify, or None when it was handled completely here (folders, bz2, existing)."""
        if not self.primary.is_dir():
            raise FileNotFoundError(f"primary storage {self.primary} is not available")
        if movie.kind == "dir" or self._compressed(movie):
            self.mirror(movie)
            return None
        target = self.primary_path_for(movie)
        ownership = Ownership(movie.uid, movie.gid, self.config.file_mode, self.config.dir_mode)
        make_folders(target.parent, ownership)
        self._interrupt.clear()
        try:
            result = write_partial(
                movie.dest,
                target,
                ownership,
                stop=_either(self.stop, self._interrupt),
                progress=self.progress,
            )
        except DestinationExists:
            self.verify_and_record(movie, target)
            return None
        return movie, target, result.partial

    def primary_path_for(self, movie: Movie) -> Path:
        path = self.primary / str(movie.rel_path)
        if self._compressed(movie):
            path = path.with_name(path.name + ".bz2")
        return path

    def _compressed(self, movie: Movie) -> bool:
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
        interrupt = _either(self.stop, self._interrupt)
        self._interrupt.clear()
        # DestinationExists: verified below (identical is adopted, different is an error)
        with contextlib.suppress(DestinationExists):
            if self._compressed(movie):
                copy_compressed(source, target, ownership, stop=interrupt)
            else:
                copy_path(source, target, ownership, stop=interrupt, progress=self.progress)
        self.verify_and_record(movie, target)

    def verify_and_record(self, movie: Movie, target: Path) -> None:
        """Re-read the primary copy from the device; only an equal one counts as archived."""
        if self._compressed(movie):
            size, digest = hash_compressed(target)
        else:
            size, digest = hash_path(target, drop_cache=True)
        if (size, digest) != (movie.size, movie.hash):
            raise ConflictOnPrimary(
                f"{target} holds different bytes ({digest}) than the buffer copy "
                f"({movie.hash}); not overwritten, resolve by hand"
            )
        with self.journal.transaction():
            self.journal.update_movie(
                movie.id,
                primary_path=str(target),
                primary_hash=digest,
                primary_size=size if nofollow.is_folder(target) else nofollow.lstat(target).st_size,
                primary_verified_at=time.time(),
                archive_error=None,
            )
            self.journal.event(
                "archived",
                movie_id=movie.id,
                camera=movie.camera,
                nbytes=movie.size,
                detail=str(target),
            )
        log.info("archived %s -> %s (verified)", movie.dest_path, target)


class ConflictOnPrimary(OSError):
    """Primary already holds different bytes under this name; never overwritten."""


class _Finisher:
    """The archive's second thread: fsync, publish and verify copies written by the first."""

    def __init__(self, archiver: Archiver) -> None:
        self.archiver = archiver
        self.queue: queue.Queue[tuple[Movie, Path, str] | None] = queue.Queue(maxsize=2)
        self.failed = threading.Event()
        self.conflicts = 0
        self.targets: set[Path] = set()  # submitted and not finished yet
        self.thread = threading.Thread(target=self._run, name="archive-finisher", daemon=True)
        self.thread.start()

    def submit(self, pending: tuple[Movie, Path, str]) -> None:
        self.targets.add(pending[1])
        self.queue.put(pending)

    def drain(self) -> None:
        """Wait until everything submitted so far is finished."""
        self.queue.join()

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            try:
                self._finish(*item)
            finally:
                self.targets.discard(item[1])
                self.queue.task_done()
        self.queue.task_done()

    def _finish(self, movie: Movie, target: Path, partial: str) -> None:
        if self.failed.is_set():
            remove_tree_quietly(target.with_name(partial))
            return
        try:
            with contextlib.suppress(DestinationExists):
                finish_partial(target, partial)
            self.archiver.verify_and_record(movie, target)
        except ConflictOnPrimary as error:
            self.conflicts += 1
            self.archiver.record_error(movie, error, backoff=False)
        except OSError as error:
            self.failed.set()
            self.archiver.record_error(movie, error)
        except Exception as error:  # noqa: BLE001 - the finisher must not die (the pass would hang)
            self.failed.set()
            log.error("archive of %s failed: %r", movie.dest_path, error, exc_info=error)
            with contextlib.suppress(Exception):
                self.archiver.journal.event(
                    "unexpected_error",
                    movie_id=movie.id,
                    detail=f"archive of {movie.dest_path}: {error!r}",
                )


def _either(first: threading.Event, second: threading.Event) -> threading.Event:
    """An event view that is set when either is (copy loops check `is_set()` only)."""

    class Either(threading.Event):
        def is_set(self) -> bool:
            return first.is_set() or second.is_set()

    return Either()
