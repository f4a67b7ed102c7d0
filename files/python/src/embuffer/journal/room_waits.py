"""What the space budget leaves behind in the journal: camera files waiting on the share for
room (their row's reason begins "no room: ", ingest/room.py), and quarantine's oldest file."""

from __future__ import annotations

import sqlite3

from embuffer.journal.movie import ACTIVE_INGEST_STATES, QUARANTINED

NO_ROOM_LIKE = "no room: %"
QUARANTINE_WAIT_LIKE = "no room: quarantine%"


def waiting_for_room(db: sqlite3.Connection) -> dict[tuple[str, str], int]:
    """Files per (camera, kind) that wait on the camera share for room; kind is "quarantine"
    (stopped at the reserve) or "buffer" (a placed movie that does not fit)."""
    marks = ", ".join("?" for _ in ACTIVE_INGEST_STATES)
    rows = db.execute(
        "SELECT camera, CASE WHEN reason LIKE ? THEN 'quarantine' ELSE 'buffer' END, COUNT(*) "
        f"FROM movies WHERE state IN ({marks}) AND reason LIKE ? GROUP BY 1, 2",
        (QUARANTINE_WAIT_LIKE, *ACTIVE_INGEST_STATES, NO_ROOM_LIKE),
    )
    return {(str(camera), str(kind)): int(count) for camera, kind, count in rows}


def oldest_quarantined_at(db: sqlite3.Connection) -> float | None:
    """When the file longest in quarantine went there (its camera copy's removal)."""
    row = db.execute(
        "SELECT MIN(COALESCE(source_removed_at, first_seen)) FROM movies WHERE state = ?",
        (QUARANTINED,),
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])
