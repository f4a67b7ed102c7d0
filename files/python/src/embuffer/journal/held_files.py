"""The `held_files` table: camera files that failed repeatedly (see ingest/holds.py)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from embuffer import journal as j
from embuffer.journal.escape import one_line


def held_rows(db: sqlite3.Connection, camera: str | None) -> list[tuple[Any, ...]]:
    """(camera, source_path, failures, held_since, last_error, last_failed_at) by path."""
    sql = (
        "SELECT camera, source_path, failures, held_since, last_error, last_failed_at "
        "FROM held_files"
    )
    args: tuple[str, ...] = ()
    if camera is not None:
        sql += " WHERE camera = ?"
        args = (camera,)
    return [tuple(row) for row in db.execute(sql + " ORDER BY source_path", args)]


def record_failure(
    journal: j.Journal,
    camera: str,
    source: str,
    failures: int,
    held_since: float | None,
    error: str,
    *,
    now_held: bool,
) -> None:
    """One more failure of a camera file; with now_held, the `held` event in the same commit."""
    now = time.time()
    # an error's text may quote a camera name that is not UTF-8, which SQLite cannot store
    error = error.encode("utf-8", "backslashreplace").decode("utf-8")
    with journal.transaction() as db:
        db.execute(
            "INSERT INTO held_files (camera, source_path, failures, first_failed_at, "
            "last_failed_at, held_since, last_error) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(camera, source_path) DO UPDATE SET failures = excluded.failures, "
            "last_failed_at = excluded.last_failed_at, last_error = excluded.last_error, "
            "held_since = COALESCE(held_files.held_since, excluded.held_since)",
            (camera, source, failures, now, now, held_since, error),
        )
        if now_held:
            db.execute(
                "INSERT INTO events (at, camera, action, detail) VALUES (?, ?, 'held', ?)",
                (now, camera, one_line(f"{source}: {error}")),
            )


def forget_failures(journal: j.Journal, camera: str, source: str) -> None:
    journal.write("DELETE FROM held_files WHERE camera = ? AND source_path = ?", (camera, source))


def held_counts(db: sqlite3.Connection) -> dict[str, int]:
    """Files held now, per camera (none in a journal from before holds existed)."""
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'held_files'"
    ).fetchone()
    if not exists:
        return {}
    return {
        str(camera): int(count)
        for camera, count in db.execute(
            "SELECT camera, COUNT(*) FROM held_files WHERE held_since IS NOT NULL GROUP BY 1"
        )
    }
