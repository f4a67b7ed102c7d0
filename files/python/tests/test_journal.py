"""The journal's durability barrier (journal.py, Durability) on real files."""

from __future__ import annotations

import os
from pathlib import Path

from embuffer.journal import Journal


def synced_paths(monkeypatch) -> list[str]:
    seen: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_make_durable_syncs_the_wal_of_a_symlinked_journal(tmp_path, monkeypatch):
    """SQLite keeps the WAL beside the file a symlink points to; the barrier must sync that
    WAL, not look for one beside the link and, finding none, sync nothing."""
    real = tmp_path / "disk" / "journal.sqlite"
    real.parent.mkdir()
    link = tmp_path / "journal.sqlite"
    link.symlink_to(real)
    journal = Journal(link, sync_each_commit=False)
    journal.set_setting("probe", 1)
    assert Path(f"{real}-wal").exists() and not Path(f"{link}-wal").exists()
    seen = synced_paths(monkeypatch)
    journal.make_durable()
    assert f"{real}-wal" in seen
    assert str(real.parent) in seen  # the WAL's name, the first time


def test_make_durable_after_the_last_connection_closed_syncs_nothing(tmp_path, monkeypatch):
    """Closing the last connection checkpoints the WAL into the database and removes it; the
    barrier then has nothing to sync and must not fail."""
    path = tmp_path / "journal.sqlite"
    journal = Journal(path, sync_each_commit=False)
    journal.set_setting("probe", 1)
    journal.close()
    assert not Path(f"{path}-wal").exists()
    seen = synced_paths(monkeypatch)
    journal.make_durable()
    assert seen == []
    assert Journal(path).get_setting("probe") == 1


def test_a_row_and_the_movie_dataclass_name_the_same_columns(tmp_path):
    import pytest

    from embuffer.journal import COPYING, MOVIE_COLUMNS, SEEN
    from embuffer.journal import queries as q

    journal = Journal(tmp_path / "journal.sqlite")
    columns = {row[1] for row in journal.db.execute("PRAGMA table_info(movies)")}
    assert columns == MOVIE_COLUMNS, "a journal column without a Movie field, or the reverse"
    movie_id = journal.insert_movie(camera="cam", state=SEEN, first_seen=1.0)
    q.mark_copying(journal, movie_id, {"state": COPYING, "dest_path": "/buffer/x"})
    movie = journal.movie(movie_id)
    assert (movie.state, movie.dest.name, movie.attempts) == (COPYING, "x", 1)
    with pytest.raises(KeyError, match="no column 'dest'"):
        q.mark_copying(journal, movie_id, {"dest": "/buffer/y"})
    with pytest.raises(ValueError, match="has no primary_path"):
        _ = movie.primary
