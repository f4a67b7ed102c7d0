"""The questions asked of the journal's `events` table: what happened, when, how much.

Status, the console, the outage report and the metrics exporter read these; the services only
append events (Journal.event). Every function takes a plain SQLite connection: the services
pass `journal.db`, the metrics exporter its own read-only snapshot.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

# The intake forecast looks back this far ("hours until the buffer is full").
FORECAST_WINDOW_SECONDS = 6 * 3600.0
INTAKE_ACTIONS = ("ingested", "adopted")


def intake_bytes_per_hour(db: sqlite3.Connection, now: float | None = None) -> float:
    """Mean bytes per hour that reached the buffer over the forecast window."""
    since = (time.time() if now is None else now) - FORECAST_WINDOW_SECONDS
    marks = ", ".join("?" * len(INTAKE_ACTIONS))
    (total,) = db.execute(
        f"SELECT COALESCE(SUM(bytes), 0) FROM events WHERE action IN ({marks}) AND at >= ?",
        (*INTAKE_ACTIONS, since),
    ).fetchone()
    return float(total) / (FORECAST_WINDOW_SECONDS / 3600.0)


def latest_event(
    db: sqlite3.Connection, action: str, camera: str | None = None
) -> tuple[float, str] | None:
    """(time, detail) of the newest event of one action (for one camera), through the
    events_action_at / events_action_camera_at index."""
    where, args = (
        ("action = ?", (action,))
        if camera is None
        else (
            "action = ? AND camera = ?",
            (action, camera),
        )
    )
    row = db.execute(
        f"SELECT at, COALESCE(detail, '') FROM events WHERE {where} ORDER BY at DESC LIMIT 1",
        args,
    ).fetchone()
    return None if row is None else (float(row[0]), str(row[1]))


def recent_events(db: sqlite3.Connection, action: str, limit: int) -> list[tuple[float, str, str]]:
    """(time, camera, detail) of the newest events of one action, newest first."""
    return [
        (float(at), str(camera), str(detail))
        for at, camera, detail in db.execute(
            "SELECT at, COALESCE(camera, ''), COALESCE(detail, '') FROM events "
            "WHERE action = ? ORDER BY at DESC LIMIT ?",
            (action, limit),
        )
    ]


def bytes_since(db: sqlite3.Connection, action: str, camera: str, since: float) -> int:
    (total,) = db.execute(
        "SELECT COALESCE(SUM(bytes), 0) FROM events WHERE action = ? AND camera = ? AND at >= ?",
        (action, camera, since),
    ).fetchone()
    return int(total)


def ingested_between(db: sqlite3.Connection, start: float, end: float) -> list[tuple[str, int]]:
    """(buffer path, bytes) of every movie ingested in [start, end], in order."""
    return [
        (str(dest), int(nbytes))
        for dest, nbytes in db.execute(
            "SELECT m.dest_path, COALESCE(e.bytes, 0) FROM events e "
            "JOIN movies m ON m.id = e.movie_id "
            "WHERE e.action = 'ingested' AND e.at BETWEEN ? AND ? ORDER BY e.at",
            (start, end),
        )
    ]


def newest_event_id(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])


def action_totals(
    db: sqlite3.Connection, actions: Iterable[str], window: tuple[int, int]
) -> list[tuple[str, str, int, int, float]]:
    """(action, camera, events, bytes, newest time) of the events with ids in (low, high]."""
    wanted = tuple(actions)
    marks = ", ".join("?" for _ in wanted)
    # the movie is looked up only for events written without a camera (adoptions)
    camera = "COALESCE(e.camera, (SELECT m.camera FROM movies m WHERE m.id = e.movie_id), '')"
    return [
        (str(action), str(name), int(count), int(nbytes), float(last_at))
        for action, name, count, nbytes, last_at in db.execute(
            f"SELECT e.action, {camera}, COUNT(*), COALESCE(SUM(e.bytes), 0), MAX(e.at) "
            f"FROM events e WHERE e.id > ? AND e.id <= ? AND e.action IN ({marks}) GROUP BY 1, 2",
            (*window, *wanted),
        )
    ]


# The durations the metrics histogram, each from the movie row of an event. Camera clocks
# (mtime over CIFS) can run ahead of the buffer's, hence the clamp at zero where they are used.
DETECTION_DURATION = "m.copy_started_at - m.closed_at"  # camera's last write to copy start
TIME_TO_PRIMARY_DURATION = "m.primary_verified_at - COALESCE(m.closed_at, m.verified_at)"


def duration_buckets(
    db: sqlite3.Connection,
    duration: str,
    bounds: tuple[float, ...],
    actions: tuple[str, ...],
    window: tuple[int, int],
) -> list[tuple[str, int, int, float]]:
    """(camera, bucket, observations, sum) of one duration over the events with ids in
    (low, high]; bucket i holds values <= bounds[i], len(bounds) those above the last bound.
    One CASE per row picks the bucket (it stops at the first bound that holds)."""
    if duration not in (DETECTION_DURATION, TIME_TO_PRIMARY_DURATION):
        raise ValueError(f"not a journal duration: {duration!r}")
    slot = " ".join(f"WHEN v <= ? THEN {index}" for index in range(len(bounds)))
    marks = ", ".join("?" for _ in actions)
    sql = (
        f"SELECT camera, CASE {slot} ELSE {len(bounds)} END, COUNT(*), TOTAL(v) FROM ("
        f"  SELECT COALESCE(e.camera, m.camera, '') AS camera, MAX(0.0, {duration}) AS v"
        "   FROM events e JOIN movies m ON m.id = e.movie_id"
        f"  WHERE e.id > ? AND e.id <= ? AND e.action IN ({marks})"
        f"  AND ({duration}) IS NOT NULL"
        ") GROUP BY 1, 2"
    )
    return [
        (str(camera), int(index), int(count), float(total))
        for camera, index, count, total in db.execute(sql, (*bounds, *window, *actions))
    ]
