"""Ingest: one worker per camera source, camera share -> buffer, verified.

Each camera runs in its own thread with its own database connection, so a slow or hung CIFS
share stalls only its own camera. Verifier threads (VERIFIER_THREADS per camera) re-read
finished copies, so verifying one movie overlaps copying the next. This module runs the
passes over the camera folder and takes each file through them: settled (settle.py), a name
that can be stored (odd_names.py), its frames all there (frame_count.py); what happens to a
settled file is decided in intake.py, and the irreversible steps live in transfer.py.

No thread of a camera dies of one file: an exception nobody foresaw is logged with the file
it concerns, counted (`unexpected_error` events), and the file is retried later while the
camera goes on with the next one; a file that keeps failing is held on the camera share
(holds.py). Anything that escapes even that ends the thread, and the service then exits
non-zero so that systemd restarts it (cli/).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from embuffer import journal as j
from embuffer.config import CameraConfig, Config
from embuffer.ingest.frame_count import FrameCountWait
from embuffer.ingest.holds import FailureTracker
from embuffer.ingest.intake import Intake
from embuffer.ingest.odd_names import odd_name_problem, printable, quarantine_odd_name
from embuffer.ingest.placing import Placements
from embuffer.ingest.recovery import recover_camera
from embuffer.ingest.rows import CameraRows
from embuffer.ingest.scan import Candidate, list_candidates
from embuffer.ingest.settle import SettleTracker
from embuffer.ingest.verifiers import Verifiers
from embuffer.journal import Journal
from embuffer.journal import queries as q
from embuffer.leginon.credentials import read_credentials
from embuffer.leginon.db import Backoff, DatabaseUnavailable, LeginonDB
from embuffer.leginon.frame_paths import register_outage_sessions
from embuffer.safecopy import nofollow
from embuffer.safecopy.copy import CopyAborted, SourceChanged
from embuffer.safecopy.transfer import Transfer

log = logging.getLogger("embuffer.ingest")
# how often the ingest records, for sessions placed during an outage, the buffer frame path
REGISTRATION_SECONDS = 60.0


@dataclass
class PassResult:
    handled: int = 0
    waiting: int = 0
    errors: list[str] = field(default_factory=list)


class CameraIngest:
    def __init__(
        self, config: Config, camera: CameraConfig, journal: Journal, stop: threading.Event
    ) -> None:
        self.config = config
        self.camera = camera
        self.journal = journal
        self.stop = stop
        self.db = LeginonDB(read_credentials(config.db_credentials))
        self.transfer = Transfer(journal, stop)
        self.rows = CameraRows(config, camera.host, journal, self.transfer)
        self.tracker = SettleTracker(
            camera.settle_seconds, camera.unstructured_settle_seconds, camera.grace_minutes * 60
        )
        self.backoff = Backoff()
        self.failures = FailureTracker(journal, camera.host)
        # copies waiting to be published, verified and released by the verifier threads
        self.verifiers = Verifiers(self.rows, self.failures, self._unexpected, stop)
        self._warned: set[str] = set()
        self._told: dict[str, str] = {}
        self._odd_folders_journaled: set[str] = set()
        self.frame_wait = FrameCountWait(camera, journal, self._tell)
        self.placements = Placements(config, camera.host, self.db, journal, self._tell)
        self.intake = Intake(
            camera, self.rows, self.db, self.verifiers, self.placements, self.frame_wait, self._tell
        )
        self._last_registration = 0.0

    # ---- lifecycle ---------------------------------------------------------------------
    def recover(self) -> None:
        """Finish or undo whatever a previous run of this camera left mid-flight."""
        recover_camera(self.camera, self.rows, self.verifiers)

    def run_forever(self) -> None:
        self.verifiers.start()
        self.recover()
        last_scan = 0.0
        candidates: list[Candidate] = []
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                if now - last_scan >= self.camera.poll_seconds:
                    candidates = list_candidates(self.camera.path, self._warned)
                    self.failures.forget_missing({str(c.path) for c in candidates})
                    last_scan = now
                self.run_pass(candidates, first_sight_ok=False)
                self.verifiers.requeue_due()
                self._housekeeping(now)
            except OSError as error:
                self._tell("scan", f"cannot read camera folder {self.camera.path}: {error}")
            except Exception as error:  # noqa: BLE001 - the camera must go on (module doc)
                self._unexpected(None, error, "camera pass")
                self.stop.wait(min(60.0, self.backoff.failed()))
            if not self.verifiers.alive():
                # nothing would ever be published: end, so that the service restarts (cli/)
                raise RuntimeError(f"the verifier threads of camera {self.camera.host} died")
            # Pending files are re-stated often so a file is picked up as soon as it settles.
            self.stop.wait(0.2)
        self.verifiers.stop()

    def _housekeeping(self, now: float) -> None:
        """Journal what the database lacks (once per gap), and after an outage record where
        the frames taken during it are (frame_paths.py)."""
        for what, assumed in self.db.take_new_gaps():
            self.journal.event(
                "schema_missing",
                camera=self.camera.host,
                detail=f"leginondb has no {what}: {assumed}",
            )
        if now - self._last_registration >= REGISTRATION_SECONDS:
            self._last_registration = now
            try:
                register_outage_sessions(self.db, self.journal, self.camera.host)
            except DatabaseUnavailable as error:
                log.warning("buffer frame paths not recorded yet: %s", error)

    def run_once(self) -> PassResult:
        self.verifiers.start()
        try:
            self.recover()
            candidates = list_candidates(self.camera.path, self._warned)
            result = self.run_pass(candidates, first_sight_ok=True)
            self._housekeeping(time.monotonic())
        finally:
            self.verifiers.stop()
        # steps to retry later (a camera file still held open): the next run takes them up
        result.waiting += self.verifiers.pending_retries()
        return result

    # ---- one pass over the folder ------------------------------------------------------
    def run_pass(self, candidates: list[Candidate], *, first_sight_ok: bool) -> PassResult:
        result = PassResult()
        if not self.backoff.ready():
            result.waiting = len(candidates)
            return result
        self._forget_gone(candidates)
        for candidate in candidates:
            if self.stop.is_set():
                break
            if not self.failures.ready(str(candidate.path)) or not self.placements.due(
                candidate.name
            ):
                result.waiting += 1  # failed or refused lately: not due yet
                continue
            try:
                taken = self._take(candidate, first_sight_ok=first_sight_ok)
                if taken:
                    result.handled += 1
                elif taken is False:
                    result.waiting += 1
            except DatabaseUnavailable as error:
                delay = self.backoff.failed()
                self.journal.event("db_error", camera=self.camera.host, detail=str(error))
                log.error("%s; files stay on the camera share, retry in %.0f s", error, delay)
                result.errors.append(str(error))
                break
            except (CopyAborted, SourceChanged) as error:
                log.info("copy of %r not finished: %s; will retry", candidate.name, error)
            except OSError as error:
                result.errors.append(f"{candidate.name}: {error}")
                self.journal.event(
                    "error", camera=self.camera.host, detail=f"{candidate.name!r}: {error}"
                )
                log.error(
                    "ingest %r failed: %s; it stays on the camera share", candidate.name, error
                )
                if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                    self.backoff.failed()
                    break
            except Exception as error:  # noqa: BLE001 - one bad file must not stop a camera
                result.errors.append(f"{candidate.name}: {error!r}")
                self._unexpected(candidate.path, error, "ingest")
        else:
            self.backoff.succeeded()
        return result

    def _forget_gone(self, candidates: list[Candidate]) -> None:
        names = {candidate.name for candidate in candidates}
        for name in list(self.tracker.watches):
            if name not in names:
                self.tracker.forget(name)
                self.frame_wait.forget(name)
                self.placements.forget(name)

    def _take(self, candidate: Candidate, *, first_sight_ok: bool) -> bool | None:
        """One candidate through this pass: True when it has left the camera share's queue,
        False while it waits, None when it vanished meanwhile."""
        watch = self.tracker.observe(candidate)
        if watch is None:
            return None
        if not self.tracker.is_settled(watch, first_sight_ok=first_sight_ok):
            if self.tracker.is_abandoned(watch):
                waiting_for = self.tracker.waiting_reason(watch)
                self.intake.quarantine_abandoned(candidate, watch, waiting_for)
                self.tracker.forget(candidate.name)
            return False
        problem = odd_name_problem(candidate.name)
        if problem is not None:  # before anything writes the name to the journal
            if not self._odd_name(candidate, problem):
                return False
            self.tracker.forget(candidate.name)
            return True
        if self.frame_wait.pending(candidate, watch):
            return False
        if not self.intake.handle(candidate, watch.first_seen_wall, watch=watch):
            return False
        self.tracker.forget(candidate.name)
        self.frame_wait.forget(candidate.name)
        return True

    def _unexpected(self, path: Path | None, error: Exception, step: str) -> None:
        """Log and count an exception nobody foresaw; the file (if any) is retried later and
        held after repeated failures (holds.py)."""
        what = f"{step} of {str(path)!r}" if path is not None else step
        detail = f"{what}: {type(error).__name__}: {error}"
        log.error("unexpected failure in %s; the camera goes on", detail, exc_info=error)
        try:
            self.journal.event("unexpected_error", camera=self.camera.host, detail=detail)
            if path is not None:
                self.failures.failed(str(path), f"{step}: {type(error).__name__}: {error}")
        except Exception as journal_error:  # noqa: BLE001 - logged; the file stays put
            log.error("cannot record the failure in the journal: %s", journal_error)

    def _odd_name(self, candidate: Candidate, problem: str) -> bool:
        """A camera file whose name cannot be stored or extended (odd_names.py)."""
        if candidate.is_dir:
            shown = printable(candidate.path)
            self._tell(str(candidate.path), f"folder {shown!r}: {problem}; left where it is")
            if shown not in self._odd_folders_journaled:
                self._odd_folders_journaled.add(shown)
                detail = f"folder {shown!r}: {problem}; left on the camera share"
                self.journal.event("unsafe_name", camera=self.camera.host, detail=detail)
            return False
        quarantine_odd_name(self.rows, candidate.path, problem)
        return True

    def retry_quarantined(self) -> tuple[int, int]:
        """Match quarantined files again; those that match now go to the buffer (verified)
        and leave quarantine. Returns (placed, still quarantined)."""
        placed = left = 0
        for movie in q.quarantined_movies(self.journal, self.camera.host):
            location = Path(movie.dest_path or "")
            if movie.kind == "sidecar" or not nofollow.lexists(location):
                continue
            original = Candidate(movie.source.name, location, movie.kind == "dir")
            if self.intake.handle(original, time.time(), retry=True):
                self.journal.update_movie(
                    movie.id, state=j.RELEASED, reason=f"{movie.reason}; released by retry"
                )
                placed += 1
            else:
                left += 1
        self.verifiers.drain()
        return placed, left

    def _tell(self, key: str, message: str) -> None:
        """Log a waiting/skip reason once per file, not once per poll."""
        if self._told.get(key) != message:
            self._told[key] = message
            log.warning("%s", message)
