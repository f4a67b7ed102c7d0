"""Where Appion looks for a session's frames, and the sessions whose frames are not there.

Appion (`apDDprocess.getSessionFramePathFromImage`) reads the camera's newest BufferHostData
row whose `disabled` is 0 (not the newest row of any buffer host, which is what Leginon's
transfer reads); with one, the session's BufferFramePathData row for that host row, else the
path derived from the row's base path (which Appion then records). With none, it reads
SessionData's `frame path`, else the image path with its last `leginon` turned into `frames`.
It expects `<that folder>/<image filename>.frames.<ext>`. The same steps are taken here,
reading only: nothing is recorded. (Appion also skips the buffer for an image it has already
aligned; the frames it then reads are the primary storage copy, which embuffer keeps in the
same layout.)

The outage report compares that folder with the folders the journal holds each movie in, on
the buffer and, once verified there, on primary storage.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from typing import Any

from embuffer.journal.movie import PURGED
from embuffer.leginon.db import LeginonDB
from embuffer.leginon.placement import (
    derive_buffer_frame_path,
    newest_buffer_host,
    recorded_frame_path_row,
)


@dataclass(frozen=True)
class AppionLookup:
    path: str | None  # the folder Appion looks in; None when it has none (no image path)
    source: str  # which of Appion's steps gave it


def frames_path_of(image_path: str) -> str:
    """The image path with its last `leginon` turned into `frames` (Leginon before 3.0)."""
    head, found, tail = image_path.rpartition("leginon")
    return head + "frames" + tail if found else image_path


def appion_frame_path(db: LeginonDB, session_id: int, instrument_id: int) -> AppionLookup:
    """The folder Appion reads a session's frames from now, for a camera."""
    sessions = db.rows(
        "SELECT `image path` AS image_path, `frame path` AS frame_path FROM `SessionData` "
        "WHERE `DEF_id` = %s",
        (session_id,),
    )
    if not sessions:
        return AppionLookup(None, f"no SessionData row {session_id}")
    image_path = str(sessions[0]["image_path"] or "")
    host = newest_buffer_host(db, instrument_id, enabled_only=True)
    if host is not None:
        recorded = recorded_frame_path_row(db, session_id, host.row_id)
        if recorded is not None:
            return AppionLookup(
                recorded[1],
                f"BufferFramePathData row {recorded[0]} of BufferHostData {host.row_id}",
            )
        derived = derive_buffer_frame_path(image_path, host.base_path, host.append_full_head)
        if derived is not None:
            return AppionLookup(
                derived, f"derived from BufferHostData {host.row_id} ({host.hostname})"
            )
    if sessions[0]["frame_path"]:
        return AppionLookup(str(sessions[0]["frame_path"]), "SessionData frame path")
    if not image_path:
        return AppionLookup(None, "the session has no image path")
    return AppionLookup(frames_path_of(image_path), "image path with leginon -> frames")


def _movies_of_sessions_ingested_in(
    journal_db: sqlite3.Connection, start: float, end: float
) -> list[sqlite3.Row | tuple[Any, ...]]:
    return list(
        journal_db.execute(
            "SELECT session_id, instrument_id, session_name, dest_path, primary_path, "
            "primary_verified_at FROM movies WHERE target = 'buffer' AND state != ? "
            "AND session_id IS NOT NULL AND instrument_id IS NOT NULL AND session_id IN ("
            "SELECT DISTINCT m.session_id FROM events e JOIN movies m ON m.id = e.movie_id "
            "WHERE e.action = 'ingested' AND e.at BETWEEN ? AND ?) ORDER BY id",
            (PURGED, start, end),
        )
    )


def _found(folder: str, dest: str, primary: str | None, verified: float | None) -> bool:
    here = os.path.normpath(folder)
    if os.path.normpath(os.path.dirname(dest)) == here:
        return True
    return bool(primary and verified and os.path.normpath(os.path.dirname(primary)) == here)


def sessions_appion_cannot_find(
    journal_db: sqlite3.Connection, db: LeginonDB, start: float, end: float
) -> list[dict[str, Any]]:
    """Sessions with movies ingested in [start, end] that have movies Appion would not find
    now: where it looks, what told it so, and the folders the movies are in."""
    groups: dict[tuple[int, int], dict[str, Any]] = {}
    for session_id, instrument_id, name, dest, primary, verified in _movies_of_sessions_ingested_in(
        journal_db, start, end
    ):
        key = (int(session_id), int(instrument_id))
        if key not in groups:
            lookup = appion_frame_path(db, *key)
            groups[key] = {
                "session": str(name),
                "session_id": key[0],
                "instrument_id": key[1],
                "appion_path": lookup.path,
                "appion_source": lookup.source,
                "missing": 0,
                "frames_in": [],
            }
        group = groups[key]
        if group["appion_path"] and _found(group["appion_path"], dest, primary, verified):
            continue
        group["missing"] += 1
        if os.path.dirname(dest) not in group["frames_in"]:
            group["frames_in"].append(os.path.dirname(dest))
    return [group for group in groups.values() if group["missing"]]
