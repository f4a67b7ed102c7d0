"""The movie row and its states: what one line of the journal's `movies` table says."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# Ingest states, in order. A movie is safe (exists verified somewhere) in every state.
SEEN = "seen"  # noticed on the camera share, not yet settled
MATCHED = "matched"  # Leginon image found, destination decided, copy not started
COPYING = "copying"  # a temporary file may exist in the destination folder
COPIED = "copied"  # final name in place (fsynced); re-read verification pending
VERIFIED = "verified"  # buffer copy re-read and equal; camera copy may be removed
DONE = "done"  # camera copy removed; the buffer holds the only copy (for now)
QUARANTINED = "quarantined"  # moved (verified) into the quarantine folder, reason recorded
PURGED = "purged"  # buffer copy removed after primary was verified
RELEASED = "released"  # a quarantined file placed by `quarantine retry` or moved out by `release`
REMOVED = "removed"  # a quarantined file deleted on request (`quarantine remove`), with evidence
VANISHED = "vanished"  # the camera file disappeared before embuffer copied it
ACTIVE_INGEST_STATES = (SEEN, MATCHED, COPYING, COPIED, VERIFIED)


@dataclass(frozen=True)
class Movie:
    """A row of `movies`, typed (one field per column; see SCHEMA and ADDED_COLUMNS)."""

    id: int
    camera: str
    state: str
    first_seen: float
    kind: str = "file"
    source_path: str | None = None
    size: int | None = None
    source_mtime_ns: int | None = None
    hash: str | None = None
    manifest: str | None = None
    closed_at: float | None = None
    copy_started_at: float | None = None
    buffer_visible_at: float | None = None
    verified_at: float | None = None
    source_removed_at: float | None = None
    image_table: str | None = None
    image_id: int | None = None
    image_filename: str | None = None
    session_id: int | None = None
    session_name: str | None = None
    norm_id: int | None = None
    dark_id: int | None = None
    target: str | None = None
    dest_path: str | None = None
    rel_path: str | None = None
    uid: int | None = None
    gid: int | None = None
    reason: str | None = None
    attempts: int = 0
    primary_path: str | None = None
    primary_hash: str | None = None
    primary_size: int | None = None
    primary_verified_at: float | None = None
    archive_error: str | None = None
    purged_at: float | None = None
    purge_evidence: str | None = None
    instrument_id: int | None = None
    frame_path_registered: int | None = None
    buffer_mtime_ns: int | None = None
    buffer_ctime_ns: int | None = None
    buffer_inode: int | None = None
    buffer_device: int | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row | dict[str, Any]) -> Movie:
        values = dict(row)
        unknown = set(values) - MOVIE_COLUMNS
        if unknown:  # a column added to SCHEMA must be added here too
            raise KeyError(f"movies columns without a Movie field: {sorted(unknown)}")
        return cls(**values)

    @property
    def dest(self) -> Path:
        """Where the copy lives (buffer or quarantine); only for rows that have one."""
        return _path_of(self, "dest_path", self.dest_path)

    @property
    def source(self) -> Path:
        """The camera file; every row of a camera has one (not the archive's adoptions)."""
        return _path_of(self, "source_path", self.source_path)

    @property
    def primary(self) -> Path:
        """The copy on primary storage; only for archived rows."""
        return _path_of(self, "primary_path", self.primary_path)

    @property
    def members(self) -> list[tuple[str, int, str]]:
        entries = json.loads(self.manifest or "[]")
        return [(str(path), int(size), str(digest)) for path, size, digest in entries]


MOVIE_COLUMNS = frozenset(item.name for item in fields(Movie))


def _path_of(movie: Movie, column: str, value: str | None) -> Path:
    if not value:
        raise ValueError(f"movie {movie.id} ({movie.state}) has no {column}")
    return Path(value)
