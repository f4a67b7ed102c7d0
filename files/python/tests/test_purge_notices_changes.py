"""Purge removes a buffer copy only while it is the one the archive read (issue 24, case 5).

A session owner can rewrite bytes of their archived buffer copy in place and put its mtime
back (`touch -r`, `cp -p`, `rsync -t` do): size and mtime are those the archive saw, the
bytes are not. The ctime, inode and device recorded at archive time give it away. The
services run as in test_planted_links: another uid with the role's capabilities, the edits
made by the unprivileged session owner.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_planted_links import (  # noqa: F401 - `site` is the fixture `services` uses
    SERVICE_UID,
    Site,
    site,
    unit_capabilities,
)

from embuffer.archive.buffer_identity import RECENT_CTIME_NS
from embuffer.safecopy.nofollow import folder as open_folder

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switches to other accounts")

EDIT = b"Z" * 33
EDIT_AT = 2000  # inside the frames of a 16x16x4 MRC (5120 bytes)


@pytest.fixture
def services(request: pytest.FixtureRequest) -> Site:
    """test_planted_links' site: the services run as another uid with the role's
    capabilities, the session owner is an unprivileged account."""
    found: Site = request.getfixturevalue("site")
    return found


def archived_movie(services: Site, filename: str, seed: int) -> tuple[Path, bytes]:
    """A movie ingested and archived by the services; its buffer path and its bytes."""
    data = services.movie(f"20261127_{seed:06d}_00", filename, seed=seed)
    services.ingest()
    result = services.as_service("archive", "--once")
    assert result.returncode == 0, result.stderr[-3000:]
    buffer_copy = services.host.buffer_folder() / f"{filename}.frames.mrc"
    assert buffer_copy.read_bytes() == data
    return buffer_copy, data


def primary_of(services: Site, buffer_copy: Path) -> Path:
    return services.host.primary / buffer_copy.relative_to(services.host.buffer)


def owner_rewrites(services: Site, path: Path) -> bytes:
    """The session owner rewrites 33 bytes in place and puts the mtime back (`touch -r`)."""
    before = path.stat()
    services.as_owner(
        f"""saved=$(mktemp)
        touch -r {path} "$saved"
        printf '{EDIT.decode()}' | dd of={path} bs=1 seek={EDIT_AT} conv=notrunc status=none
        touch -r "$saved" {path}
        rm -- "$saved"
        """
    )
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    edited = path.read_bytes()
    assert edited[EDIT_AT : EDIT_AT + 33] == EDIT
    return edited


def purge(services: Site) -> str:
    result = services.as_service("purge")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def rows(services: Site, sql: str, *args: object) -> list[sqlite3.Row]:
    connection = sqlite3.connect(services.host.journal)
    connection.row_factory = sqlite3.Row
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


def evidence_of(services: Site, buffer_copy: Path) -> dict[str, object]:
    [row] = rows(
        services,
        "SELECT purge_evidence FROM movies WHERE dest_path = ? AND state = 'purged'",
        str(buffer_copy),
    )
    return dict(json.loads(row["purge_evidence"]))


def test_a_rewrite_with_its_mtime_put_back_is_archived_again_never_purged(services):
    services.host.write_config(extra="[purge]\nretention_days = 0\n")
    buffer_copy, original = archived_movie(services, "edited", seed=11)
    edited = owner_rewrites(services, buffer_copy)

    output = purge(services)

    assert buffer_copy.exists(), "the edited copy was purged: the edit is lost"
    assert buffer_copy.read_bytes() == edited
    assert f"keep {buffer_copy}: buffer copy {buffer_copy} changed after it was archived" in output
    [event] = rows(services, "SELECT detail FROM events WHERE action = 'changed_after_archive'")
    assert "ctime" in json.loads(event["detail"])["why"]

    # The archive takes the edit to primary under the movie's name; the earlier bytes stay
    # beside it under a name of their own, never overwritten.
    assert services.as_service("archive", "--once").returncode == 0
    primary = primary_of(services, buffer_copy)
    assert primary.read_bytes() == edited
    [earlier] = primary.parent.glob(f"{primary.name}.superseded-*")
    assert earlier.read_bytes() == original
    assert rows(services, "SELECT 1 FROM events WHERE action = 'archived_again'")

    output = purge(services)  # archived again, verified: now it may go
    assert not buffer_copy.exists(), output
    assert primary.read_bytes() == edited
    assert evidence_of(services, buffer_copy).get("buffer_check") == (
        "size, mtime, ctime, inode and device as archived"
    )


def test_a_mode_change_alone_is_re_hashed_and_purged(services):
    services.host.write_config(extra="[purge]\nretention_days = 0\n")
    chmodded, data = archived_movie(services, "chmodded", seed=12)
    untouched, _ = archived_movie(services, "untouched", seed=13)
    services.as_owner(f"chmod 0640 {chmodded}")
    ctime_after_chmod = chmodded.stat().st_ctime_ns
    # a ctime younger than this is not recorded (it could hide a change in the same tick)
    time.sleep(2 * RECENT_CTIME_NS / 1e9)

    output = purge(services)

    assert not chmodded.exists() and not untouched.exists(), output
    assert primary_of(services, chmodded).read_bytes() == data
    assert evidence_of(services, chmodded).get("buffer_check") == (
        "re-hashed (changed: ctime): the bytes primary holds"
    )
    assert evidence_of(services, untouched).get("buffer_check") == (
        "size, mtime, ctime, inode and device as archived"
    )
    [row] = rows(services, "SELECT buffer_ctime_ns FROM movies WHERE dest_path = ?", str(chmodded))
    assert row["buffer_ctime_ns"] == ctime_after_chmod  # the new identity was recorded
    assert not rows(services, "SELECT 1 FROM events WHERE action = 'changed_after_archive'")


def test_rows_of_an_earlier_release_are_re_hashed_before_their_purge(services):
    services.host.write_config(extra="[purge]\nretention_days = 0\n")
    rewritten, _ = archived_movie(services, "old_rewritten", seed=14)
    kept_as_is, data = archived_movie(services, "old_as_is", seed=15)
    # The journal as the release before these columns wrote it.
    connection = sqlite3.connect(services.host.journal)
    try:
        present = {row[1] for row in connection.execute("PRAGMA table_info(movies)")}
        for column in present & {"buffer_ctime_ns", "buffer_inode", "buffer_device"}:
            connection.execute(f"ALTER TABLE movies DROP COLUMN {column}")
        # that release wrote no schema version: the next start migrates its journal
        connection.execute("PRAGMA user_version = 0")
        connection.commit()
    finally:
        connection.close()
    edited = owner_rewrites(services, rewritten)

    output = purge(services)

    assert rewritten.exists(), "an edited copy of an old row was purged"
    assert rewritten.read_bytes() == edited
    assert f"keep {rewritten}: buffer copy {rewritten} changed after it was archived" in output
    assert not kept_as_is.exists(), output
    assert primary_of(services, kept_as_is).read_bytes() == data
    assert evidence_of(services, kept_as_is).get("buffer_check") == (
        "re-hashed (no identity recorded (archived before purge recorded one)): "
        "the bytes primary holds"
    )
    [row] = rows(
        services, "SELECT hash, primary_verified_at FROM movies WHERE dest_path = ?", str(rewritten)
    )
    assert row["primary_verified_at"] is None  # back in the archive's backlog


def owner_writes(services: Site, path: Path, data: bytes, at: int) -> bytes:
    """The session owner overwrites bytes of `path` in place; its bytes afterwards."""
    services.as_owner(
        f"printf '{data.decode()}' | dd of={path} bs=1 seek={at} conv=notrunc status=none"
    )
    return path.read_bytes()


def service_with(services: Site, prelude: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`embuffer <args>` run as Site.as_service runs it, with `prelude` (Python) run first in
    the same process: a fault or a race injected at one exact point of the real service."""
    caps = unit_capabilities(args[0])
    program = (
        f"{textwrap.dedent(prelude)}\n"
        "import sys\nfrom embuffer.cli import main\nsys.exit(main(sys.argv[1:]))"
    )
    command = [
        "setpriv",
        f"--reuid={SERVICE_UID}",
        f"--regid={SERVICE_UID}",
        "--clear-groups",
        f"--inh-caps={caps}",
        f"--ambient-caps={caps}",
        f"--bounding-set={caps}",
        "--",
        sys.executable,
        "-c",
        program,
        "--config",
        str(services.host.config_path),
        *args,
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)


def queued_again(services: Site, filename: str, seed: int) -> tuple[Path, Path, bytes, bytes]:
    """A movie archived, then edited by its owner and queued by purge to be archived again:
    its buffer copy, its primary copy, the archived bytes and the edited ones."""
    services.host.write_config(extra="[purge]\nretention_days = 0\n")
    buffer_copy, original = archived_movie(services, filename, seed=seed)
    edited = owner_rewrites(services, buffer_copy)
    assert f"keep {buffer_copy}: buffer copy" in purge(services)
    return buffer_copy, primary_of(services, buffer_copy), original, edited


def test_a_taken_superseded_name_never_costs_the_earlier_primary_copy(services):
    buffer_copy, primary, original, edited = queued_again(services, "clash", seed=21)
    # the name the earlier copy would get is taken (a copy set aside in the same second)
    taken = primary.parent / f"{primary.name}.superseded-taken"
    services.as_owner(f"printf 'not the movie' > {taken}")
    prelude = """
        from embuffer.archive import buffer_identity
        buffer_identity.superseded_name = lambda name, at: f"{name}.superseded-taken"
    """

    result = service_with(services, prelude, "archive", "--once")

    on_primary = [path.read_bytes() for path in primary.parent.glob(f"{primary.name}*")]
    assert original in on_primary, "primary's only copy of the archived bytes is lost"
    assert result.returncode == 0, result.stderr[-3000:]
    assert (primary.parent / f"{taken.name}-2").read_bytes() == original
    assert taken.read_bytes() == b"not the movie"
    assert primary.read_bytes() == edited


def test_a_failed_link_leaves_the_earlier_primary_copy_and_is_retried(services):
    buffer_copy, primary, original, edited = queued_again(services, "nospace", seed=22)
    prelude = """
        import errno, os
        linking = os.link
        def link(source, destination, *args, **kwargs):
            if ".superseded-" in str(destination):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), destination)
            return linking(source, destination, *args, **kwargs)
        os.link = link
    """

    result = service_with(services, prelude, "archive", "--once")

    assert result.returncode != 0  # the archive failed and says so
    assert primary.read_bytes() == original, "primary's only copy of the archived bytes is lost"
    assert not list(primary.parent.glob(f"{primary.name}.superseded-*"))
    [row] = rows(
        services,
        "SELECT archive_error, primary_verified_at FROM movies WHERE dest_path = ?",
        str(buffer_copy),
    )
    assert "No space left" in row["archive_error"] and row["primary_verified_at"] is None

    assert services.as_service("archive", "--once").returncode == 0  # the retry, room again
    assert primary.read_bytes() == edited
    [earlier] = primary.parent.glob(f"{primary.name}.superseded-*")
    assert earlier.read_bytes() == original


def test_a_copy_edited_again_before_its_new_archive_is_archived_with_its_newest_bytes(services):
    buffer_copy, primary, original, _ = queued_again(services, "twice", seed=23)
    newest = owner_writes(services, buffer_copy, b"Y" * 40, at=3000)

    result = services.as_service("archive", "--once")

    assert result.returncode == 0, result.stderr[-3000:]
    assert primary.read_bytes() == newest
    [earlier] = primary.parent.glob(f"{primary.name}.superseded-*")
    assert earlier.read_bytes() == original
    [row] = rows(
        services,
        "SELECT hash, primary_hash, primary_verified_at, archive_error FROM movies "
        "WHERE dest_path = ?",
        str(buffer_copy),
    )
    assert row["primary_verified_at"] is not None and row["archive_error"] is None
    assert row["hash"] == row["primary_hash"]
    assert len(rows(services, "SELECT 1 FROM events WHERE action = 'changed_after_archive'")) == 2

    output = purge(services)  # its newest bytes are on primary: now it may go
    assert not buffer_copy.exists(), output
    assert evidence_of(services, buffer_copy).get("buffer_check") == (
        "re-hashed (no identity recorded (archived before purge recorded one)): "
        "the bytes primary holds"
    )


def test_an_edit_while_purge_re_hashes_primary_is_never_removed_unseen(services):
    services.host.write_config(extra="[purge]\nretention_days = 0\n")
    buffer_copy, _ = archived_movie(services, "meanwhile", seed=24)
    # the owner's edit lands while purge --paranoid re-reads the primary copy (seconds per GB)
    prelude = f"""
        from embuffer.archive.purge import Purger
        checking_primary = Purger._primary_problem
        def edited_meanwhile(self, movie):
            with open(movie.dest_path, "r+b") as copy:
                copy.seek({EDIT_AT})
                copy.write({EDIT!r})
            return checking_primary(self, movie)
        Purger._primary_problem = edited_meanwhile
    """

    result = service_with(services, prelude, "purge", "--paranoid")

    output = result.stdout + result.stderr
    assert buffer_copy.exists(), "the copy edited during the purge was removed: the edit is lost"
    assert buffer_copy.read_bytes()[EDIT_AT : EDIT_AT + len(EDIT)] == EDIT
    assert f"keep {buffer_copy}: not removed (buffer copy {buffer_copy} changed since" in output
    assert not rows(services, "SELECT 1 FROM movies WHERE state = 'purged'")
    # the next purge finds the edit and has it archived again
    assert f"keep {buffer_copy}: buffer copy {buffer_copy} changed after it was archived" in (
        purge(services)
    )


@pytest.mark.parametrize("noreplace_rename", [True, False], ids=["renameat2", "check-rename"])
def test_a_folder_is_set_aside_beside_a_taken_name_never_over_it(
    tmp_path, monkeypatch, noreplace_rename
):
    """A DE movie (a folder: no hard link) set aside, with and without RENAME_NOREPLACE."""
    from embuffer.archive import set_aside as aside_module

    if not noreplace_rename:
        monkeypatch.setattr(aside_module, "_rename_noreplace", lambda *names: False)
    movie = tmp_path / "movie"
    movie.mkdir()
    (movie / "frame_0001.tif").write_bytes(b"earlier frame")
    at = time.time()
    taken = tmp_path / aside_module.ident.superseded_name("movie", at)
    taken.mkdir()
    (taken / "other").write_bytes(b"not ours")
    with open_folder(tmp_path) as folder_fd:
        name = aside_module.set_aside(folder_fd, "movie", at)

    assert name == f"{taken.name}-2"
    assert (tmp_path / name / "frame_0001.tif").read_bytes() == b"earlier frame"
    assert (taken / "other").read_bytes() == b"not ours"
    assert not movie.exists()
