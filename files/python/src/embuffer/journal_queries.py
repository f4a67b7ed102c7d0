"""The journal's facts that several parts of embuffer ask for, each written once.

The archive, purge, status, metrics and the outage report all need "what is not on primary
yet"; status and metrics both forecast the intake; the settings keys name the archive pause
and the outage record. They live here so that a change to one of them is one change. Every
query takes a plain SQLite connection: the services pass `journal.db`, the metrics exporter
its own read-only connection.
"""

from __future__ import annotations

import sqlite3
import time
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

# The intake forecast looks back this far ("hours until the buffer is full").
FORECAST_WINDOW_SECONDS = 6 * 3600.0
INTAKE_ACTIONS = ("ingested", "adopted")


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


def intake_bytes_per_hour(db: sqlite3.Connection, now: float | None = None) -> float:
    """Mean bytes per hour that reached the buffer over the forecast window."""
    since = (time.time() if now is None else now) - FORECAST_WINDOW_SECONDS
    marks = ", ".join("?" * len(INTAKE_ACTIONS))
    (total,) = db.execute(
        f"SELECT COALESCE(SUM(bytes), 0) FROM events WHERE action IN ({marks}) AND at >= ?",
        (*INTAKE_ACTIONS, since),
    ).fetchone()
    return float(total) / (FORECAST_WINDOW_SECONDS / 3600.0)


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
