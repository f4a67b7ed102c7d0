"""Write a journal with rows in every state through the `embuffer.journal` of whatever
embuffer is first on sys.path: the fixtures of tests/fixtures/journals/ are made by the code of
earlier commits with it, so the migration tests open journals that code really wrote.

    git worktree add --detach /tmp/embuffer-<commit> <commit>
    PYTHONPATH=/tmp/embuffer-<commit>/files/python/src \\
        python files/python/tests/support/make_journal_fixture.py OUT.sqlite

Only what every release has is used: Journal(path), insert_movie, update_movie, event,
set_setting, set_session_keep, and its `db` connection for the tables that have no method of
their own (held_files, camera_files, camera_load: written only where that code created them).
Columns and states that code does not know are left out, as it would have. This file imports
nothing of the embuffer it runs beside, and nothing newer than Python 3.11 and xxhash.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import xxhash

CAMERA = "k3-cam-01"
CAMERA_SHARE = "/mnt/k3-cam-01/frames"
BUFFER = "/srv/embuffer/frames"
QUARANTINE = "/srv/embuffer/quarantine"
PRIMARY = "/primary/frames"
SESSION = "26dec05a"
DAY = 1796428800.0  # 2026-12-05 00:00 UTC: every time below is an offset from it


def movie_bytes(number: int) -> bytes:
    return bytes((number * 7 + i) % 251 for i in range(4096 + number))


def digest(data: bytes) -> str:
    return str(xxhash.xxh3_128_hexdigest(data))


class FixtureWriter:
    def __init__(self, journal: Any, module: Any) -> None:
        self.journal = journal
        self.module = module
        self.columns = {str(row[1]) for row in journal.db.execute("PRAGMA table_info(movies)")}
        tables = journal.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        self.tables = {str(row[0]) for row in tables}
        self.number = 0

    def state(self, name: str) -> str | None:
        """The state's value in this code, None when it does not know the state."""
        value = getattr(self.module, name, None)
        return str(value) if value is not None else None

    def movie(self, state_name: str, **fields: Any) -> int | None:
        state = self.state(state_name)
        if state is None:
            return None
        self.number += 1
        stem = f"20261205_{self.number:05d}_00"
        data = movie_bytes(self.number)
        seen = DAY + 60.0 * self.number
        row: dict[str, Any] = {
            "camera": CAMERA,
            "source_path": f"{CAMERA_SHARE}/{stem}.tif",
            "kind": "file",
            "state": state,
            "size": len(data),
            "source_mtime_ns": int((seen - 5) * 1e9),
            "hash": digest(data),
            "first_seen": seen,
            "closed_at": seen - 5,
            "image_table": "AcquisitionImageData",
            "image_id": 1000 + self.number,
            "image_filename": f"{SESSION}_{self.number:05d}en",
            "session_id": 77,
            "session_name": SESSION,
            "uid": 1234,
            "gid": 1234,
            "target": "buffer",
            "dest_path": f"{BUFFER}/joe/{SESSION}/rawdata/{SESSION}_{self.number:05d}en.frames.tif",
            "rel_path": f"joe/{SESSION}/rawdata/{SESSION}_{self.number:05d}en.frames.tif",
            "instrument_id": 3,
            "frame_path_registered": 1,
        }
        row.update(fields)
        known = {key: value for key, value in row.items() if key in self.columns}
        return int(self.journal.insert_movie(**known))

    def archived(self, movie_id: int, **fields: Any) -> None:
        """What the archive adds to a row whose copy is verified on primary."""
        movie = self.journal.db.execute(
            "SELECT rel_path, hash, size, first_seen FROM movies WHERE id = ?", (movie_id,)
        ).fetchone()
        row: dict[str, Any] = {
            "primary_path": f"{PRIMARY}/{movie[0]}",
            "primary_hash": movie[1],
            "primary_size": movie[2],
            "primary_verified_at": movie[3] + 3600,
            "buffer_mtime_ns": int((movie[3] - 5) * 1e9),
            "buffer_ctime_ns": int((movie[3] + 1) * 1e9),
            "buffer_inode": 500000 + movie_id,
            "buffer_device": 2049,
        }
        row.update(fields)
        self.journal.update_movie(
            movie_id, **{key: value for key, value in row.items() if key in self.columns}
        )

    def event(self, action: str, movie_id: int | None, nbytes: int | None, detail: str) -> None:
        self.journal.event(action, movie_id=movie_id, camera=CAMERA, nbytes=nbytes, detail=detail)

    def table_row(self, table: str, values: dict[str, Any]) -> None:
        if table not in self.tables:
            return
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self.journal.transaction() as db:
            db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(values.values()))


def write_movies(writer: FixtureWriter) -> None:
    """One row at least per state a movie goes through, with the fields each state has."""
    writer.movie("SEEN", hash=None, size=None, image_id=None, dest_path=None, rel_path=None)
    writer.movie("MATCHED", hash=None, reason="no room on the buffer: 12 GB needed")
    writer.movie("COPYING", hash=None, copy_started_at=DAY + 700)
    writer.movie("COPIED", copy_started_at=DAY + 760, buffer_visible_at=DAY + 762)
    writer.movie("VERIFIED", verified_at=DAY + 830)
    done = writer.movie("DONE", verified_at=DAY + 900, source_removed_at=DAY + 901)
    writer.event("ingested", done, 4102, "a fixture movie")
    archived = writer.movie("DONE", verified_at=DAY + 950, source_removed_at=DAY + 951)
    if archived is not None:
        writer.archived(archived)
        writer.event("archived", archived, 4103, "to primary")
    failing = writer.movie("DONE", verified_at=DAY + 990, source_removed_at=DAY + 991)
    if failing is not None:
        writer.journal.update_movie(failing, archive_error="primary: [Errno 28] No space left")
    purged = writer.movie("PURGED", verified_at=DAY + 1000, source_removed_at=DAY + 1001)
    if purged is not None:
        writer.archived(purged)
        evidence = {"buffer_path": "x", "primary_hash": "same", "by": "purge"}
        writer.journal.update_movie(
            purged, purged_at=DAY + 90000, purge_evidence=json.dumps(evidence)
        )
        writer.event("purged", purged, 4105, "primary verified")
    writer.movie(
        "QUARANTINED",
        target="quarantine",
        dest_path=f"{QUARANTINE}/{CAMERA}/20261205_00010_00.tif",
        rel_path=None,
        image_id=None,
        reason="no Leginon image has frames name 20261205_00010_00 for camera host k3-cam-01",
    )
    writer.movie("RELEASED", target="quarantine", reason="released to /home/joe/x.tif")
    writer.movie("REMOVED", target="quarantine", purge_evidence='{"why": "test shot"}')
    writer.movie("VANISHED", hash=None, reason="gone from the camera share before its copy")
    manifest = [["0001.tif", 100, digest(b"a")], ["0002.tif", 100, digest(b"b")]]
    writer.movie(
        "DONE",
        kind="dir",
        source_path=f"{CAMERA_SHARE}/20261205_00014_00.frames",
        manifest=json.dumps(manifest),
        size=200,
        verified_at=DAY + 1400,
    )
    writer.movie("DONE", camera="adopted", source_path=None, reason="adopted from the buffer")
    writer.movie("QUARANTINED", source_path=f"{CAMERA_SHARE}/name with\\nnewline µ.tif")


def write_other_tables(writer: FixtureWriter) -> None:
    writer.event("verify_failed", None, None, "a re-read differed")
    writer.event("error", None, None, "[Errno 5] Input/output error")
    writer.journal.set_setting("archive_pause", {"since": DAY, "reason": "primary maintenance"})
    writer.journal.set_setting("outage", {"start": DAY, "end": DAY + 7200, "reason": "fixture"})
    writer.journal.set_session_keep(SESSION, True)
    writer.table_row(
        "held_files",
        {
            "camera": CAMERA,
            "source_path": f"{CAMERA_SHARE}/held.tif",
            "failures": 5,
            "first_failed_at": DAY + 10,
            "last_failed_at": DAY + 40,
            "held_since": DAY + 40,
            "last_error": "[Errno 5] Input/output error",
        },
    )
    writer.table_row(
        "held_files",
        {
            "camera": CAMERA,
            "source_path": f"{CAMERA_SHARE}/failing.tif",
            "failures": 2,
            "first_failed_at": DAY + 20,
            "last_failed_at": DAY + 22,
            "held_since": None,
            "last_error": "source changed while it was copied",
        },
    )
    writer.table_row(
        "camera_files",
        {
            "camera": CAMERA,
            "source_path": f"{CAMERA_SHARE}/waiting.tif",
            "kind": "file",
            "size": 123456,
            "mtime_ns": int(DAY * 1e9),
            "entries": 1,
            "complete": 1,
            "verdict_reason": "tiff: 40 pages, whole",
            "expected_size": None,
            "frames": 40,
            "settled_at": DAY + 5,
            "looks": 3,
            "next_look_at": DAY + 65,
        },
    )
    writer.table_row(
        "camera_load",
        {"camera": CAMERA, "counter": "leginondb_queries", "total": 812.0, "updated_at": DAY},
    )


def main(output: Path) -> int:
    from embuffer import journal as module  # the code under PYTHONPATH: the one that writes

    if output.exists():
        print(f"{output} exists: not overwritten", file=sys.stderr)
        return 1
    journal = module.Journal(output)
    writer = FixtureWriter(journal, module)
    write_movies(writer)
    write_other_tables(writer)
    journal.close()
    # one file, as a fixture is kept: the write-ahead log folded into it
    import sqlite3

    connection = sqlite3.connect(output)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    print(f"{output}: {writer.number} movies written by {module.__file__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
