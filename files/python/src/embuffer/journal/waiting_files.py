"""The `camera_files` and `camera_load` tables: what ingest found of the camera files that wait
on a camera share after they settled (ingest/waiting.py), and the cumulative cost of each
camera's ingest on leginondb and on the camera share (ingest/load.py, read by the metrics).

Both tables came after the first release: a journal written before them gets them when a
service opens it (schema.py), and the read-only metrics exporter, which may read such a
journal before any service has, finds no rows instead of an error.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass

from embuffer import journal as j


@dataclass(frozen=True)
class WaitingRecord:
    """One settled camera file as ingest judged it, and when it is to be looked at again."""

    source_path: str
    kind: str  # 'file' or 'dir'
    size: int
    mtime_ns: int
    entries: int
    complete: bool | None  # the structure verdict (None: a format without a check)
    verdict_reason: str
    expected_size: int | None
    frames: int | None
    settled_at: float
    looks: int
    next_look_at: float


_COLUMNS = (
    "source_path, kind, size, mtime_ns, entries, complete, verdict_reason, expected_size, "
    "frames, settled_at, looks, next_look_at"
)


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def waiting_records(db: sqlite3.Connection, camera: str) -> list[WaitingRecord]:
    if not _has_table(db, "camera_files"):
        return []
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM camera_files WHERE camera = ? ORDER BY source_path", (camera,)
    )
    return [
        WaitingRecord(
            str(path),
            str(kind),
            int(size),
            int(mtime_ns),
            int(entries),
            None if complete is None else bool(complete),
            str(reason),
            None if expected is None else int(expected),
            None if frames is None else int(frames),
            float(settled_at),
            int(looks),
            float(next_at),
        )
        for (
            path,
            kind,
            size,
            mtime_ns,
            entries,
            complete,
            reason,
            expected,
            frames,
            settled_at,
            looks,
            next_at,
        ) in rows
    ]


def _storable(path: str) -> bool:
    """A camera name that is not UTF-8 (odd_names.py) cannot be a SQLite text: such a file
    waits in memory only, and is judged afresh after a restart."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def save_waiting(journal: j.Journal, camera: str, record: WaitingRecord) -> None:
    if not _storable(record.source_path):
        return
    values = astuple(record)
    marks = ", ".join("?" for _ in values)
    journal.write(
        f"INSERT OR REPLACE INTO camera_files (camera, {_COLUMNS}) VALUES (?, {marks})",
        (camera, *values),
    )


def forget_waiting(journal: j.Journal, camera: str, source_paths: Iterable[str]) -> None:
    paths = [(camera, path) for path in source_paths if _storable(path)]
    if not paths:
        return
    with journal.transaction() as db:
        db.executemany("DELETE FROM camera_files WHERE camera = ? AND source_path = ?", paths)


def forget_other_cameras(journal: j.Journal, cameras: Iterable[str]) -> None:
    """Drop what waited on the shares of cameras no longer configured: nothing judges those
    files any more, and the metrics would count them forever."""
    kept = list(cameras)
    marks = ", ".join("?" for _ in kept)
    journal.write(f"DELETE FROM camera_files WHERE camera NOT IN ({marks})", kept)


def waiting_counts(db: sqlite3.Connection) -> dict[str, int]:
    """Settled files waiting on each camera share, as ingest last recorded them."""
    if not _has_table(db, "camera_files"):
        return {}
    return {
        str(camera): int(count)
        for camera, count in db.execute("SELECT camera, COUNT(*) FROM camera_files GROUP BY 1")
    }


# ---- camera_load ---------------------------------------------------------------------------
def add_load(journal: j.Journal, camera: str, amounts: Mapping[str, float]) -> None:
    """Add to the cumulative totals of one camera (one transaction, so a reader never sees
    half of a flush)."""
    now = time.time()
    with journal.transaction() as db:
        db.executemany(
            "INSERT INTO camera_load (camera, counter, total, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(camera, counter) DO UPDATE SET total = total + excluded.total, "
            "updated_at = excluded.updated_at",
            [(camera, counter, float(amount), now) for counter, amount in amounts.items()],
        )


def load_totals(db: sqlite3.Connection) -> dict[tuple[str, str], float]:
    """(camera, counter) -> cumulative total."""
    if not _has_table(db, "camera_load"):
        return {}
    return {
        (str(camera), str(counter)): float(total)
        for camera, counter, total in db.execute("SELECT camera, counter, total FROM camera_load")
    }
