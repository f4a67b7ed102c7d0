"""The verifier threads of one camera: publish, re-read and release finished copies.

The camera thread copies a movie to its partial name and hands it over here, so verifying
one movie overlaps copying the next (VERIFIER_THREADS of them, so one movie's flush overlaps
another's re-read). A verifier publishes the copy, re-reads it from the device, and removes
the camera copy (transfer.py does each step). No verifier dies of one movie: a step that
fails is retried later (a camera file still held open, an I/O error, a bug), counted against
the file (holds.py), and the verifier goes on with the next movie.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from embuffer import journal as j
from embuffer.ingest.holds import FailureTracker, retry_delay
from embuffer.ingest.room import QUARANTINE_WAITS, record_wait
from embuffer.ingest.rows import CameraRows
from embuffer.journal import JournalReplaced
from embuffer.safecopy import nofollow
from embuffer.safecopy.hashing import CopyAborted
from embuffer.safecopy.partials import PARTIAL_SUFFIX
from embuffer.safecopy.space import NoRoom
from embuffer.safecopy.transfer import (
    Pending,
    SourceBusy,
    SourceRewritten,
    VerificationFailed,
)

log = logging.getLogger("embuffer.verifiers")

VERIFIER_THREADS = 2
# a camera copy the camera software still holds open is tried again this soon (at most)
BUSY_RETRY_CAP_SECONDS = 60.0
# refusals of a removal past this many count as failures of the file (and so end in a hold):
# a busy file is released by the camera within minutes; a permission problem never is
BUSY_TRIES_BEFORE_COUNTING = 20

Unexpected = Callable[[Path | None, Exception, str], None]


class Verifiers:
    def __init__(
        self,
        rows: CameraRows,
        failures: FailureTracker,
        unexpected: Unexpected,
        stop_service: threading.Event,
    ) -> None:
        self.rows = rows
        self.camera = rows.camera
        self.journal = rows.journal
        self.transfer = rows.transfer
        self.failures = failures
        self.unexpected = unexpected
        self.stop_service = stop_service
        self.queue: queue.Queue[Pending | int | None] = queue.Queue()
        self._lock = threading.Lock()
        self._held: set[int] = set()  # queued, being handled, or waiting for a retry
        self._retries: list[tuple[float, int]] = []  # (monotonic due time, movie id)
        self._busy_tries: dict[int, int] = {}
        self._threads: list[threading.Thread] = []

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._loop, name=f"verify-{self.camera}-{n}", daemon=True)
            for n in range(VERIFIER_THREADS)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Let the verifiers finish everything queued, then end them."""
        for _ in self._threads:
            self.queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def submit(self, item: Pending | int) -> None:
        with self._lock:
            self._held.add(item.movie_id if isinstance(item, Pending) else item)
        self.queue.put(item)

    def has(self, movie_id: int) -> bool:
        with self._lock:
            return movie_id in self._held

    def pending_retries(self) -> int:
        with self._lock:
            return len(self._retries)

    def requeue_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [movie_id for at, movie_id in self._retries if at <= now]
            self._retries = [(at, movie_id) for at, movie_id in self._retries if at > now]
        for movie_id in due:
            self.queue.put(movie_id)

    def drain(self) -> None:
        """Handle everything queued in this thread (one-shot commands)."""
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self.verify(item)

    def _loop(self) -> None:
        while (item := self.queue.get()) is not None:
            try:
                self.verify(item)
            except JournalReplaced as error:
                # nothing irreversible may follow: the whole service stops (cli/ exits 74)
                log.critical("%s", error)
                self.stop_service.set()
                return
            except Exception as error:  # noqa: BLE001 - the last line of defence: go on
                log.error("verifier step failed: %r; its row is taken up again", error)

    # ---- one movie -----------------------------------------------------------------------
    def verify(self, item: Pending | int) -> None:
        movie_id = item.movie_id if isinstance(item, Pending) else item
        done = True  # False: the movie stays with the verifiers (a retry is scheduled)
        try:
            try:
                done = self._publish_verify_remove(item, movie_id)
            except SourceRewritten as rewritten:
                self.set_aside_earlier_copy(rewritten)
            except CopyAborted:
                # the service is stopping: the copy is published and whole, its re-read
                # and the camera copy's removal wait for the next start (recover)
                log.info("stopping: movie %d is verified at the next start", movie_id)
            except SourceBusy as busy:
                done = self._busy(movie_id, busy)
            except (OSError, VerificationFailed) as error:
                self.journal.event(
                    "error", movie_id=movie_id, camera=self.camera, detail=str(error)
                )
                log.error("verify of movie %d failed: %s; the camera copy is kept", movie_id, error)
                done = self._after_failure(movie_id, error)
            except Exception as error:  # noqa: BLE001 - a verifier must not die of one file
                source = self._source_of(movie_id)
                self.unexpected(Path(source) if source else None, error, "verify")
                done = self._after_failure(movie_id, error, counted=True)
        except Exception as error:  # noqa: BLE001 - a handler itself failed (journal, disk)
            log.error("handling the failure of movie %d failed: %r; retried", movie_id, error)
            self._retry_later(movie_id, retry_delay(3))
            done = False
        finally:
            if done:
                with self._lock:
                    self._busy_tries.pop(movie_id, None)
                    self._held.discard(movie_id)

    def _publish_verify_remove(self, item: Pending | int, movie_id: int) -> bool:
        if isinstance(item, Pending) and not self.transfer.finish(item):
            self.quarantine(movie_id, f"a different file already exists at {item.dest}")
            return True
        movie = self.journal.movie(movie_id)
        if movie.state not in (j.COPIED, j.VERIFIED):
            return True  # undone meanwhile (a rewritten source, a failed step): ingest again
        if self.transfer.copy_vanished(movie):
            return True  # the copy is gone, the camera file is there: the next pass copies
        verified_at = None
        if movie.state == j.COPIED:
            verified_at = self.transfer.reread(movie_id, record=False)
        quarantined = movie.target == "quarantine"
        final, event = (j.QUARANTINED, "quarantined") if quarantined else (j.DONE, "ingested")
        self.transfer.remove_source(movie_id, final, verified_at=verified_at, event=event)
        movie = self.journal.movie(movie_id)
        if movie.state == final:
            self.failures.succeeded(str(movie.source_path))
            # both names come from outside (camera share, leginondb filename): quoted, escaped
            log.info(
                "%s %r -> %r (%d bytes, xxh3-128 %s, verified)",
                event,
                movie.source_path,
                movie.dest_path,
                movie.size or 0,
                movie.hash,
            )
        return True

    def _busy(self, movie_id: int, busy: SourceBusy) -> bool:
        with self._lock:
            tries = self._busy_tries.get(movie_id, 0) + 1
            self._busy_tries[movie_id] = tries
        if tries > BUSY_TRIES_BEFORE_COUNTING:
            source = self._source_of(movie_id)
            if source:
                self.failures.failed(source, f"camera copy cannot be removed: {busy}")
        self._retry_later(movie_id, min(BUSY_RETRY_CAP_SECONDS, retry_delay(tries)))
        if tries == 1:
            log.warning("%s; the buffer copy is verified, removal retried", busy)
        return False

    def _after_failure(self, movie_id: int, error: Exception, *, counted: bool = False) -> bool:
        """A verifier step failed: if the row still waits for a verifier step (copied or
        verified), retry it later; else the next pass copies the file again."""
        source = self._source_of(movie_id)
        if source and not counted:
            self.failures.failed(source, f"verify: {type(error).__name__}: {error}")
        state = self.journal.movie(movie_id).state
        if state in (j.COPIED, j.VERIFIED):
            failures = self.failures.failures(source) if source else 1
            self._retry_later(movie_id, retry_delay(max(1, failures)))
            return False
        return True

    def _retry_later(self, movie_id: int, delay: float) -> None:
        with self._lock:
            self._retries.append((time.monotonic() + delay, movie_id))

    def _source_of(self, movie_id: int) -> str | None:
        try:
            return str(self.journal.movie(movie_id).source_path)
        except Exception:  # noqa: BLE001 - the journal is what failed: no name to give
            return None

    # ---- quarantine ----------------------------------------------------------------------
    def quarantine(self, movie_id: int, reason: str) -> None:
        try:
            self.rows.quarantine(movie_id, reason)
        except NoRoom as no_room:
            # quarantine stops at the reserve (quarantine.py): the file waits on the camera
            # share for room, as intake's own waits do; no failure of the file's
            movie = self.journal.movie(movie_id)
            wait = QUARANTINE_WAITS + str(no_room)
            record_wait(self.rows, movie_id, wait, movie.source, movie.size or 0)
            log.warning("%r: %s", movie.source_path, wait)

    def set_aside_earlier_copy(self, rewritten: SourceRewritten) -> None:
        """The camera rewrote a file with other bytes after its copy: the earlier copy is a
        movie of its own. It is renamed aside first (a name no scan or adoption takes), with
        its row written before, so that the final name is free for the camera file's new
        copy; then it moves, verified, to quarantine. A crash at any point leaves a row that
        recover() finishes, and the earlier copy never under the final name nor lost."""
        reason = (
            f"earlier copy of {rewritten.source}: the camera rewrote that file with other "
            "bytes after this was copied"
        )
        aside = free_aside_name(rewritten.earlier)
        earlier_id = self.rows.open(str(aside), "file", target="quarantine", reason=reason)
        self.journal.make_durable()  # the row before the rename: the copy is never unknown
        self.transfer.rename_aside(rewritten.earlier, aside)
        self.transfer.copy_again(rewritten.movie_id, "the earlier copy goes to quarantine")
        self.quarantine(earlier_id, reason)


def free_aside_name(earlier: Path) -> Path:
    """`.<name>.earlier-<n>.embuffer-partial` beside it: hidden, and a partial name, so that
    neither the archive's adoption nor a scan takes it for a movie of its own."""
    for n in itertools.count(1):
        aside = earlier.with_name(f".{earlier.name}.earlier-{n}{PARTIAL_SUFFIX}")
        if not nofollow.lexists(aside):
            return aside
    raise AssertionError("unreachable")
