"""The archive's second thread: fsync, publish and verify copies written by the first."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from pathlib import Path
from typing import Protocol

from embuffer.archive.movie_copy import ConflictOnPrimary, MovieCopier, Pending
from embuffer.journal import Movie
from embuffer.safecopy.copy import DestinationExists, finish_partial, remove_tree_quietly

log = logging.getLogger("embuffer.archive")


class RecordError(Protocol):
    """Archiver.record_error: the movie stays in the backlog, the error is reported."""

    def __call__(self, movie: Movie, error: Exception, *, backoff: bool = True) -> None: ...


class Finisher:
    def __init__(self, copier: MovieCopier, record_error: RecordError) -> None:
        self.copier = copier
        self.record_error = record_error
        self.queue: queue.Queue[Pending | None] = queue.Queue(maxsize=2)
        self.failed = threading.Event()
        self.conflicts = 0
        self.targets: set[Path] = set()  # submitted and not finished yet
        self.thread = threading.Thread(target=self._run, name="archive-finisher", daemon=True)
        self.thread.start()

    def submit(self, pending: Pending) -> None:
        self.targets.add(pending.target)
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
                self._finish(item)
            finally:
                self.targets.discard(item.target)
                self.queue.task_done()
        self.queue.task_done()

    def _finish(self, pending: Pending) -> None:
        movie, target, partial, identity = pending
        if self.failed.is_set():
            remove_tree_quietly(target.with_name(partial))
            return
        try:
            with contextlib.suppress(DestinationExists):
                finish_partial(target, partial)
            self.copier.verify_and_record(movie, target, identity)
        except ConflictOnPrimary as error:
            self.conflicts += 1
            self.record_error(movie, error, backoff=False)
        except OSError as error:
            self.failed.set()
            self.record_error(movie, error)
        except Exception as error:  # noqa: BLE001 - the finisher must not die (the pass would hang)
            self.failed.set()
            log.error("archive of %s failed: %r", movie.dest_path, error, exc_info=error)
            with contextlib.suppress(Exception):
                self.copier.journal.event(
                    "unexpected_error",
                    movie_id=movie.id,
                    detail=f"archive of {movie.dest_path}: {error!r}",
                )
