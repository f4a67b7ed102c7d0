"""The crash-safe journal: one SQLite database (WAL mode) shared by ingest, archive and purge.

One row per movie in `movies`, moved through states by the service that owns that step. Each
state change is one committed transaction, written BEFORE the irreversible filesystem step
that depends on it is taken only when the step is safe to repeat, and AFTER it otherwise; the
code in ingest/archive/purge documents which. `events` keeps a line per action (for `status`,
rates and forecasts) and `settings` holds durable flags such as the archive pause.

Durability. A journal opened with `sync_each_commit=True` (the default: one-shot commands)
fsyncs every commit (synchronous=FULL). The ingest and archive services open it with False:
their commits survive a crash of the process at once (SQLite has written them to the WAL)
but reach the device only at `make_durable()`, which is called before every irreversible
step: before a camera copy is removed, and by purge before it removes buffer copies. Why: on
one filesystem an fsync waits for the movie data being written at that moment, so a fully
synchronous commit in the copy thread stalled every copy by as much as the flush of the
previous movie (measured ~75 ms per 64 MiB movie, a third of the copy time). What a power
cut can take back is only states that lead up to an irreversible step, and `recover()`
repairs each of them from what is on disk.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embuffer.journal.escape import one_line
from embuffer.journal.migrations import bring_up_to_date
from embuffer.journal.movie import ACTIVE_INGEST_STATES, PURGED, QUARANTINED, Movie


class JournalReplaced(BaseException):  # noqa: N818 - not an Exception: no handler may catch it
    """The journal file is no longer the one this process opened (deleted, or replaced by
    another file): what it commits now is not on the device under the journal's name, so
    nothing irreversible may follow. Derives from BaseException so that the workers' "log
    and go on" handlers let it through and the service stops (systemd restarts it on the
    journal that is there now)."""


class Journal:
    """Thread-safe access: each thread gets its own SQLite connection."""

    def __init__(self, path: Path, *, sync_each_commit: bool = True) -> None:
        self.path = path
        self.sync_each_commit = sync_each_commit
        self._folder_synced = False
        self._local = threading.local()
        # The threads of one process take turns to write here, so a waiting thread wakes the
        # moment the other commits instead of sleeping in SQLite's busy-handler back-off
        # (measured: up to ~100 ms per write while a verifier thread commits).
        self._write_lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Before any connection of ours writes: a journal of a newer release is refused
        # untouched (JournalTooNew), an older one migrated (migrations.py).
        bring_up_to_date(path)
        opened = os.stat(os.path.realpath(path))
        self._identity = (opened.st_dev, opened.st_ino)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit survives power loss; NORMAL: at the next make_durable() (see top).
        synchronous = "FULL" if self.sync_each_commit else "NORMAL"
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute("PRAGMA busy_timeout=60000")
        return connection

    @property
    def db(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def write(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        """One writing statement (its own transaction), in turn with this process's threads."""
        with self._write_lock:
            return self.db.execute(sql, args)

    def make_durable(self) -> None:
        """Put every transaction committed so far on the device. With synchronous=NORMAL in
        WAL mode the committed-but-unsynced transactions are exactly the WAL's tail (a
        checkpoint syncs the WAL before and the database after copying), so an fsync of the
        WAL file is what FULL would have done at each commit. No lock is held meanwhile:
        the other threads go on committing. Done in every mode: the transactions to make
        durable may be another process's (purge relies on the archive service's)."""
        # SQLite keeps the WAL beside the database file a symlink points to, so resolve it:
        # a wrong name here would read as "no WAL" and sync nothing.
        database = os.path.realpath(self.path)
        self._check_identity(database)
        try:
            fd = os.open(f"{database}-wal", os.O_RDONLY)
        except FileNotFoundError:
            if getattr(self._local, "connection", None) is not None:
                # an open connection in WAL mode always has its WAL: someone removed it
                raise JournalReplaced(
                    f"journal {self.path}: its write-ahead log {database}-wal was removed "
                    "under the service; stopping before anything irreversible"
                ) from None
            return  # no WAL: everything was checkpointed into the (synced) database file
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not self._folder_synced:  # the WAL's own name, once, in case it was just created
            folder = os.open(os.path.dirname(database), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
            self._folder_synced = True

    def _check_identity(self, database: str) -> None:
        try:
            info = os.stat(database)
        except FileNotFoundError:
            info = None
        if info is None or (info.st_dev, info.st_ino) != self._identity:
            what = "was deleted" if info is None else "was replaced by another file"
            raise JournalReplaced(
                f"journal {self.path} {what} while this service had it open; stopping "
                "before anything irreversible (the journal there now is used at restart)"
            )

    # ---- movies -------------------------------------------------------------------------
    def insert_movie(self, **fields: Any) -> int:
        fields.setdefault("first_seen", time.time())
        columns = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        cursor = self.write(
            f"INSERT INTO movies ({columns}) VALUES ({marks})", list(fields.values())
        )
        return int(cursor.lastrowid or 0)

    def update_movie(self, movie_id: int, **fields: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self.write(f"UPDATE movies SET {assignments} WHERE id = ?", [*fields.values(), movie_id])

    def movie(self, movie_id: int) -> Movie:
        row = self.db.execute("SELECT * FROM movies WHERE id = ?", (movie_id,)).fetchone()
        if row is None:
            raise KeyError(f"no movie with id {movie_id}")
        return Movie.from_row(row)

    def movies(self, where: str = "1", args: tuple[Any, ...] = ()) -> list[Movie]:
        rows = self.db.execute(f"SELECT * FROM movies WHERE {where} ORDER BY id", args)
        return [Movie.from_row(row) for row in rows]

    def active_movie_for_source(self, camera: str, source_path: str) -> Movie | None:
        marks = ", ".join("?" for _ in ACTIVE_INGEST_STATES)
        row = self.db.execute(
            f"SELECT * FROM movies WHERE camera = ? AND source_path = ? AND state IN ({marks}) "
            "ORDER BY id DESC LIMIT 1",
            (camera, source_path, *ACTIVE_INGEST_STATES),
        ).fetchone()
        return Movie.from_row(row) if row else None

    def movie_by_dest(self, dest_path: str) -> Movie | None:
        row = self.db.execute(
            "SELECT * FROM movies WHERE dest_path = ? AND state NOT IN (?, ?) "
            "ORDER BY id DESC LIMIT 1",
            (dest_path, QUARANTINED, PURGED),
        ).fetchone()
        return Movie.from_row(row) if row else None

    # ---- events and settings -------------------------------------------------------------
    def event(
        self,
        action: str,
        *,
        movie_id: int | None = None,
        camera: str | None = None,
        nbytes: int | None = None,
        detail: str = "",
    ) -> None:
        self.write(
            "INSERT INTO events (at, movie_id, camera, action, bytes, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            # a detail names camera files and leginondb rows: one event, one line
            (time.time(), movie_id, camera, action, nbytes, one_line(detail)),
        )

    def get_setting(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else None

    def set_setting(self, key: str, value: Any) -> None:
        self.write(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def delete_setting(self, key: str) -> None:
        self.write("DELETE FROM settings WHERE key = ?", (key,))

    def set_session_keep(self, session_name: str, keep: bool) -> None:
        self.write(
            "INSERT INTO session_flags (session_name, keep) VALUES (?, ?) "
            "ON CONFLICT(session_name) DO UPDATE SET keep = excluded.keep",
            (session_name, int(keep)),
        )

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


def open_read_only(journal_path: Path) -> sqlite3.Connection:
    """A read-only connection (the metrics exporter's): it can never disturb the services'
    transactions. The caller opens one snapshot with BEGIN for all its queries."""
    uri = f"file:{journal_path}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None)
    connection.execute("PRAGMA busy_timeout=10000")
    return connection
