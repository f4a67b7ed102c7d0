"""Ingest: one worker per camera source, camera share -> buffer, verified.

Each camera runs in its own thread with its own database connection, so a slow or hung CIFS
share stalls only its own camera. Verifier threads (VERIFIER_THREADS per camera) re-read
finished copies, so verifying one movie overlaps copying the next. The decisions (match,
place, quarantine) are made here; the irreversible steps live in transfer.py.

No thread of a camera dies of one file: an exception nobody foresaw is logged with the file
it concerns, counted (`unexpected_error` events), and the file is retried later while the
camera goes on with the next one; a file that keeps failing is held on the camera share
(holds.py). Anything that escapes even that ends the thread, and the service then exits
non-zero so that systemd restarts it (cli.py).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from embuffer import journal as j
from embuffer.config import CameraConfig, Config
from embuffer.ingest.frame_count import FrameCountWait
from embuffer.ingest.holds import FailureTracker
from embuffer.ingest.odd_names import odd_name_problem, printable, quarantine_odd_name
from embuffer.ingest.quarantine import quarantine_movie
from embuffer.ingest.recovery import recover_camera
from embuffer.ingest.scan import Candidate, SettleTracker, Watch, list_candidates, sidecar_for
from embuffer.ingest.verifiers import Verifiers
from embuffer.journal import Journal
from embuffer.journal import queries as q
from embuffer.leginon.credentials import read_credentials
from embuffer.leginon.db import Backoff, DatabaseUnavailable, LeginonDB
from embuffer.leginon.frame_paths import register_outage_sessions
from embuffer.leginon.matching import (
    ImageMatch,
    destination_name,
    explain_miss,
    find_image,
    frames_key,
    load_session,
)
from embuffer.leginon.names import name_problem
from embuffer.leginon.placement import Refusal, session_buffer_folder, session_owner
from embuffer.leginon.references import ReferenceWriter
from embuffer.safecopy import nofollow
from embuffer.safecopy.copy import CopyAborted, Ownership, SourceChanged
from embuffer.safecopy.transfer import Pending, Transfer

log = logging.getLogger("embuffer.ingest")
PLACEMENT_CACHE_SECONDS = 30.0
# how often the ingest records, for sessions placed during an outage, the buffer frame path
REGISTRATION_SECONDS = 60.0


@dataclass
class PassResult:
    handled: int = 0
    waiting: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Placed:
    folder: Path
    ownership: Ownership
    registered: bool
    session_name: str
    at: float
    instrument_id: int


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
        self.tracker = SettleTracker(camera.settle_seconds, camera.unstructured_settle_seconds)
        self.backoff = Backoff()
        self.references = ReferenceWriter(self.db, journal, camera.host)
        self.failures = FailureTracker(journal, camera.host)
        # copies waiting to be published, verified and released by the verifier threads
        self.verifiers = Verifiers(
            config, camera.host, journal, self.transfer, self.failures, self._unexpected, stop
        )
        self._placements: dict[int, _Placed] = {}
        self._warned: set[str] = set()
        self._told: dict[str, str] = {}
        self.frame_wait = FrameCountWait(camera, journal, self._tell)
        self._last_registration = 0.0
        self._not_before: dict[str, float] = {}  # name -> monotonic time to look again

    # ---- lifecycle ---------------------------------------------------------------------
    def recover(self) -> None:
        """Finish or undo whatever a previous run of this camera left mid-flight."""
        recover_camera(self.config, self.camera, self.journal, self.transfer, self.verifiers)

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
                # nothing would ever be published: end, so that the service restarts (cli.py)
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
        names = {candidate.name for candidate in candidates}
        for name in list(self.tracker.watches):
            if name not in names:
                self.tracker.forget(name)
                self.frame_wait.forget(name)
                self._not_before.pop(name, None)
        for candidate in candidates:
            if self.stop.is_set():
                break
            if not self.failures.ready(str(candidate.path)) or (
                time.monotonic() < self._not_before.get(candidate.name, 0.0)
            ):
                result.waiting += 1  # failed or refused lately: not due yet
                continue
            try:
                watch = self.tracker.observe(candidate)
                if watch is None:
                    continue
                if not self.tracker.is_settled(watch, first_sight_ok=first_sight_ok):
                    if self._abandoned(watch):
                        self._quarantine_incomplete(candidate, watch)
                        self.tracker.forget(candidate.name)
                    result.waiting += 1
                    continue
                problem = odd_name_problem(candidate.name)
                if problem is not None:  # before anything writes the name to the journal
                    if self._odd_name(candidate, problem):
                        result.handled += 1
                        self.tracker.forget(candidate.name)
                    else:
                        result.waiting += 1
                    continue
                if self.frame_wait.pending(candidate, watch):
                    result.waiting += 1
                    continue
                if self.handle(candidate, watch.first_seen_wall, watch=watch):
                    result.handled += 1
                    self.tracker.forget(candidate.name)
                    self.frame_wait.forget(candidate.name)
                else:
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
            if not self._told.get(f"odd-{shown}"):
                self._told[f"odd-{shown}"] = problem
                detail = f"folder {shown!r}: {problem}; left on the camera share"
                self.journal.event("unsafe_name", camera=self.camera.host, detail=detail)
            return False
        quarantine_odd_name(self.config, self.journal, self.camera.host, candidate.path, problem)
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
            if self.handle(original, time.time(), retry=True):
                self.journal.update_movie(
                    movie.id, state=j.RELEASED, reason=f"{movie.reason}; released by retry"
                )
                placed += 1
            else:
                left += 1
        self.verifiers.drain()
        return placed, left

    def handle(
        self,
        candidate: Candidate,
        first_seen: float,
        *,
        retry: bool = False,
        watch: Watch | None = None,
    ) -> bool:
        """Process one settled candidate; True when it has left the camera share's queue."""
        source = str(candidate.path)
        movie = self.journal.active_movie_for_source(self.camera.host, source)
        if movie is None:
            movie_id = self.journal.insert_movie(
                camera=self.camera.host,
                source_path=source,
                state=j.SEEN,
                kind="dir" if candidate.is_dir else "file",
                first_seen=first_seen,
                closed_at=candidate.path.stat(follow_symlinks=False).st_mtime,
            )
        else:
            movie_id = movie.id
            if movie.state in (j.COPYING, j.COPIED, j.VERIFIED):
                if self.verifiers.has(movie_id):
                    return True  # in the verifiers' hands
                if movie.state != j.COPYING:
                    self.verifiers.submit(movie_id)  # a step that failed earlier: go on
                    return True
                # a copy abandoned in this run: remove the partial, copy again
                if self.transfer.recover(movie) != "retry":
                    return True
        key = frames_key(candidate.name, candidate.is_dir)
        match = find_image(self.db, key, self.camera.host, self.camera.check_days)
        if match is None:
            if retry:
                return self._not_placed_after_all(movie_id)
            return self._unmatched(movie_id, candidate, key)
        problem = name_problem(match.filename, f"{match.table} {match.image_id} filename")
        if problem is not None and retry:
            return self._not_placed_after_all(movie_id)
        if problem is not None:  # never followed: a name is not allowed to be a path
            self.journal.event("unsafe_name", camera=self.camera.host, detail=problem)
            quarantine_movie(
                self.config, self.journal, self.transfer, movie_id, f"{problem}; not followed"
            )
            return True
        if not retry and self.frame_wait.short(candidate, watch, match.nframes):
            return False
        placed = self._place(match)
        if placed is None and retry:
            return self._not_placed_after_all(movie_id)
        if placed is None:
            # the placement was refused: ask the database again in a while, not every poll
            self._not_before[candidate.name] = time.monotonic() + PLACEMENT_CACHE_SECONDS
            return False
        if self.camera.destination_head and not str(placed.folder).startswith(
            self.camera.destination_head
        ):
            if retry:
                return self._not_placed_after_all(movie_id)
            self._tell(
                source,
                f"{candidate.name!r}: destination {placed.folder} is not under "
                f"destination_head {self.camera.destination_head}; left for the "
                "embuffer that serves that head",
            )
            return False
        dest = placed.folder / destination_name(match.filename, candidate.name, candidate.is_dir)
        self.references.write_for(movie_id, match, placed.folder, placed.ownership)
        outcome = self.transfer.begin(
            movie_id,
            candidate.path,
            dest,
            placed.ownership,
            **self._match_fields(match, dest, placed),
        )
        if outcome is False:
            self._quarantine_clash(movie_id, dest)
            return True
        self._copy_sidecar(candidate, match, placed)
        self.verifiers.submit(outcome if isinstance(outcome, Pending) else movie_id)
        return True

    def _not_placed_after_all(self, movie_id: int) -> bool:
        """`quarantine retry` found no place for the file again: the quarantined row stays
        its record, and the row opened for this try goes."""
        q.forget_unplaced_retry(self.journal, movie_id)
        return False

    # ---- decisions -----------------------------------------------------------------------
    def _abandoned(self, watch: Watch) -> bool:
        """A file whose structure says incomplete but that nobody has written to for the
        grace period (a camera program that crashed mid-movie): it would sit on the camera
        share for ever, so it goes to quarantine, whole as it is, with the reason."""
        unchanged = time.time() - watch.snapshot.mtime_ns / 1e9
        limit = max(self.camera.grace_minutes * 60, self.camera.unstructured_settle_seconds)
        return unchanged >= limit and time.monotonic() - watch.stable_since >= min(limit, 60)

    def _quarantine_incomplete(self, candidate: Candidate, watch: Watch) -> None:
        source = str(candidate.path)
        movie = self.journal.active_movie_for_source(self.camera.host, source)
        movie_id = (
            movie.id
            if movie
            else self.journal.insert_movie(
                camera=self.camera.host,
                source_path=source,
                state=j.SEEN,
                kind="dir" if candidate.is_dir else "file",
                first_seen=watch.first_seen_wall,
                closed_at=watch.snapshot.mtime_ns / 1e9,
            )
        )
        reason = (
            f"incomplete and unchanged for {self.camera.grace_minutes:g} min: "
            f"{self.tracker.waiting_reason(watch)}"
        )
        quarantine_movie(self.config, self.journal, self.transfer, movie_id, reason)

    def _unmatched(self, movie_id: int, candidate: Candidate, key: str) -> bool:
        movie = self.journal.movie(movie_id)
        waited = time.time() - movie.first_seen
        if waited < self.camera.grace_minutes * 60:
            self._tell(
                str(candidate.path),
                f"{candidate.name!r}: no Leginon image yet for "
                f"frames name {key!r}; waiting up to {self.camera.grace_minutes:g} min",
            )
            return False
        miss = explain_miss(self.db, key, self.camera.host, self.camera.check_days)
        sidecar = sidecar_for(candidate)
        sidecar_id = None
        if sidecar is not None:
            # recorded before the movie leaves the camera (and made durable by the same
            # barrier), so that recover() finishes it should a crash come in between
            sidecar_id = self.journal.insert_movie(
                camera=self.camera.host,
                kind="sidecar",
                source_path=str(sidecar),
                state=j.SEEN,
                target="quarantine",
                reason=f"sidecar of quarantined {candidate.name!r}",
            )
        quarantine_movie(
            self.config,
            self.journal,
            self.transfer,
            movie_id,
            f"{miss.reason} (waited {waited / 60:.0f} min)",
        )
        if sidecar_id is not None:
            quarantine_movie(
                self.config,
                self.journal,
                self.transfer,
                sidecar_id,
                f"sidecar of quarantined {candidate.name!r}",
            )
        return True

    def _place(self, match: ImageMatch) -> _Placed | None:
        cached = self._placements.get(match.session_id)
        if cached is not None and time.monotonic() - cached.at < PLACEMENT_CACHE_SECONDS:
            return cached
        session = load_session(self.db, match.session_id)
        placement = session_buffer_folder(
            self.db, session, match.instrument_id, str(self.config.buffer_root)
        )
        if isinstance(placement, Refusal):
            message = (
                f"session {session.name}: {placement.reason}; its frames stay on the camera "
                "share until that is fixed"
            )
            if self._told.get(f"session-{session.session_id}") != message:
                self.journal.event("placement_refused", camera=self.camera.host, detail=message)
            self._tell(f"session-{session.session_id}", message)
            return None
        folder = Path(os.path.normpath(placement.folder))
        uid, gid = session_owner(session)
        placed = _Placed(
            folder,
            Ownership(uid, gid, self.config.file_mode, self.config.dir_mode),
            placement.registered,
            session.name,
            time.monotonic(),
            match.instrument_id,
        )
        self._placements[match.session_id] = placed
        log.info("session %s -> %s (%s)", session.name, folder, placement.note)
        return placed

    def _quarantine_clash(self, movie_id: int, dest: Path) -> None:
        quarantine_movie(
            self.config,
            self.journal,
            self.transfer,
            movie_id,
            f"a different file already exists at {dest}",
        )

    def _match_fields(self, match: ImageMatch, dest: Path, placed: _Placed) -> dict[str, object]:
        return {
            "target": "buffer",
            "image_table": match.table,
            "image_id": match.image_id,
            "image_filename": match.filename,
            "session_id": match.session_id,
            "session_name": placed.session_name,
            "norm_id": match.norm_id,
            "dark_id": match.dark_id,
            "rel_path": str(dest.relative_to(self.config.buffer_root)),
            "uid": placed.ownership.uid,
            "gid": placed.ownership.gid,
            "instrument_id": placed.instrument_id,
            # 0: placed during an outage, its buffer frame path is recorded later
            "frame_path_registered": (
                q.FRAME_PATH_RECORDED if placed.registered else q.FRAME_PATH_PENDING
            ),
        }

    def _copy_sidecar(self, candidate: Candidate, match: ImageMatch, placed: _Placed) -> None:
        sidecar = sidecar_for(candidate)
        if sidecar is None:
            return
        dest = placed.folder / f"{match.filename}.frames.xml"
        sidecar_id = self.journal.insert_movie(
            camera=self.camera.host,
            kind="sidecar",
            source_path=str(sidecar),
            state=j.SEEN,
            # where it goes, recorded before its movie can leave the camera (recover())
            dest_path=str(dest),
            **self._match_fields(match, dest, placed),
        )
        if self.transfer.copy(
            sidecar_id, sidecar, dest, placed.ownership, **self._match_fields(match, dest, placed)
        ):
            self.verifiers.submit(sidecar_id)
        else:
            quarantine_movie(
                self.config,
                self.journal,
                self.transfer,
                sidecar_id,
                f"a different sidecar already exists at {dest}",
            )

    def _tell(self, key: str, message: str) -> None:
        """Log a waiting/skip reason once per file, not once per poll."""
        if self._told.get(key) != message:
            self._told[key] = message
            log.warning("%s", message)
