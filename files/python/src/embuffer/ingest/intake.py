"""The decision for one settled camera file: match it to its Leginon image, place it, and
begin its copy to the buffer, or quarantine it with the reason.

A file no image matches waits for the camera's grace period (Leginon may write the image row
after the file), then goes to quarantine. The copy only begins here: the verifier threads
publish, re-read and release it (verifiers.py), and the irreversible steps live in
safecopy/transfer.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from embuffer import journal as j
from embuffer.config import CameraConfig
from embuffer.ingest import sidecars
from embuffer.ingest.frame_count import FrameCountWait
from embuffer.ingest.placing import Placements, match_fields
from embuffer.ingest.room import RoomCheck
from embuffer.ingest.rows import CameraRows
from embuffer.ingest.scan import Candidate, sidecar_for
from embuffer.ingest.settle import Watch
from embuffer.ingest.verifiers import Verifiers
from embuffer.journal import queries as q
from embuffer.leginon.db import LeginonDB
from embuffer.leginon.matching import (
    ImageMatch,
    destination_name,
    explain_miss,
    find_image,
    frames_key,
)
from embuffer.leginon.names import name_problem
from embuffer.leginon.references import ReferenceWriter
from embuffer.safecopy.transfer import Pending


class Intake:
    def __init__(
        self,
        camera: CameraConfig,
        rows: CameraRows,
        db: LeginonDB,
        verifiers: Verifiers,
        placements: Placements,
        frame_wait: FrameCountWait,
        tell: Callable[[str, str], None],  # logs a waiting reason once per file
    ) -> None:
        self.camera = camera
        self.rows = rows
        self.journal = rows.journal
        self.db = db
        self.verifiers = verifiers
        self.placements = placements
        self.frame_wait = frame_wait
        self.tell = tell
        self.references = ReferenceWriter(db, rows.journal, camera.host)
        self.room = RoomCheck(rows, tell)

    def handle(
        self,
        candidate: Candidate,
        first_seen: float,
        *,
        retry: bool = False,
        watch: Watch | None = None,
    ) -> bool:
        """Process one settled candidate; True when it has left the camera share's queue.
        With retry (`quarantine retry`), a file that still finds no place is left as it is."""
        movie_id = self._row_to_work_on(candidate, first_seen, watch)
        if movie_id is None:
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
            if self._no_room_in_quarantine(movie_id, candidate):
                return False
            self.journal.event("unsafe_name", camera=self.camera.host, detail=problem)
            self.rows.quarantine(movie_id, f"{problem}; not followed")
            return True
        if not retry and self.frame_wait.short(candidate, watch, match.nframes):
            return False
        return self._to_buffer(movie_id, candidate, match, retry=retry)

    def _row_to_work_on(
        self, candidate: Candidate, first_seen: float, watch: Watch | None
    ) -> int | None:
        """The candidate's journal row (opened now if it has none), or None when its copy
        needs nothing from this pass."""
        source = str(candidate.path)
        movie = self.journal.active_movie_for_source(self.camera.host, source)
        if movie is None:
            # the settle judgement's own stat, not another request to the camera PC
            closed_at = (
                watch.snapshot.mtime
                if watch is not None
                else candidate.path.stat(follow_symlinks=False).st_mtime
            )
            return self.rows.open_candidate(candidate, first_seen=first_seen, closed_at=closed_at)
        if movie.state not in (j.COPYING, j.COPIED, j.VERIFIED):
            return movie.id
        if self.verifiers.has(movie.id):
            return None  # in the verifiers' hands
        if movie.state != j.COPYING:
            self.verifiers.submit(movie.id)  # a step that failed earlier: go on
            return None
        # a copy abandoned in this run: remove the partial, copy again
        if self.rows.transfer.recover(movie) != "retry":
            return None
        return movie.id

    def _not_placed_after_all(self, movie_id: int) -> bool:
        """`quarantine retry` found no place for the file again: the quarantined row stays
        its record, and the row opened for this try goes."""
        q.forget_unplaced_retry(self.journal, movie_id)
        return False

    def _to_buffer(
        self, movie_id: int, candidate: Candidate, match: ImageMatch, *, retry: bool
    ) -> bool:
        placed = self.placements.place(match)
        if placed is None and retry:
            return self._not_placed_after_all(movie_id)
        if placed is None:
            self.placements.ask_again_later(candidate.name)
            return False
        head = self.camera.destination_head
        if head and not str(placed.folder).startswith(head):
            if retry:
                return self._not_placed_after_all(movie_id)
            self.tell(
                str(candidate.path),
                f"{candidate.name!r}: destination {placed.folder} is not under "
                f"destination_head {head}; left for the embuffer that serves that head",
            )
            return False
        dest = placed.folder / destination_name(match.filename, candidate.name, candidate.is_dir)
        # references count with the movie they serve: small, and written for a placed movie
        sources = (candidate.path, sidecar_for(candidate))
        if self.room.waits(movie_id, sources, placed.folder, placed=True):
            return self._not_placed_after_all(movie_id) if retry else False
        self.references.write_for(movie_id, match, placed.folder, placed.ownership)
        fields = match_fields(self.rows.config.buffer_root, match, dest, placed)
        outcome = self.rows.transfer.begin(
            movie_id, candidate.path, dest, placed.ownership, **fields
        )
        if outcome is False:
            if self._no_room_in_quarantine(movie_id, candidate):
                return False
            self.rows.quarantine(movie_id, f"a different file already exists at {dest}")
            return True
        sidecars.copy_beside_movie(self.rows, self.verifiers, candidate, match, placed)
        self.verifiers.submit(outcome if isinstance(outcome, Pending) else movie_id)
        return True

    def _unmatched(self, movie_id: int, candidate: Candidate, key: str) -> bool:
        waited = time.time() - self.journal.movie(movie_id).first_seen
        if waited < self.camera.grace_minutes * 60:
            self.tell(
                str(candidate.path),
                f"{candidate.name!r}: no Leginon image yet for "
                f"frames name {key!r}; waiting up to {self.camera.grace_minutes:g} min",
            )
            return False
        if self._no_room_in_quarantine(movie_id, candidate):
            return False
        miss = explain_miss(self.db, key, self.camera.host, self.camera.check_days)
        reason = f"{miss.reason} (waited {waited / 60:.0f} min)"
        sidecars.quarantine_with_movie(self.rows, candidate, movie_id, reason)
        return True

    def quarantine_abandoned(self, candidate: Candidate, watch: Watch, waiting_for: str) -> None:
        """Whole as it is, with the reason it never settled (settle.py)."""
        movie = self.journal.active_movie_for_source(self.camera.host, str(candidate.path))
        movie_id = (
            movie.id
            if movie
            else self.rows.open_candidate(
                candidate, first_seen=watch.first_seen_wall, closed_at=watch.snapshot.mtime
            )
        )
        if self._no_room_in_quarantine(movie_id, candidate):
            return  # stays on the camera share; watched again from its next listing
        reason = f"incomplete and unchanged for {self.camera.grace_minutes:g} min: {waiting_for}"
        self.rows.quarantine(movie_id, reason)

    def _no_room_in_quarantine(self, movie_id: int, candidate: Candidate) -> bool:
        """Quarantine is not a placed movie: it stops at the reserve (safecopy/space.py)."""
        folder = self.rows.config.quarantine / self.camera.host
        sources = (candidate.path, sidecar_for(candidate))
        return self.room.waits(movie_id, sources, folder, placed=False)
