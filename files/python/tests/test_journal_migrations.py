"""The versioned journal: journals written by earlier embuffer code (fixtures/journals/, made
by that code) are migrated with every row, hash and state intact; a failed or killed
migration leaves the journal as it was; a journal of a newer release is refused untouched."""

from __future__ import annotations

import hashlib
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from embuffer import __version__
from embuffer.cli import EXIT_JOURNAL_TOO_NEW, main
from embuffer.journal import SCHEMA_VERSION, Journal, JournalTooNew, migrations
from embuffer.journal import held_files as held
from embuffer.journal import queries as q

FIXTURES_FOLDER = Path(__file__).parent / "fixtures" / "journals"
# fixture -> the schema version it was written at (README.md beside them says which code)
FIXTURES = {
    "journal-644a2a9-2026-11-26.sqlite": 0,
    "journal-32092f5-2026-12-02.sqlite": 0,
    "journal-0.1.0.sqlite": 0,
    "journal-schema-1-main.sqlite": 1,
}
# the states every fixture holds rows in (removed: from 0.1.0 on)
STATES = {
    "seen",
    "matched",
    "copying",
    "copied",
    "verified",
    "done",
    "quarantined",
    "purged",
    "released",
    "vanished",
}
CAMERA = "k3-cam-01"


def copy_fixture(name: str, folder: Path) -> Path:
    journal = folder / "state" / "journal.sqlite"
    journal.parent.mkdir(parents=True)
    shutil.copyfile(FIXTURES_FOLDER / name, journal)
    return journal


def snapshot(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, as SQLite returns it, in rowid order."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            str(row[0])
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        rows: dict[str, list[dict[str, Any]]] = {}
        for table in tables:
            cursor = connection.execute(f"SELECT * FROM {table} ORDER BY rowid")
            names = [column[0] for column in cursor.description]
            rows[table] = [dict(zip(names, row, strict=True)) for row in cursor]
        return rows
    finally:
        connection.close()


def schema_shape(path: Path) -> dict[str, Any]:
    """What a query depends on: each table's columns (name, type, not null, default, key)
    and each index's definition, whatever comments and spacing the CREATE text had."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        shape: dict[str, Any] = {}
        for kind, name, sql in connection.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
        ):
            if kind == "table":
                shape[name] = [
                    tuple(row) for row in connection.execute(f"PRAGMA table_info({name})")
                ]
            else:
                shape[name] = " ".join((sql or "").split())
        shape["user_version"] = connection.execute("PRAGMA user_version").fetchone()[0]
        return shape
    finally:
        connection.close()


def version_of(path: Path) -> int:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(connection.execute("PRAGMA user_version").fetchone()[0])
    finally:
        connection.close()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers_beside(journal: Path) -> list[str]:
    return sorted(p.name for p in journal.parent.iterdir() if ".pre-" in p.name)


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_every_row_hash_and_state_survives_the_migration(fixture: str, tmp_path: Path) -> None:
    journal_path = copy_fixture(fixture, tmp_path)
    assert version_of(journal_path) == FIXTURES[fixture]
    before = snapshot(journal_path)
    assert {row["state"] for row in before["movies"]} >= STATES, "the fixture lacks states"

    journal = Journal(journal_path)
    after = snapshot(journal_path)
    assert version_of(journal_path) == SCHEMA_VERSION
    assert leftovers_beside(journal_path) == []  # pre-1 copy removed once committed
    for table, rows in before.items():
        assert len(after[table]) == len(rows), table
        for old, new in zip(rows, after[table], strict=True):
            # every value the old code wrote is there; columns it lacked are empty
            assert {name: new[name] for name in old} == old, (table, old)
            assert all(new[name] is None for name in set(new) - set(old)), (table, new)

    # and today's code reads them: typed rows, the queries the services run
    movies = journal.movies()
    assert [(m.id, m.state, m.hash, m.size) for m in movies] == [
        (row["id"], row["state"], row["hash"], row["size"]) for row in before["movies"]
    ]
    counts = q.state_counts(journal.db, CAMERA)
    assert counts["done"] == sum(
        1 for row in before["movies"] if row["state"] == "done" and row["camera"] == CAMERA
    )
    assert len(q.quarantined_movies(journal)) == sum(
        1 for row in before["movies"] if row["state"] == "quarantined"
    )
    assert journal.get_setting("archive_pause")["reason"] == "primary maintenance"
    failed = sorted(before.get("held_files", []), key=lambda row: row["source_path"])
    assert [row[1:4] for row in held.held_rows(journal.db, CAMERA)] == [
        (row["source_path"], row["failures"], row["held_since"]) for row in failed
    ]
    journal.close()


@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_a_migrated_journal_has_the_schema_of_a_new_one(fixture: str, tmp_path: Path) -> None:
    migrated = copy_fixture(fixture, tmp_path / "old")
    Journal(migrated).close()
    new = tmp_path / "new.sqlite"
    Journal(new).close()
    assert schema_shape(migrated) == schema_shape(new)


def test_a_current_journal_is_not_rewritten(tmp_path: Path) -> None:
    journal_path = copy_fixture("journal-schema-1-main.sqlite", tmp_path)
    digest = file_digest(journal_path)
    Journal(journal_path).close()
    assert file_digest(journal_path) == digest
    assert leftovers_beside(journal_path) == []


def test_a_failed_migration_leaves_the_journal_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal_path = copy_fixture("journal-0.1.0.sqlite", tmp_path)
    before, shape = snapshot(journal_path), schema_shape(journal_path)
    real = migrations.MIGRATIONS[0]

    def fail_halfway(connection: sqlite3.Connection) -> None:
        real.apply(connection)  # all of migration 1's statements ran in the transaction
        connection.execute("UPDATE movies SET state = 'broken'")
        raise OSError(28, "No space left on device")

    broken = migrations.Migration(real.version, real.summary, fail_halfway)
    monkeypatch.setattr(migrations, "MIGRATIONS", (broken,))
    with pytest.raises(OSError, match="No space left"):
        Journal(journal_path)
    assert snapshot(journal_path) == before
    assert schema_shape(journal_path) == shape  # user_version 0, no column or index added
    # the copy taken before the migration is kept beside it, and is the journal as it was
    copy = migrations.pre_migration_copy(journal_path, 1)
    assert leftovers_beside(journal_path) == [copy.name]
    assert snapshot(copy) == before

    monkeypatch.setattr(migrations, "MIGRATIONS", (real,))
    Journal(journal_path).close()  # the next start migrates, and removes the copy
    assert version_of(journal_path) == SCHEMA_VERSION
    assert leftovers_beside(journal_path) == []


KILLED_MIGRATION = textwrap.dedent("""\
    import os, signal, sys
    from pathlib import Path
    from embuffer.journal import migrations
    real = migrations.MIGRATIONS[0]
    def killed(connection):
        real.apply(connection)
        os.kill(os.getpid(), signal.SIGKILL)  # a power cut or kill -9 before the commit
    migrations.MIGRATIONS = (migrations.Migration(real.version, real.summary, killed),)
    migrations.bring_up_to_date(Path(sys.argv[1]))
""")


def test_a_killed_migration_leaves_the_journal_as_it_was(tmp_path: Path) -> None:
    journal_path = copy_fixture("journal-32092f5-2026-12-02.sqlite", tmp_path)
    before, shape = snapshot(journal_path), schema_shape(journal_path)
    process = subprocess.run(
        [sys.executable, "-c", KILLED_MIGRATION, str(journal_path)], capture_output=True
    )
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()
    assert snapshot(journal_path) == before
    assert schema_shape(journal_path) == shape
    assert leftovers_beside(journal_path) == ["journal.sqlite.pre-1"]

    Journal(journal_path).close()
    assert version_of(journal_path) == SCHEMA_VERSION
    assert leftovers_beside(journal_path) == []
    after = snapshot(journal_path)
    assert [(r["id"], r["state"], r["hash"]) for r in after["movies"]] == [
        (r["id"], r["state"], r["hash"]) for r in before["movies"]
    ]


def test_a_copy_left_by_a_crash_after_the_commit_is_removed(tmp_path: Path) -> None:
    journal_path = copy_fixture("journal-schema-1-main.sqlite", tmp_path)
    stale = migrations.pre_migration_copy(journal_path, 1)
    shutil.copyfile(FIXTURES_FOLDER / "journal-0.1.0.sqlite", stale)
    Journal(journal_path).close()
    assert leftovers_beside(journal_path) == []


def test_processes_starting_together_migrate_once(tmp_path: Path) -> None:
    journal_path = copy_fixture("journal-0.1.0.sqlite", tmp_path)
    before = snapshot(journal_path)
    applied: list[list[int]] = []
    start = threading.Barrier(4)

    def open_journal() -> None:
        start.wait()
        applied.append(migrations.bring_up_to_date(journal_path))

    threads = [threading.Thread(target=open_journal) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(applied) == [[], [], [], [1]]
    assert len(snapshot(journal_path)["movies"]) == len(before["movies"])


def make_newer(journal_path: Path, *, in_wal: bool) -> sqlite3.Connection | None:
    """Set the journal's version past this code's, as a later release would. in_wal: the
    change is committed to the write-ahead log only (the writer still open, no checkpoint)."""
    connection = sqlite3.connect(journal_path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    if in_wal:
        connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    if in_wal:
        return connection
    connection.close()
    return None


def written_files(folder: Path) -> dict[str, str]:
    """The folder's files and their digests, but for what any SQLite reader may make: -shm
    (the shared-memory index of the log) and an empty -wal (a reader of a journal in WAL mode
    opens the log, creating it empty when it is not there)."""
    return {
        path.name: file_digest(path)
        for path in folder.iterdir()
        if not path.name.endswith("-shm")
        and not (path.name.endswith("-wal") and path.stat().st_size == 0)
    }


def test_a_hot_rollback_journal_left_by_a_power_cut_is_rolled_back(tmp_path: Path) -> None:
    """A power cut during a transaction in rollback mode (the first one of a new journal,
    which turns it to WAL, is one) leaves the journal's pages half-written and a hot
    `-journal` beside it. The next start must roll it back and go on, not fail for good
    with "attempt to write a readonly database" (test_powercut found it)."""
    writing = tmp_path / "writing"
    writing.mkdir()
    journal_path = writing / "journal.sqlite"
    setup = sqlite3.connect(journal_path, isolation_level=None)
    setup.execute("CREATE TABLE filler (payload BLOB)")
    setup.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) "
        "INSERT INTO filler SELECT zeroblob(3000) FROM n"
    )
    setup.execute("PRAGMA user_version = 0")
    setup.close()
    writer = sqlite3.connect(journal_path, isolation_level=None)
    writer.execute("PRAGMA cache_size = 2")  # too small: changed pages spill to the file
    writer.execute("BEGIN")
    writer.execute("PRAGMA user_version = 7")
    writer.execute("UPDATE filler SET payload = randomblob(3000)")
    cut = tmp_path / "after-the-cut"
    shutil.copytree(writing, cut)  # what the disk held at the cut, the journal hot
    writer.execute("ROLLBACK")
    writer.close()
    assert (cut / "journal.sqlite-journal").stat().st_size > 0
    assert migrations.journal_version(cut / "journal.sqlite") == 0  # the last commit's
    Journal(cut / "journal.sqlite").close()
    assert version_of(cut / "journal.sqlite") == SCHEMA_VERSION


@pytest.mark.parametrize("in_wal", [False, True], ids=["checkpointed", "in-the-wal"])
def test_a_newer_journal_is_refused_untouched(tmp_path: Path, in_wal: bool) -> None:
    journal_path = copy_fixture("journal-schema-1-main.sqlite", tmp_path)
    writer = make_newer(journal_path, in_wal=in_wal)
    files = written_files(journal_path.parent)
    with pytest.raises(JournalTooNew, match=f"schema version {SCHEMA_VERSION + 1}"):
        Journal(journal_path)
    after = written_files(journal_path.parent)
    assert after == files  # nothing written, no copy made
    if writer is not None:
        writer.close()


def test_the_services_refuse_a_newer_journal_with_their_own_exit_code(tmp_path: Path) -> None:
    journal_path = copy_fixture("journal-schema-1-main.sqlite", tmp_path)
    make_newer(journal_path, in_wal=False)
    digest = file_digest(journal_path)
    config = tmp_path / "embuffer.toml"
    (tmp_path / "camera").mkdir()
    (tmp_path / "buffer").mkdir()
    (tmp_path / "quarantine").mkdir()
    (tmp_path / "primary").mkdir()
    credentials = tmp_path / "leginondb.cnf"
    credentials.write_text("[client]\nuser = u\npassword = p\nhost = 127.0.0.1\ndatabase = x\n")
    credentials.chmod(0o600)
    config.write_text(
        textwrap.dedent(f"""\
        [buffer]
        root = "{tmp_path / "buffer"}"
        hostname = "buffer-01"
        quarantine = "{tmp_path / "quarantine"}"
        journal = "{journal_path}"

        [database]
        credentials = "{credentials}"

        [[camera]]
        host = "{CAMERA}"
        path = "{tmp_path / "camera"}"

        [archive]
        primary = "{tmp_path / "primary"}"
        """)
    )
    for command in (["ingest"], ["archive"], ["purge"], ["status"]):
        process = subprocess.run(
            [sys.executable, "-m", "embuffer.cli", "--config", str(config), *command],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert process.returncode == EXIT_JOURNAL_TOO_NEW, (command, process.stderr)
        assert f"schema version {SCHEMA_VERSION + 1}, written by a newer embuffer" in (
            process.stderr
        )
        assert f"this embuffer {__version__} reads up to version {SCHEMA_VERSION}" in (
            process.stderr
        )
    assert file_digest(journal_path) == digest
    assert leftovers_beside(journal_path) == []


def test_version_names_the_release_and_the_journal_schema(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_status:
        main(["--version"])
    assert exit_status.value.code == 0
    assert capsys.readouterr().out.strip() == (
        f"embuffer {__version__} (journal schema version {SCHEMA_VERSION})"
    )
