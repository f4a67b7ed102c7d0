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

import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
RELEASED = "released"  # a quarantined file that `quarantine retry` placed after all
VANISHED = "vanished"  # the camera file disappeared before embuffer copied it
ACTIVE_INGEST_STATES = (SEEN, MATCHED, COPYING, COPIED, VERIFIED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS movies (
  id INTEGER PRIMARY KEY,
  camera TEXT NOT NULL,              -- InstrumentData.hostname; 'adopted' for archive adoptions
  source_path TEXT,                  -- path on the camera share
  kind TEXT NOT NULL DEFAULT 'file', -- 'file' or 'dir' (DE .frames folders)
  state TEXT NOT NULL,
  size INTEGER,                      -- bytes (sum of members for a folder)
  source_mtime_ns INTEGER,
  hash TEXT,                         -- xxh3-128 hex; for folders, over the manifest
  manifest TEXT,                     -- JSON [[relpath, size, hash], ...] for folders
  first_seen REAL NOT NULL,
  closed_at REAL,                    -- the camera's last write (source mtime)
  copy_started_at REAL,
  buffer_visible_at REAL,
  verified_at REAL,
  source_removed_at REAL,
  image_table TEXT, image_id INTEGER, image_filename TEXT,
  session_id INTEGER, session_name TEXT,
  norm_id INTEGER, dark_id INTEGER,
  target TEXT,                       -- 'buffer' or 'quarantine': where dest_path lives
  dest_path TEXT,                    -- final path on the buffer (or in quarantine)
  rel_path TEXT,                     -- dest_path relative to the buffer root
  uid INTEGER, gid INTEGER,
  reason TEXT,                       -- why quarantined / last error
  attempts INTEGER NOT NULL DEFAULT 0,
  primary_path TEXT, primary_hash TEXT, primary_size INTEGER, primary_verified_at REAL,
  archive_error TEXT,
  purged_at REAL, purge_evidence TEXT
);
CREATE TABLE IF NOT EXISTS held_files (  -- camera files that failed repeatedly: kept, retried
  camera TEXT NOT NULL,
  source_path TEXT NOT NULL,
  failures INTEGER NOT NULL,
  first_failed_at REAL NOT NULL,
  last_failed_at REAL NOT NULL,
  held_since REAL,                   -- NULL until the failures reach the hold limit
  last_error TEXT NOT NULL,
  PRIMARY KEY (camera, source_path)
);
CREATE INDEX IF NOT EXISTS movies_active ON movies(camera, source_path, state);
CREATE INDEX IF NOT EXISTS movies_state ON movies(state);
CREATE INDEX IF NOT EXISTS movies_camera_state ON movies(camera, state);
CREATE INDEX IF NOT EXISTS movies_rel ON movies(rel_path);
CREATE INDEX IF NOT EXISTS movies_archive ON movies(primary_verified_at, state);
CREATE INDEX IF NOT EXISTS movies_purge ON movies(state, COALESCE(verified_at, first_seen), id);
CREATE INDEX IF NOT EXISTS movies_dest ON movies(dest_path);
CREATE INDEX IF NOT EXISTS movies_session ON movies(session_name);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY,
  at REAL NOT NULL,
  movie_id INTEGER,
  camera TEXT,
  action TEXT NOT NULL,
  bytes INTEGER,
  detail TEXT
);
CREATE INDEX IF NOT EXISTS events_action_at ON events(action, at);
CREATE INDEX IF NOT EXISTS events_action_camera_at ON events(action, camera, at);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS session_flags (session_name TEXT PRIMARY KEY, keep INTEGER NOT NULL);
"""


# Columns added after the first release, with their types: older journals get them on open.
ADDED_COLUMNS = (
    ("instrument_id", "INTEGER"),  # InstrumentData row of the camera (outage registration)
    ("frame_path_registered", "INTEGER"),  # 0: buffer frame path to record for Appion; 1: done
    ("buffer_mtime_ns", "INTEGER"),  # the buffer copy's mtime when verified (purge re-checks)
)


class JournalLocked(Exception):
    pass


class JournalReplaced(BaseException):  # noqa: N818 - not an Exception: no handler may catch it
    """The journal file is no longer the one this process opened (deleted, or replaced by
    another file): what it commits now is not on the device under the journal's name, so
    nothing irreversible may follow. Derives from BaseException so that the workers' "log
    and go on" handlers let it through and the service stops (systemd restarts it on the
    journal that is there now)."""


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
        # Closed at once: `with connection` only commits, and the open connection lingered
        # until the garbage collector found it, keeping the WAL from being checkpointed away.
        connection = self._connect()
        try:
            connection.executescript(SCHEMA)
            _add_missing_columns(connection)
        finally:
            connection.close()
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
            (time.time(), movie_id, camera, action, nbytes, detail),
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


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    present = {str(row[1]) for row in connection.execute("PRAGMA table_info(movies)")}
    for name, kind in ADDED_COLUMNS:
        if name not in present:
            try:
                connection.execute(f"ALTER TABLE movies ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as error:
                # two processes opening an old journal at once: the other one added it
                if "duplicate column" not in str(error):
                    raise


class ServiceLock:
    """One process per service (ingest, archive, purge) per journal, held with flock.

    flock is released by the kernel when the process dies, so a kill -9 never leaves a stale
    lock behind; the pid inside the file is only there for the error message.
    """

    def __init__(self, journal_path: Path, service: str) -> None:
        self.journal_path = journal_path
        self.path = journal_path.with_name(f"{journal_path.name}.{service}.lock")
        self.service = service
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise JournalLocked(
                f"another 'embuffer {self.service}' (pid {holder}) is already running on "
                f"journal {self.journal_path}; stop it first "
                f"(systemctl stop embuffer-{self.service}) or use another journal"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ServiceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
