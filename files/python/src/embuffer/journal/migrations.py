"""The journal's schema version and the numbered migrations that bring a journal up to it.

The version a journal is at is SQLite's `PRAGMA user_version` (0 in a new file, and in every
journal written before versions existed). Every process that opens the journal for writing
brings it to SCHEMA_VERSION first, one migration at a time, each in one transaction:

  1. take the write lock (BEGIN IMMEDIATE) and read the version again: a process that started
     at the same moment may have migrated meanwhile;
  2. keep a copy of the journal as it is, `<journal>.pre-N` beside it (N: the migration about
     to run), written by SQLite's backup from a second connection, so it holds every committed
     transaction, the write-ahead log's included, and fsynced;
  3. run migration N and set user_version = N in the same transaction, commit (synchronously);
  4. remove the copy.
A crash or an error before the commit leaves the journal as it was (SQLite rolls back) and the
copy beside it; the next start makes a new copy and runs the migration again. A crash after
the commit leaves a stale copy, which the next start removes.

A journal newer than this code (written by a later release) is refused before anything is
written: its version is read without opening it for writing (JournalTooNew).

A migration, once released, is never changed: the next change of the schema is a new one,
appended to MIGRATIONS. A new journal is made by running all of them on an empty file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from embuffer.journal.schema import ADDED_COLUMNS, SCHEMA

log = logging.getLogger("embuffer.journal")


class JournalTooNew(Exception):
    """The journal was written by a newer embuffer: this code does not know its schema."""


@dataclass(frozen=True)
class Migration:
    version: int  # the journal's user_version once it ran
    summary: str  # what it changes, for the log
    apply: Callable[[sqlite3.Connection], None]  # runs inside the migration's transaction


def _statements(script: str) -> list[str]:
    """The statements of a script, one by one: executescript() would commit the migration's
    transaction before running them."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    return statements


def _to_version_1(connection: sqlite3.Connection) -> None:
    """Every journal written before versions existed grew by tables and indexes created with
    IF NOT EXISTS and by columns appended to `movies` (schema.py): whatever subset of them a
    journal has, creating the missing ones gives the schema a new journal gets."""
    for statement in _statements(SCHEMA):
        connection.execute(statement)
    present = {str(row[1]) for row in connection.execute("PRAGMA table_info(movies)")}
    for name, kind in ADDED_COLUMNS:
        if name not in present:
            connection.execute(f"ALTER TABLE movies ADD COLUMN {name} {kind}")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "version the journal: the tables, indexes and columns of every earlier release",
        _to_version_1,
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version  # what this code reads and writes


def pre_migration_copy(journal_path: Path, version: int) -> Path:
    """Where the journal is kept, as it was, while migration `version` runs."""
    return journal_path.with_name(f"{journal_path.name}.pre-{version}")


def journal_version(journal_path: Path) -> int:
    """The schema version of the journal at `journal_path` (0 for none yet), read through a
    SQLite connection that writes nothing of ours: it reads the write-ahead log too.

    Never by opening the file ourselves: closing any descriptor of a file drops every POSIX
    lock this process holds on it, the locks of its own SQLite connections included, and
    another process may then checkpoint the log away under them (a malformed journal, seen
    after kill -9 in test_archive_purge).

    The connection may write (mode=rw, which never creates the file): a power cut during a
    transaction in rollback mode, such as the one that turns a new journal to WAL, leaves a
    hot `-journal` beside it, and only a connection allowed to write can roll it back; a
    read-only one fails with "attempt to write a readonly database" and the service would
    never start again (test_powercut, cut just after that transaction). Rolling back is
    SQLite restoring its last commit, never a change of schema, so a newer release's journal
    is still left as that release committed it."""
    try:
        if os.stat(journal_path).st_size == 0:
            return 0  # SQLite's own empty file: nothing written yet
    except FileNotFoundError:
        return 0
    connection = sqlite3.connect(f"file:{journal_path}?mode=rw", uri=True, timeout=60)
    try:
        return int(connection.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as error:
        raise sqlite3.DatabaseError(f"journal {journal_path}: {error}") from error
    finally:
        connection.close()


def refuse_newer(journal_path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        from embuffer import __version__

        raise JournalTooNew(
            f"journal {journal_path} has schema version {version}, written by a newer "
            f"embuffer; this embuffer {__version__} reads up to version {SCHEMA_VERSION}. "
            "Nothing was written to it. Install the release that wrote it (or a later one), "
            "or restore the journal.sqlite.pre-N copy that release kept (see its release notes)"
        )


def bring_up_to_date(journal_path: Path) -> list[int]:
    """Apply the migrations the journal lacks; returns the versions applied (none when it was
    current, or when another process migrated it meanwhile). Raises JournalTooNew."""
    version = journal_version(journal_path)
    refuse_newer(journal_path, version)
    if version == SCHEMA_VERSION:
        for done in range(1, version + 1):  # a crash right after a commit left its copy
            _remove_stale_copy(journal_path, done)
        return []
    connection = sqlite3.connect(journal_path, timeout=60, isolation_level=None)
    applied: list[int] = []
    try:
        connection.execute("PRAGMA busy_timeout=60000")
        connection.execute("PRAGMA journal_mode=WAL")
        # the migration's commit must be on the device before its copy goes
        connection.execute("PRAGMA synchronous=FULL")
        for migration in MIGRATIONS:
            if _apply(journal_path, connection, migration):
                log.info(
                    "journal %s migrated to schema version %d: %s",
                    journal_path,
                    migration.version,
                    migration.summary,
                )
                applied.append(migration.version)
    finally:
        connection.close()
    return applied


def _apply(journal_path: Path, connection: sqlite3.Connection, migration: Migration) -> bool:
    connection.execute("BEGIN IMMEDIATE")  # no other process commits until this one is done
    copy: Path | None = None
    try:
        version = int(connection.execute("PRAGMA user_version").fetchone()[0])
        refuse_newer(journal_path, version)
        if version >= migration.version:
            connection.execute("ROLLBACK")
            _remove_stale_copy(journal_path, migration.version)
            return False
        if version != migration.version - 1:
            raise sqlite3.DatabaseError(f"journal {journal_path} skipped a migration: {version}")
        copy = _keep_copy(journal_path, connection, migration.version)
        migration.apply(connection)
        connection.execute(f"PRAGMA user_version = {migration.version}")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    if copy is not None:
        _remove_stale_copy(journal_path, migration.version)
    return True


def _keep_copy(journal_path: Path, connection: sqlite3.Connection, version: int) -> Path | None:
    """Copy the journal as committed (the caller holds the write lock, so nothing commits
    meanwhile) to pre-<version>, durably. A journal with no table yet (a new one) has nothing
    to keep."""
    (tables,) = connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    if not tables:
        return None
    copy = pre_migration_copy(journal_path, version)
    partial = copy.with_name(f"{copy.name}.partial")
    for leftover in (partial, copy):
        _unlink_database(leftover)
    reader = sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True, timeout=60)
    target = sqlite3.connect(partial, isolation_level=None)
    try:
        reader.backup(target)
        # a file of its own, whatever the source's mode: no log beside it to lose
        target.execute("PRAGMA journal_mode=DELETE")
    finally:
        target.close()
        reader.close()
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fchmod(fd, os.stat(journal_path).st_mode & 0o777)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(partial, copy)
    _sync_folder(copy.parent)
    return copy


def _remove_stale_copy(journal_path: Path, version: int) -> None:
    copy = pre_migration_copy(journal_path, version)
    if os.path.lexists(copy):
        _unlink_database(copy)
        _sync_folder(copy.parent)


def _unlink_database(path: Path) -> None:
    for name in (path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
