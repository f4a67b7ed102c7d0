"""Archive: buffer -> primary storage, same relative layout, verified; the buffer copy stays.

The backlog is every buffer movie whose primary copy is not verified yet, so whatever
arrived while the archive was down, paused or failing is simply still in the backlog; at
start (and every RECONCILE_SECONDS) files on the buffer that the journal does not know, for
example written by Leginon itself during an outage, are adopted: hashed and queued. A primary
store that is unreachable, read-only or full is retried with backoff and reported; a movie
is marked archived only after its primary copy was re-read from the device and compared.

This module is the pass loop; reconcile (adoption), movie_copy (one movie's copy and
record), finisher (the second thread that publishes and verifies) and pause do the rest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path

from embuffer.archive.compressed import sync_references
from embuffer.archive.finisher import Finisher
from embuffer.archive.movie_copy import ConflictOnPrimary, MovieCopier
from embuffer.archive.reconcile import Reconciler
from embuffer.config import Config
from embuffer.journal import Journal, Movie
from embuffer.journal import queries as q
from embuffer.leginon.db import Backoff
from embuffer.safecopy.copy import CopyAborted, Progress, SourceChanged

log = logging.getLogger("embuffer.archive")
RECONCILE_SECONDS = 3600.0
# a file found still being written is looked at again this soon
UNSETTLED_RECHECK_SECONDS = 60.0


class Archiver:
    def __init__(self, config: Config, journal: Journal, stop: threading.Event) -> None:
        assert config.archive.primary is not None
        self.config = config
        self.primary: Path = config.archive.primary
        self.journal = journal
        self.stop = stop
        self.backoff = Backoff(first=5.0, cap=300.0)
        self._interrupt = threading.Event()  # set by stop or by a pause seen mid-copy
        self.copier = MovieCopier(config, journal, stop, self._interrupt)
        self.reconciler = Reconciler(config, journal)

    @property
    def progress(self) -> Progress | None:
        """Bytes copied, for a progress bar."""
        return self.copier.progress

    @progress.setter
    def progress(self, progress: Progress | None) -> None:
        self.copier.progress = progress

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
                unsettled_seen = self.reconciler.unsettled_seen
                due = RECONCILE_SECONDS if not unsettled_seen else UNSETTLED_RECHECK_SECONDS
                if time.monotonic() - last_reconcile > due:
                    self.reconciler.unsettled_seen = False
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

    def reconcile(self) -> int:
        """Adopt files on the buffer that the journal does not know (reconcile.py)."""
        return self.reconciler.run()

    # ---- mirror --------------------------------------------------------------------------
    def mirror_backlog(self) -> bool:
        """Mirror the backlog. Copies are pipelined: while one movie is flushed, published
        and re-read on primary (second thread), the next is already being copied."""
        clean = True
        sessions: set[Path] = set()
        finisher = Finisher(self.copier, self.record_error)
        try:
            for movie in q.backlog_movies(self.journal):
                if self.stop.is_set() or self.paused() or finisher.failed.is_set():
                    clean = False
                    break
                if self.copier.primary_path_for(movie) in finisher.targets:
                    finisher.drain()  # two journal rows for one buffer file: one at a time
                if not os.path.lexists(movie.dest_path or ""):
                    # one row that cannot be read must not hold back every later movie
                    self.skip(movie, f"buffer copy {movie.dest_path} is missing")
                    clean = False
                    continue
                try:
                    pending = self.copier.start(movie)
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
