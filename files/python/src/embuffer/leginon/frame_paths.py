"""Record, after an outage, where the frames taken during it are, so that Appion finds them.

While a camera's BufferHostData row is disabled (outage mode) Appion does not look on the
buffer, and embuffer records no BufferFramePathData row: it cannot know yet whether the row
will be enabled again. Frames still land on the buffer in the layout of that row's base path.
Once the newest row for the camera is enabled again, Appion's lookup starts with the buffer
frame path of (session, row): this module inserts that row for every session whose frames
were placed during the outage, pointing at the folder that holds them, unless a row exists
already. The ingest runs it every minute and `embuffer outage end` once, so the frames are
found as soon as the outage ends.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from embuffer.journal import Journal
from embuffer.journal import queries as q
from embuffer.leginon.db import LeginonDB
from embuffer.leginon.placement import newest_buffer_host, record_frame_path, recorded_frame_path

log = logging.getLogger("embuffer.frame_paths")

PENDING = 0
RECORDED = 1


@dataclass
class Registration:
    recorded: list[str] = field(default_factory=list)  # "session: folder" rows inserted
    pending: int = 0  # sessions whose camera's BufferHostData row is still disabled
    conflicts: list[str] = field(default_factory=list)  # a row exists that points elsewhere


def pending_sessions(journal: Journal, camera: str | None = None) -> list[tuple[int, int, str]]:
    """(session_id, instrument_id, folder) groups with frames placed during an outage."""
    groups = {
        (session, instrument, os.path.dirname(dest))
        for session, instrument, dest in q.frame_path_groups(journal.db, camera)
    }
    return sorted(groups)


def register_outage_sessions(
    db: LeginonDB, journal: Journal, camera: str | None = None
) -> Registration:
    result = Registration()
    for session_id, instrument_id, folder in pending_sessions(journal, camera):
        host = newest_buffer_host(db, instrument_id)
        if host is None or host.disabled:
            result.pending += 1
            continue
        existing = recorded_frame_path(db, session_id, host.row_id)
        if existing is None:
            if not record_frame_path(db, session_id, host.row_id, folder):
                result.pending += 1  # no BufferFramePathData table yet: Appion derives it
                continue
            result.recorded.append(f"session {session_id}: {folder}")
            log.info("recorded buffer frame path %s for session %s", folder, session_id)
        elif os.path.normpath(existing) != os.path.normpath(folder):
            detail = (
                f"session {session_id}: BufferFramePathData says {existing}, but the frames "
                f"taken during the outage are in {folder}; Appion will not find those"
            )
            result.conflicts.append(detail)
            journal.event("frame_path_conflict", detail=detail)
            log.error("%s", detail)
        q.mark_frame_paths_recorded(journal, session_id, instrument_id)
    return result
