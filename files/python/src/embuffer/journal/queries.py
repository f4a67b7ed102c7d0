"""The journal's facts that several parts of embuffer ask for, each written once.

The archive, purge, status, metrics and the outage report all need "what is not on primary
yet"; status and metrics both forecast the intake; the settings keys name the archive pause
and the outage record. They live here so that a change to one of them is one change. Every
query takes a plain SQLite connection: the services pass `journal.db`, the metrics exporter
its own read-only connection.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from embuffer import journal as j

# The keys of the `settings` table.
ARCHIVE_PAUSE_KEY = "archive_pause"  # {"since", "reason"} while `embuffer archive pause` holds
OUTAGE_KEY = "outage"  # the outage in force (or the last one, with its "end")
OUTAGE_HISTORY_KEY = "outage_history"  # the outages that ended, oldest first

# A movie waiting for primary storage: its buffer copy is the only copy off the camera.
BACKLOG_CONDITION = "state IN (?, ?) AND target = 'buffer' AND primary_verified_at IS NULL"
BACKLOG_ARGS = (j.DONE, j.VERIFIED)


@dataclass(frozen=True)
class Backlog:
    files: int = 0
    bytes: int = 0
    oldest_verified_at: float | None = None  # when the longest-waiting one reached the buffer


def archive_backlog(db: sqlite3.Connection) -> Backlog:
    row = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(verified_at) FROM movies "
        f"WHERE {BACKLOG_CONDITION}",
        BACKLOG_ARGS,
    ).fetchone()
    return Backlog(int(row[0]), int(row[1]), None if row[2] is None else float(row[2]))


def archive_backlog_by_camera(db: sqlite3.Connection) -> dict[str, Backlog]:
    return {
        str(camera): Backlog(int(count), int(nbytes), None if first is None else float(first))
        for camera, count, nbytes, first in db.execute(
            "SELECT camera, COUNT(*), COALESCE(SUM(size), 0), MIN(verified_at) FROM movies "
            f"WHERE {BACKLOG_CONDITION} GROUP BY camera",
            BACKLOG_ARGS,
        )
    }


def backlog_movies(journal: j.Journal) -> list[j.Movie]:
    """The movies waiting for primary, oldest row first."""
    return journal.movies(BACKLOG_CONDITION, BACKLOG_ARGS)


def mark_copying(journal: j.Journal, movie_id: int, fields: dict[str, Any]) -> None:
    """A copy starts: the row's new fields, and one more attempt, in one statement."""
    for name in fields:
        if name not in j.MOVIE_COLUMNS:
            raise KeyError(f"movies has no column {name!r}")
    assignments = ", ".join(f"{name} = ?" for name in fields)
    journal.write(
        f"UPDATE movies SET {assignments}, attempts = attempts + 1 WHERE id = ?",
        [*fields.values(), movie_id],
    )


def forget_unplaced_retry(journal: j.Journal, movie_id: int) -> None:
    """Remove the row a quarantine retry opened when it found no place after all (only
    while it is still `seen`: a row that went further is a record that stays)."""
    journal.write("DELETE FROM movies WHERE id = ? AND state = ?", (movie_id, j.SEEN))


# ---- movies ------------------------------------------------------------------------------
def state_counts(db: sqlite3.Connection, camera: str) -> dict[str, int]:
    return {
        str(state): int(count)
        for state, count in db.execute(
            "SELECT state, COUNT(*) FROM movies WHERE camera = ? GROUP BY state", (camera,)
        )
    }


def archived_count(db: sqlite3.Connection) -> int:
    (count,) = db.execute(
        "SELECT COUNT(*) FROM movies WHERE primary_verified_at IS NOT NULL"
    ).fetchone()
    return int(count)


def known_rel_paths(db: sqlite3.Connection) -> set[str]:
    """Buffer paths (relative to the root) the journal holds a live row for."""
    return {
        str(rel)
        for (rel,) in db.execute(
            "SELECT rel_path FROM movies WHERE rel_path IS NOT NULL AND state != ?", (j.PURGED,)
        )
    }


def purge_candidates(db: sqlite3.Connection, after: tuple[float, int], batch: int) -> list[j.Movie]:
    """Buffer copies verified on primary, not in a "keep" session, oldest first from `after`
    (keyset pagination on the movies_purge index: a huge journal is never loaded)."""
    return [
        j.Movie.from_row(row)
        for row in db.execute(
            "SELECT * FROM movies WHERE state = ? AND target = 'buffer' "
            "AND primary_verified_at IS NOT NULL "
            "AND (COALESCE(verified_at, first_seen), id) > (?, ?) "
            "AND (session_name IS NULL OR session_name NOT IN "
            "(SELECT session_name FROM session_flags WHERE keep = 1)) "
            "ORDER BY COALESCE(verified_at, first_seen), id LIMIT ?",
            (j.DONE, *after, batch),
        )
    ]


def quarantined_movies(journal: j.Journal, camera: str | None = None) -> list[j.Movie]:
    if camera is None:
        return journal.movies("state = ?", (j.QUARANTINED,))
    return journal.movies("state = ? AND camera = ?", (j.QUARANTINED, camera))


def unfinished_movies(journal: j.Journal, camera: str) -> list[j.Movie]:
    """A camera's movies between first sight and camera copy removal (what recovery finishes)."""
    marks = ", ".join("?" for _ in j.ACTIVE_INGEST_STATES)
    return journal.movies(f"camera = ? AND state IN ({marks})", (camera, *j.ACTIVE_INGEST_STATES))


def archived_in_session(journal: j.Journal, session: str) -> list[j.Movie]:
    return journal.movies("session_name = ? AND primary_path IS NOT NULL", (session,))


def in_flight_counts(db: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """Movies per (camera, state) between first sight and camera copy removal."""
    marks = ", ".join("?" for _ in j.ACTIVE_INGEST_STATES)
    return {
        (str(camera), str(state)): int(count)
        for camera, state, count in db.execute(
            f"SELECT camera, state, COUNT(*) FROM movies WHERE state IN ({marks}) GROUP BY 1, 2",
            j.ACTIVE_INGEST_STATES,
        )
    }


def quarantine_totals(db: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """(movies, bytes) in quarantine now, per camera."""
    return {
        str(camera): (int(count), int(nbytes))
        for camera, count, nbytes in db.execute(
            "SELECT camera, COUNT(*), COALESCE(SUM(size), 0) FROM movies WHERE state = ? "
            "GROUP BY camera",
            (j.QUARANTINED,),
        )
    }


def settings_read(db: sqlite3.Connection, *keys: str) -> dict[str, Any]:
    """The decoded values of some settings keys (absent keys are left out)."""
    marks = ", ".join("?" for _ in keys)
    return {
        str(key): json.loads(value)
        for key, value in db.execute(
            f"SELECT key, value FROM settings WHERE key IN ({marks})", keys
        )
    }


def quarantined_elsewhere(db: sqlite3.Connection, dest: str, movie_id: int) -> bool:
    """Another quarantined row already keeps its file under `dest`."""
    row = db.execute(
        "SELECT 1 FROM movies WHERE dest_path = ? AND state = ? AND id != ? LIMIT 1",
        (dest, j.QUARANTINED, movie_id),
    ).fetchone()
    return row is not None


def previous_references(
    db: sqlite3.Connection, session_id: int, movie_id: int
) -> tuple[int | None, int | None] | None:
    """(norm, dark) of the session's latest other movie that had references."""
    row = db.execute(
        "SELECT norm_id, dark_id FROM movies WHERE session_id = ? AND id != ? AND "
        "(norm_id IS NOT NULL OR dark_id IS NOT NULL) ORDER BY id DESC LIMIT 1",
        (session_id, movie_id),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def movie_by_primary_path(db: sqlite3.Connection, path: str) -> j.Movie | None:
    row = db.execute(
        "SELECT * FROM movies WHERE primary_path = ? ORDER BY id DESC LIMIT 1", (path,)
    ).fetchone()
    return None if row is None else j.Movie.from_row(row)


# ---- Appion's buffer frame paths for frames placed during an outage -----------------------
FRAME_PATH_PENDING = 0  # to record in BufferFramePathData once the camera's row is enabled
FRAME_PATH_RECORDED = 1


def frame_path_groups(db: sqlite3.Connection, camera: str | None) -> set[tuple[int, int, str]]:
    """(session_id, instrument_id, buffer path of a movie) of rows still to record."""
    sql = (
        "SELECT DISTINCT session_id, instrument_id, dest_path FROM movies "
        "WHERE frame_path_registered = ? AND target = 'buffer' AND state != ?"
    )
    args: list[object] = [FRAME_PATH_PENDING, j.PURGED]
    if camera is not None:
        sql += " AND camera = ?"
        args.append(camera)
    return {
        (int(session), int(instrument), str(dest))
        for session, instrument, dest in db.execute(sql, args)
        if session is not None and instrument is not None and dest
    }


def mark_frame_paths_recorded(journal: j.Journal, session_id: int, instrument_id: int) -> None:
    journal.write(
        "UPDATE movies SET frame_path_registered = ? WHERE frame_path_registered = ? "
        "AND session_id = ? AND instrument_id = ?",
        (FRAME_PATH_RECORDED, FRAME_PATH_PENDING, session_id, instrument_id),
    )
