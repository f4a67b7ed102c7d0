"""Ingest: one worker per camera source, camera share -> buffer, verified.

Each camera runs in its own thread with its own database connection, so a slow or hung CIFS
share stalls only its own camera. Verifier threads (VERIFIER_THREADS per camera) re-read
finished copies, so verifying one movie overlaps copying the next. This module runs the
passes over the camera folder and takes each file through them: settled (settle.py), a name
that can be stored (odd_names.py), its frames all there (frame_count.py); what happens to a
settled file is decided in intake.py, and the irreversible steps live in transfer.py.

A pass looks at new and pending files first, then, within a ration, at the files that were
on the share at the start and no earlier run judged (backlog.py) and at the settled files that
wait on the share (waiting.py): neither costs a new movie's time nor a request per file and
poll; what the camera costs leginondb and the share is counted (load.py).

No thread of a camera dies of one file: an exception nobody foresaw is logged with the file
it concerns, counted (`unexpected_error` events), and the file is retried later while the
camera goes on with the next one; a file that keeps failing is held on the camera share
(holds.py). Anything that escapes even that ends the thread, and the service then exits
non-zero so that systemd restarts it (cli/).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from embuffer import journal as j
from embuffer.config import CameraConfig, Config
from embuffer.ingest.backlog import Backlog
from embuffer.ingest.frame_count import FrameCountWait
from embuffer.ingest.holds import FailureTracker, concerns_whole_camera
from embuffer.ingest.intake import Intake
from embuffer.ingest.load import LoadRecorder, ShareOps
from embuffer.ingest.odd_names import odd_name_problem, printable, take_odd_name
from embuffer.ingest.placing import Placements
from embuffer.ingest.recovery import recover_camera, vanished_from_listing
from embuffer.ingest.rows import CameraRows
from embuffer.ingest.scan import Candidate, list_candidates
from embuffer.ingest.settle import SettleTracker, Watch
from embuffer.ingest.verifiers import Verifiers
from embuffer.ingest.waiting import BACKLOG_SECONDS_PER_PASS, LookRation, WaitingFiles
from embuffer.journal import Journal, Movie
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
        self.share = ShareOps()
        self.tracker = SettleTracker(
            camera.settle_seconds,
            camera.unstructured_settle_seconds,
            camera.grace_minutes * 60,
            ops=self.share,
        )
        self.waiting = WaitingFiles(journal, camera.host, camera.path, camera.grace_minutes * 60)
        self.waiting.restore(self.tracker)
        self.backlog = Backlog()
        self._waiting_first = False  # rationed passes take the two kinds of file in turn
        self.load = LoadRecorder(journal, camera.host, self.db, self.share)
        self._unlisted_rows: list[Movie] | None = None  # waiting rows to check at a listing
        self.backoff = Backoff()
        self.failures = FailureTracker(journal, camera.host)
        # copies waiting to be published, verified and released by the verifier threads
        self.verifiers = Verifiers(self.rows, self.failures, self._unexpected, stop)
        self._warned: set[str] = set()
        self._told: dict[str, str] = {}
        self._odd_folders: set[str] = set()  # odd folders journaled (once each)
        self.frame_wait = FrameCountWait(camera, journal, self._tell)
        self.placements = Placements(config, camera.host, self.db, journal, self._tell)
        self.intake = Intake(
            camera, self.rows, self.db, self.verifiers, self.placements, self.frame_wait, self._tell
        )
        self._last_registration = 0.0

    # ---- lifecycle ---------------------------------------------------------------------
    def recover(self) -> None:
        """Finish or undo whatever a previous run of this camera left mid-flight."""
        self._unlisted_rows = recover_camera(self.camera, self.rows, self.verifiers)

    def list_candidates(self) -> list[Candidate]:
        """One read of the camera folder: names and types, no per-file request."""
        self.share.listings += 1
        candidates = list_candidates(self.camera.path, self._warned)
        listed = {str(candidate.path) for candidate in candidates}
        self.failures.forget_missing(listed)
        if self._unlisted_rows is not None:
            vanished_from_listing(self.rows, self._unlisted_rows, listed)
        if not self.backlog.begun:
            rows = self._unlisted_rows or []
            self.backlog.begin(
                (c.name for c in candidates if c.name not in self.waiting),
                {Path(movie.source_path or "").name for movie in rows},
            )
        self._unlisted_rows = None
        return candidates

    def run_forever(self) -> None:
        self.verifiers.start()
        self.recover()
        try:
            self._loop()
        finally:
            self.load.flush()
        self.verifiers.stop()

    def _loop(self) -> None:
        last_scan = 0.0
        candidates: list[Candidate] = []
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                if now - last_scan >= self.camera.poll_seconds:
                    candidates = self.list_candidates()
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

    def _housekeeping(self, now: float) -> None:
        """Journal what the database lacks (once per gap), and after an outage record where
        the frames taken during it are (frame_paths.py)."""
        for what, assumed in self.db.take_new_gaps():
            self.journal.event(
                "schema_missing",
                camera=self.camera.host,
                detail=f"leginondb has no {what}: {assumed}",
            )
        self.load.flush_if_due(now)
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
            candidates = self.list_candidates()
            result = self.run_pass(candidates, first_sight_ok=True)
            self._housekeeping(time.monotonic())
        finally:
            self.verifiers.stop()
            self.load.flush()
        # steps to retry later (a camera file still held open): the next run takes them up
        result.waiting += self.verifiers.pending_retries()
        return result

    # ---- one pass over the folder ------------------------------------------------------
    def run_pass(self, candidates: list[Candidate], *, first_sight_ok: bool) -> PassResult:
        """New and pending files first, then the backlog and the waiting files that are due,
        rationed (a one-shot pass looks at every file)."""
        result = PassResult()
        if not self.backoff.ready():
            result.waiting = len(candidates)
            return result
        self._forget_gone(candidates)
        pending, due, later = self.waiting.plan(candidates, all_due=first_sight_ok)
        result.waiting += later
        if first_sight_ok:
            whole = self._through(pending, result, first_sight_ok=True)
            whole = whole and self._through(due, result, first_sight_ok=True)
        else:
            new, surveyed, unseen = self.backlog.split(pending, self.tracker.watches)
            whole = self._through(new, result, first_sight_ok=False)
            whole = whole and self._rationed(surveyed, unseen, due, result)
        if whole:
            self.backoff.succeeded()
        return result

    def _rationed(
        self,
        surveyed: list[Candidate],
        unseen: list[Candidate],
        due: list[Candidate],
        result: PassResult,
    ) -> bool:
        """The backlog (judged, then surveyed) and the waiting files that are due, within one
        share of the pass's time, each kind first in turn so that neither starves."""
        ends = time.monotonic() + BACKLOG_SECONDS_PER_PASS
        self._waiting_first = not self._waiting_first
        if self._waiting_first and not self._through(due, result, self.waiting.ration, ends):
            return False
        if not self._through(surveyed, result, self.backlog.judging, ends):
            return False
        self.backlog.survey(unseen, self.tracker, ends)
        result.waiting += len(unseen)  # surveyed or not, judged in a later pass
        if not self._waiting_first:
            return self._through(due, result, self.waiting.ration, ends)
        return True

    def _through(
        self,
        candidates: list[Candidate],
        result: PassResult,
        ration: LookRation | None = None,
        ends: float = float("inf"),
        *,
        first_sight_ok: bool = False,
    ) -> bool:
        """Take `candidates` in order; False when the pass must end here (stop, database
        gone, buffer full). A rationed list ends early, for this pass, when its ration or
        the pass's time (`ends`) runs out."""
        for index, candidate in enumerate(candidates):
            if self.stop.is_set():
                return False
            if not self.failures.ready(str(candidate.path)) or not self.placements.due(
                candidate.name
            ):
                result.waiting += 1  # failed or refused lately: not due yet
                continue
            if ration is not None and (time.monotonic() >= ends or not ration.take()):
                result.waiting += len(candidates) - index
                return True
            if not self._one(candidate, result, first_sight_ok=first_sight_ok):
                return False
        return True

    def _one(self, candidate: Candidate, result: PassResult, *, first_sight_ok: bool) -> bool:
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
            return False
        except (CopyAborted, SourceChanged) as error:
            log.info("copy of %r not finished: %s; will retry", candidate.name, error)
            if isinstance(error, SourceChanged):  # each try cost a copy: counted, as below
                self.failures.failed(str(candidate.path), f"ingest: {error}")
        except OSError as error:
            result.errors.append(f"{candidate.name}: {error}")
            self.journal.event(
                "error", camera=self.camera.host, detail=f"{candidate.name!r}: {error}"
            )
            log.error("ingest %r failed: %s; it stays on the camera share", candidate.name, error)
            if concerns_whole_camera(error, self.camera.path):
                self.backoff.failed()
                return False
            # the file's own (any errno, on it or a member): retried later, then held
            self.failures.failed(str(candidate.path), f"ingest: {error}")
        except Exception as error:  # noqa: BLE001 - one bad file must not stop a camera
            result.errors.append(f"{candidate.name}: {error!r}")
            self._unexpected(candidate.path, error, "ingest")
        return True

    def _forget_gone(self, candidates: list[Candidate]) -> None:
        names = {candidate.name for candidate in candidates}
        gone = [name for name in self.tracker.watches if name not in names]
        for name in gone:
            self.tracker.forget(name)
            self.frame_wait.forget(name)
            self.placements.forget(name)
        self.waiting.forget(*gone)
        self.backlog.discard(*gone)

    def _take(self, candidate: Candidate, *, first_sight_ok: bool) -> bool | None:
        """One candidate through this pass: True when it has left the camera share's queue,
        False while it waits, None when it vanished meanwhile."""
        self.backlog.discard(candidate.name)  # judged now: a new file from here on
        watch = self.tracker.observe(candidate)
        if watch is None:
            self.waiting.forget(candidate.name)
            return None
        if not self.tracker.is_settled(watch, first_sight_ok=first_sight_ok):
            self.waiting.forget(candidate.name)  # changed since it was judged: pending again
            if self.tracker.is_abandoned(watch):
                waiting_for = self.tracker.waiting_reason(watch)
                self.intake.quarantine_abandoned(candidate, watch, waiting_for)
                self._left(candidate.name)
            return False
        folder = candidate.path if candidate.is_dir else None  # its members' names count too
        problem = odd_name_problem(candidate.name, members_of=folder)
        if problem is not None:  # before anything writes the name to the journal
            if not take_odd_name(self.rows, candidate, problem, self._tell, self._odd_folders):
                self._defer(watch)
                return False
            self._left(candidate.name)
            return True
        if self.frame_wait.pending(candidate, watch):
            return False
        if not self.intake.handle(candidate, watch.first_seen_wall, watch=watch):
            if self.frame_wait.waits_for(candidate.name):
                self.waiting.forget(candidate.name)  # short of its frames: watched closely
            else:
                self._defer(watch)
            return False
        self._left(candidate.name)
        return True

    def _defer(self, watch: Watch) -> None:
        """A settled file stays on the share: looked at again later (waiting.py), at the end
        of its grace period at the latest, which counts from its journal row."""
        path, movie = watch.candidate.path, None
        if printable(path) == str(path):  # a name SQLite cannot hold has no row (odd_names.py)
            movie = self.journal.active_movie_for_source(self.camera.host, str(path))
        grace_ends = None if movie is None else movie.first_seen + self.camera.grace_minutes * 60
        self.waiting.defer(watch, grace_ends)

    def _left(self, name: str) -> None:
        """The file has left the camera share's queue (copied, quarantined)."""
        self.tracker.forget(name)
        self.frame_wait.forget(name)
        self.waiting.forget(name)

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
