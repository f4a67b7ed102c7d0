"""Where a matched movie goes: its session's buffer folder and owner, and the journal fields
that record the match and the place.

leginondb is asked at most every PLACEMENT_CACHE_SECONDS per session, and a movie whose
placement was refused waits as long before it is offered again, so a refused session costs
one query per interval, not one per file and poll. A refusal is journaled once per reason.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from embuffer.config import Config
from embuffer.journal import Journal
from embuffer.journal import queries as q
from embuffer.leginon.db import LeginonDB
from embuffer.leginon.matching import ImageMatch, load_session
from embuffer.leginon.placement import Refusal, session_buffer_folder, session_owner
from embuffer.safecopy.copy import Ownership

log = logging.getLogger("embuffer.ingest")

PLACEMENT_CACHE_SECONDS = 30.0


@dataclass
class Placed:
    folder: Path
    ownership: Ownership
    registered: bool
    session_name: str
    at: float  # monotonic time leginondb said so
    instrument_id: int


class Placements:
    """The placements of one camera's sessions, and the movies waiting after a refusal."""

    def __init__(
        self,
        config: Config,
        camera: str,
        db: LeginonDB,
        journal: Journal,
        tell: Callable[[str, str], None],  # logs a reason once, not once per poll
    ) -> None:
        self.config = config
        self.camera = camera
        self.db = db
        self.journal = journal
        self.tell = tell
        self._placed: dict[int, Placed] = {}  # session id -> its placement
        self._refusals: dict[int, str] = {}  # session id -> the refusal journaled last
        self._not_before: dict[str, float] = {}  # camera file name -> monotonic time

    def place(self, match: ImageMatch) -> Placed | None:
        """The session's folder and owner, or None when the placement is refused."""
        cached = self._placed.get(match.session_id)
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
            if self._refusals.get(session.session_id) != message:
                self._refusals[session.session_id] = message
                self.journal.event("placement_refused", camera=self.camera, detail=message)
            self.tell(f"session-{session.session_id}", message)
            return None
        folder = Path(os.path.normpath(placement.folder))
        uid, gid = session_owner(session)
        placed = Placed(
            folder,
            Ownership(uid, gid, self.config.file_mode, self.config.dir_mode),
            placement.registered,
            session.name,
            time.monotonic(),
            match.instrument_id,
        )
        self._placed[match.session_id] = placed
        log.info("session %s -> %s (%s)", session.name, folder, placement.note)
        return placed

    def ask_again_later(self, name: str) -> None:
        self._not_before[name] = time.monotonic() + PLACEMENT_CACHE_SECONDS

    def due(self, name: str) -> bool:
        return time.monotonic() >= self._not_before.get(name, 0.0)

    def forget(self, name: str) -> None:
        self._not_before.pop(name, None)


def match_fields(
    buffer_root: Path, match: ImageMatch, dest: Path, placed: Placed
) -> dict[str, object]:
    """What the journal keeps of a movie (or sidecar) bound for the buffer."""
    return {
        "target": "buffer",
        "image_table": match.table,
        "image_id": match.image_id,
        "image_filename": match.filename,
        "session_id": match.session_id,
        "session_name": placed.session_name,
        "norm_id": match.norm_id,
        "dark_id": match.dark_id,
        "rel_path": str(dest.relative_to(buffer_root)),
        "uid": placed.ownership.uid,
        "gid": placed.ownership.gid,
        "instrument_id": placed.instrument_id,
        # 0: placed during an outage, its buffer frame path is recorded later
        "frame_path_registered": (
            q.FRAME_PATH_RECORDED if placed.registered else q.FRAME_PATH_PENDING
        ),
    }
