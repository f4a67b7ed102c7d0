"""Archive (buffer -> primary) and purge, on real files and real filesystems."""

from __future__ import annotations

import bz2
import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BufferHost, tmpfs
from support.movies import mrc_bytes, tiff_bytes
from test_faults import start_daemon, wait_for

from embuffer.cli import main
from embuffer.safecopy.partials import PARTIAL_SUFFIX


def run(host: BufferHost, *args: str) -> int:
    return main(["--config", str(host.config_path), *args])


def ingest_sessions(
    host: BufferHost,
    registered: dict[str, int],
    sessions: int = 3,
    per_session: int = 3,
    frames: int = 4,
) -> dict[str, bytes]:
    """Movies from several sessions (different owners), ingested for real.
    Returns {path relative to the buffer root: bytes}."""
    expected: dict[str, bytes] = {}
    camera = registered["camera"]
    for s in range(sessions):
        name, user = f"26nov{s:02d}a", f"user{s}"
        session = host.session(name, user, uid=2000 + s, gid=3000 + s)
        for m in range(per_session):
            stem = f"2026112{s}_{m:06d}_00"
            data = (
                mrc_bytes(128, 128, frames, seed=s * 100 + m)
                if m % 2 == 0
                else tiff_bytes(frames, 128, 128, seed=s * 100 + m)
            )
            suffix = "mrc" if m % 2 == 0 else "tif"
            host.leginon.acquisition(session, camera, stem, f"{name}_{m:05d}en")
            path = host.camera / f"{stem}.{suffix}"
            path.write_bytes(data)
            os.utime(path, (time.time() - 60, time.time() - 60))
            expected[f"{user}/{name}/rawdata/{name}_{m:05d}en.frames.{suffix}"] = data
    assert run(host, "ingest", "--once") == 0
    return expected


def journal(host: BufferHost) -> sqlite3.Connection:
    connection = sqlite3.connect(host.journal)
    connection.row_factory = sqlite3.Row
    return connection


def age_movies(host: BufferHost, days: float, where: str = "1") -> None:
    with journal(host) as connection:
        connection.execute(
            f"UPDATE movies SET verified_at = verified_at - ? WHERE {where}", (days * 86400,)
        )


def test_archive_mirrors_sessions_with_layout_owners_and_modes(host, registered):
    expected = ingest_sessions(host, registered)
    assert run(host, "archive", "--once") == 0
    for rel, data in expected.items():
        copy = host.primary / rel
        assert copy.read_bytes() == data
        assert (host.buffer / rel).read_bytes() == data  # the buffer copy stays
        user = int(rel[4])
        info = copy.stat()
        assert (info.st_uid, info.st_gid) == (2000 + user, 3000 + user)
        assert stat.S_IMODE(info.st_mode) == 0o664
        assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o2775
        assert copy.parent.stat().st_uid == 2000 + user
    with journal(host) as connection:
        left = connection.execute(
            "SELECT COUNT(*) FROM movies WHERE state = 'done' AND primary_verified_at IS NULL"
        ).fetchone()[0]
    assert left == 0
    assert run(host, "verify", "--primary", "26nov01a") == 0


def test_catch_up_after_downtime_and_adoption_of_unknown_files(host, registered):
    expected = ingest_sessions(host, registered, sessions=1)
    expected.update(ingest_sessions(host, registered, sessions=2))  # the archive was down
    stray = host.buffer / "outage" / "26nov30z" / "rawdata" / "written_by_leginon.frames.mrc"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"written while embuffer was not looking")
    assert run(host, "archive", "--once") == 0
    assert not (host.primary / stray.relative_to(host.buffer)).exists(), "just written: waits"
    an_hour_ago = time.time() - 3600  # unchanged for longer than the grace period
    os.utime(stray, (an_hour_ago, an_hour_ago))
    assert run(host, "archive", "--once") == 0
    for rel, data in expected.items():
        assert (host.primary / rel).read_bytes() == data
    assert (host.primary / stray.relative_to(host.buffer)).read_bytes() == stray.read_bytes()
    with journal(host) as connection:
        row = connection.execute("SELECT * FROM movies WHERE camera = 'adopted'").fetchone()
    assert row["session_name"] == "26nov30z" and row["primary_verified_at"] is not None


@pytest.fixture
def small_primary(host: BufferHost):
    with tmpfs(host.primary, "1m") as folder:
        yield folder


def test_primary_full_then_read_only_then_unreachable_is_never_counted_done(
    host, registered, small_primary
):
    expected = ingest_sessions(host, registered, sessions=2, frames=16)  # 256 KiB each, 6 movies
    assert run(host, "archive", "--once") == 1
    with journal(host) as connection:
        done = {
            row[0]
            for row in connection.execute(
                "SELECT rel_path FROM movies WHERE primary_verified_at IS NOT NULL"
            )
        }
        errors = connection.execute(
            "SELECT COUNT(*) FROM events WHERE action = 'archive_error'"
        ).fetchone()[0]
    assert 0 < len(done) < len(expected) and errors >= 1
    for rel in done:
        assert (host.primary / rel).read_bytes() == expected[rel]
    assert not [p for p in host.primary.rglob("*") if p.name.endswith(PARTIAL_SUFFIX)]

    subprocess.run(["mount", "-o", "remount,size=64m,ro", str(small_primary)], check=True)
    assert run(host, "archive", "--once") == 1
    subprocess.run(["mount", "-o", "remount,rw", str(small_primary)], check=True)

    subprocess.run(["umount", str(small_primary)], check=True)
    host.primary.rmdir()  # the mount point itself is gone: primary unreachable
    assert run(host, "archive", "--once") == 1
    host.primary.mkdir()
    assert run(host, "archive", "--once") == 0
    for rel, data in expected.items():
        if rel not in done:  # the others were verified on the tmpfs that is gone now
            assert (host.primary / rel).read_bytes() == data


def test_pause_is_durable_and_honoured_by_the_running_service(host, registered, capsys):
    expected = ingest_sessions(host, registered, sessions=1)
    assert run(host, "archive", "pause", "--reason", "primary storage maintenance") == 0
    daemon = start_daemon(host, "archive")
    try:
        time.sleep(3)
        assert not list(host.primary.rglob("*.frames.*"))
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        daemon = start_daemon(host, "archive")  # restart: still paused
        time.sleep(3)
        assert not list(host.primary.rglob("*.frames.*"))
        capsys.readouterr()
        assert run(host, "status") == 0
        assert "archive paused: primary storage maintenance since" in capsys.readouterr().out
        assert run(host, "archive", "resume") == 0
        wait_for(
            lambda: all((host.primary / rel).exists() for rel in expected),
            timeout=20,
            what="the resumed archive to mirror the backlog",
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)


def test_compressed_mrc_legacy_mode_and_verify_primary_catches_edits(host, registered, capsys):
    host.write_config(extra="compress_mrc = true\n")
    expected = ingest_sessions(host, registered, sessions=1)
    assert run(host, "archive", "--once") == 0
    for rel, data in expected.items():
        if rel.endswith(".mrc"):
            assert bz2.decompress((host.primary / (rel + ".bz2")).read_bytes()) == data
            assert not (host.primary / rel).exists()
        else:
            assert (host.primary / rel).read_bytes() == data
    tif = next(rel for rel in expected if rel.endswith(".tif"))
    with open(host.primary / tif, "r+b") as stream:
        stream.seek(500)
        stream.write(b"\x00\x01")
    capsys.readouterr()
    assert run(host, "verify", "--primary", "26nov00a") == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_purge_by_age_removes_only_verified_copies_and_dry_run_removes_nothing(
    host, registered, capsys
):
    expected = ingest_sessions(host, registered, sessions=3)
    assert run(host, "archive", "--once") == 0
    unverified = ingest_sessions(host, registered, sessions=1, per_session=2)  # not archived
    unverified = {
        rel: data for rel, data in unverified.items() if "_00000en" in rel or "_00001en" in rel
    }
    host.write_config(grace_minutes=0)
    quarantined = host.camera / "20261126_999999_00.mrc"
    orphan = mrc_bytes(8, 8, 1, seed=999)
    quarantined.write_bytes(orphan)
    os.utime(quarantined, (time.time() - 60, time.time() - 60))
    assert run(host, "ingest", "--once") == 0
    assert run(host, "session", "keep", "26nov02a") == 0
    age_movies(host, 20)

    capsys.readouterr()
    assert run(host, "purge", "--dry-run") == 0
    dry = capsys.readouterr().out
    assert dry.count("would remove") == 6  # sessions 00 and 01; 02 is kept
    assert all((host.buffer / rel).exists() for rel in expected)

    assert run(host, "purge") == 0
    for rel in expected:
        gone = rel.startswith(("user0", "user1"))
        assert (host.buffer / rel).exists() != gone, rel
        assert (host.primary / rel).exists()
    assert (host.quarantine / "k3-cam-01" / quarantined.name).read_bytes() == orphan
    with journal(host) as connection:
        evidence = [
            json.loads(row[0])
            for row in connection.execute(
                "SELECT purge_evidence FROM movies WHERE state = 'purged'"
            )
        ]
    assert len(evidence) == 6 and all(e["primary_path"] and e["hash"] for e in evidence)


def test_purge_rechecks_primary_before_removing(host, registered, capsys):
    expected = ingest_sessions(host, registered, sessions=1)
    assert run(host, "archive", "--once") == 0
    age_movies(host, 20)
    rels = sorted(expected)
    (host.primary / rels[0]).unlink()  # primary copy lost
    with open(host.primary / rels[1], "r+b") as stream:  # same size, other content
        stream.seek(100)
        stream.write(b"\xde\xad")
    capsys.readouterr()
    assert run(host, "purge", "--paranoid") == 0
    out = capsys.readouterr().out
    assert (host.buffer / rels[0]).exists() and (host.buffer / rels[1]).exists()
    assert "primary copy not reachable" in out and "re-hashed as" in out
    assert not (host.buffer / rels[2]).exists()


def test_purge_syncs_the_archive_records_before_removing(host, registered, monkeypatch):
    """The archive service commits without an fsync per commit (journal.py, Durability): a
    movie's primary verification must be on the device before purge removes its buffer copy."""
    expected = ingest_sessions(host, registered, sessions=1)
    assert run(host, "archive", "--once") == 0
    age_movies(host, 20)
    wal, order = f"{host.journal}-wal", []
    real_fsync, real_unlink = os.fsync, os.unlink

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if os.readlink(f"/proc/self/fd/{fd}") == wal:
            order.append("wal-synced")

    def unlink(path, *args, dir_fd=None, **kwargs) -> None:
        where = Path(path) if dir_fd is None else Path(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
        if host.buffer in where.parents:
            order.append("buffer-copy-removed")
        real_unlink(path, *args, dir_fd=dir_fd, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "unlink", unlink)
    assert run(host, "purge") == 0
    assert order.count("buffer-copy-removed") == len(expected)
    for index, step in enumerate(order):
        if step == "buffer-copy-removed":  # each one right after a sync
            assert order[index - 1] == "wal-synced", order


@pytest.fixture
def small_buffer(host: BufferHost):
    with tmpfs(host.buffer, "8m") as folder:
        yield folder


def test_purge_by_watermark_frees_oldest_verified_and_says_when_it_cannot(
    host, registered, small_buffer, capsys
):
    host.write_config(
        extra="[purge]\nretention_days = 30\nhigh_watermark_percent = 50\n"
        "low_watermark_percent = 30\n"
    )
    # 6 movies of 1 MiB on an 8 MiB filesystem: about 78 % used (each copy starts only with
    # room for the movie and a megabyte of slack to spare: safecopy/space.py)
    expected = ingest_sessions(host, registered, sessions=3, per_session=2, frames=64)
    assert run(host, "archive", "--once") == 0
    capsys.readouterr()
    assert run(host, "purge") == 0
    out = capsys.readouterr().out
    assert "above 50 % used" in out
    remaining = [rel for rel in expected if (host.buffer / rel).exists()]
    assert 0 < len(remaining) < len(expected)
    with journal(host) as connection:
        order = [
            row[0] for row in connection.execute("SELECT state FROM movies ORDER BY verified_at")
        ]
    assert order == sorted(order, key=lambda state: state != "purged")  # oldest went first

    more = ingest_sessions(host, registered, sessions=1, per_session=3, frames=64)  # unverified
    assert more
    capsys.readouterr()
    assert run(host, "purge") == 1
    assert "primary storage is behind" in capsys.readouterr().out
    assert all((host.buffer / rel).exists() for rel in more)


def test_kill_9_during_archive_and_purge_keeps_every_movie_verified_somewhere(host, registered):
    rng = random.Random(7)
    expected: dict[str, bytes] = {}
    for round_ in range(12):
        expected.update(ingest_sessions(host, registered, sessions=1, per_session=2, frames=64))
        age_movies(host, 20)
        command = "archive" if round_ % 3 else "purge"
        process = subprocess.Popen(
            [sys.executable, "-m", "embuffer.cli", "--config", str(host.config_path), command]
            + (["--once"] if command == "archive" else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 1.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        for rel, data in expected.items():
            copies = [root / rel for root in (host.buffer, host.primary) if (root / rel).exists()]
            assert copies, f"{rel} exists neither on the buffer nor on primary"
            for copy in copies:
                assert copy.read_bytes() == data, f"{copy} is not whole"
    assert run(host, "archive", "--once") == 0
    assert run(host, "purge") == 0
    for rel, data in expected.items():
        assert (host.primary / rel).read_bytes() == data
    assert not [p for p in host.primary.rglob("*") if p.name.endswith(PARTIAL_SUFFIX)]


def test_concurrent_archive_refuses(host, registered):
    first = start_daemon(host, "archive")
    try:
        time.sleep(1.0)
        second = start_daemon(host, "archive")
        assert second.wait(timeout=30) == 75
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)


def test_status_forecast_and_backlog(host, registered, capsys):
    ingest_sessions(host, registered, sessions=1)
    assert run(host, "archive", "pause", "--reason", "drill") == 0
    capsys.readouterr()
    assert run(host, "status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["archive"]["paused"] and status["archive"]["paused_reason"] == "drill"
    assert status["archive"]["backlog_files"] == 3
    assert status["archive"]["backlog_bytes"] > 0
    assert status["buffer"]["hours_until_full"] is not None
    assert status["buffer"]["intake_bytes_per_hour"] > 0


def test_adopted_files_keep_their_age_for_purge(host, registered, capsys):
    # A buffer that held movies before embuffer ran (migration from the legacy tools):
    # 30 days old, retention 14 days. They are archived, then purged at once, not in 14 days.
    folder = host.buffer / "joe" / "legacy01" / "rawdata"
    folder.mkdir(parents=True)
    month_ago = time.time() - 30 * 86400
    week_ago = time.time() - 7 * 86400
    for name, when in (("old_1.frames.mrc", month_ago), ("recent_1.frames.mrc", week_ago)):
        (folder / name).write_bytes(mrc_bytes(8, 8, 2, seed=len(name)))
        os.utime(folder / name, (when, when))

    assert run(host, "archive", "--once") == 0
    assert run(host, "purge") == 0
    out = capsys.readouterr().out
    assert not (folder / "old_1.frames.mrc").exists()
    assert (host.primary / "joe/legacy01/rawdata/old_1.frames.mrc").exists()
    assert (folder / "recent_1.frames.mrc").exists(), "a week old: kept"
    assert "counted from the file's mtime on the buffer (adopted" in out
    [evidence] = [
        json.loads(row[0])
        for row in journal(host).execute("SELECT purge_evidence FROM movies WHERE state = 'purged'")
    ]
    assert evidence["age_from"].startswith("the file's mtime on the buffer")
    assert "older than 14 days (30.0 d" in evidence["why"]


def test_purge_never_removes_a_buffer_copy_changed_after_its_archive(host, registered, capsys):
    expected = ingest_sessions(host, registered, sessions=1, per_session=6)
    assert run(host, "archive", "--once") == 0
    age_movies(host, days=30)
    rels = sorted(expected)
    grown, touched, rewritten = (host.buffer / rel for rel in rels[:3])
    with open(grown, "ab") as stream:  # appended after the archive: primary lacks this
        stream.write(b"more frames")
    os.utime(touched, (time.time(), time.time()))  # same bytes: re-hashed, then purged
    data = bytearray(rewritten.read_bytes())  # same size, same mtime, other bytes
    info = rewritten.stat()
    data[-1] ^= 0xFF
    rewritten.write_bytes(bytes(data))
    os.utime(rewritten, ns=(info.st_atime_ns, info.st_mtime_ns))
    capsys.readouterr()

    assert run(host, "purge") == 0
    out = capsys.readouterr().out
    assert grown.exists() and rewritten.exists() and not touched.exists()
    for changed in (grown, rewritten):
        assert f"keep {changed}: buffer copy {changed} changed after it was archived" in out
    for rel in rels[3:]:
        assert not (host.buffer / rel).exists()

    # Archived again: primary holds the new bytes, the earlier ones beside them.
    assert run(host, "archive", "--once") == 0
    for changed in (grown, rewritten):
        primary = host.primary / changed.relative_to(host.buffer)
        assert primary.read_bytes() == changed.read_bytes()
        [earlier] = primary.parent.glob(f"{primary.name}.superseded-*")
        assert earlier.read_bytes() == expected[str(changed.relative_to(host.buffer))]
    assert run(host, "purge") == 0
    assert not grown.exists() and not rewritten.exists()


def test_a_missing_buffer_file_does_not_hold_back_the_archive(host, registered):
    expected = ingest_sessions(host, registered, sessions=1, per_session=3)
    first, *rest = sorted(expected, key=lambda rel: rel)
    (host.buffer / first).unlink()  # removed by hand, or lost to a disk fault
    for _ in range(2):  # pass after pass: the rest is archived, the missing one is reported
        assert run(host, "archive", "--once") == 1
    for rel in rest:
        assert (host.primary / rel).read_bytes() == expected[rel]
    with journal(host) as connection:
        [(error,)] = connection.execute(
            "SELECT archive_error FROM movies WHERE primary_verified_at IS NULL"
        ).fetchall()
        skipped = connection.execute(
            "SELECT COUNT(*) FROM events WHERE action = 'archive_skipped'"
        ).fetchone()[0]
    assert "is missing" in error
    assert skipped == 1, "reported once, not once per pass"


def test_a_kill_between_publish_link_and_unlink_leaves_no_partial_on_primary(host, registered):
    # publish() links the partial to its final name, then unlinks the partial: a kill in
    # between (found by the power-cut suite) leaves both names for one file on primary.
    expected = ingest_sessions(host, registered, sessions=1, per_session=1)
    [rel] = expected
    final = host.primary / rel
    final.parent.mkdir(parents=True)
    final.write_bytes(expected[rel])
    os.link(final, leftover_partial(final))
    assert run(host, "archive", "--once") == 0
    assert final.read_bytes() == expected[rel]
    assert not leftover_partial(final).exists(), "the leftover partial name goes"
    with journal(host) as connection:
        (verified,) = connection.execute("SELECT primary_verified_at FROM movies").fetchone()
    assert verified is not None


def leftover_partial(final: Path) -> Path:
    """The name a kill leaves: partial copies get a random middle part."""
    from embuffer.safecopy.partials import PARTIAL_SUFFIX, partial_prefix

    return final.with_name(f"{partial_prefix(final.name)}0123456789abcdef{PARTIAL_SUFFIX}")
