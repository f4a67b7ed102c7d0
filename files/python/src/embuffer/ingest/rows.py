"""The journal rows of one camera's files: every row a camera step opens is opened here, and
every file the camera's steps give up on goes to quarantine through here, so the camera,
state and configuration they carry are written once."""

from __future__ import annotations

from dataclasses import dataclass

from embuffer import journal as j
from embuffer.config import Config
from embuffer.ingest.quarantine import quarantine_movie
from embuffer.ingest.scan import Candidate
from embuffer.journal import Journal
from embuffer.safecopy.transfer import Transfer


@dataclass(frozen=True)
class CameraRows:
    config: Config
    camera: str  # the camera host the rows belong to
    journal: Journal
    transfer: Transfer

    def open(self, source_path: str, kind: str, **fields: object) -> int:
        """A row for a file taken up now (state SEEN unless `fields` say otherwise); `fields`
        record what is known of it already."""
        known = {"state": j.SEEN, **fields}
        return self.journal.insert_movie(
            camera=self.camera, kind=kind, source_path=source_path, **known
        )

    def open_candidate(self, candidate: Candidate, *, first_seen: float, closed_at: float) -> int:
        kind = "dir" if candidate.is_dir else "file"
        return self.open(str(candidate.path), kind, first_seen=first_seen, closed_at=closed_at)

    def quarantine(self, movie_id: int, reason: str) -> None:
        quarantine_movie(self.config, self.journal, self.transfer, movie_id, reason)
