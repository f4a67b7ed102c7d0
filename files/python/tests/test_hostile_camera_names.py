"""Camera file names that cannot be stored (not UTF-8) or extended (too long)."""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CAMERA_HOST, BufferHost
from support.movies import mrc_bytes, tiff_bytes

from embuffer.cli import main
from embuffer.config import load_config
from embuffer.ingest import holds, odd_names
from embuffer.journal import Journal
from embuffer.report.status import collect
from embuffer.safecopy import space


def test_unrepresentable_and_overlong_names_are_quarantined_under_safe_names(
    host, registered, capsys
):
    host.write_config(grace_minutes=0)
    camera = os.fsencode(host.camera)
    odd = camera + b"/20261126_\xff\xfe_01.tif"  # Latin-1 bytes from a Windows share
    long = camera + b"/" + b"a" * 240 + b".mrc"
    named = {odd: tiff_bytes(2, 8, 8, seed=1), long: mrc_bytes(8, 8, 2, seed=2)}
    for path, data in named.items():
        with open(path, "wb") as stream:
            stream.write(data)
        os.utime(path, (time.time() - 60, time.time() - 60))
    host.leginon.acquisition(
        registered["session"], registered["camera"], "20261126_160000_01", "ok_1"
    )
    good = host.camera / "20261126_160000_01.mrc"
    good.write_bytes(mrc_bytes(8, 8, 2, seed=3))
    os.utime(good, (time.time() - 60, time.time() - 60))

    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0

    assert os.listdir(camera) == [], "every file left the camera share, none lost"
    assert (host.buffer_folder() / "ok_1.frames.mrc").exists()
    kept = sorted(os.listdir(host.quarantine / CAMERA_HOST))
    assert len(kept) == 2 and all(name.startswith("unnamed-") for name in kept)
    contents = {(host.quarantine / CAMERA_HOST / name).read_bytes() for name in kept}
    assert contents == set(named.values())
    connection = sqlite3.connect(host.journal)
    reasons = [
        r for (r,) in connection.execute("SELECT reason FROM movies WHERE state = 'quarantined'")
    ]
    connection.close()
    assert any("\\xff\\xfe" in reason and "not UTF-8" in reason for reason in reasons)
    assert any("244 bytes long" in reason for reason in reasons)
    capsys.readouterr()
    assert main(["--config", str(host.config_path), "quarantine", "list"]) == 0
    assert "unnamed-" in capsys.readouterr().out


ODD = b"/20261126_\xff\xfe_02.tif"  # not UTF-8: SQLite cannot hold the name


def drop_named(host: BufferHost, tail: bytes, data: bytes) -> bytes:
    path = os.fsencode(host.camera) + tail
    with open(path, "wb") as stream:
        stream.write(data)
    os.utime(path, (time.time() - 60, time.time() - 60))
    return path


def journal_rows(host: BufferHost, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(host.journal)
    try:
        return [tuple(row) for row in connection.execute(sql)]
    finally:
        connection.close()


def ingest_once(host: BufferHost) -> None:
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0


def test_an_odd_name_whose_removal_keeps_failing_is_held_like_any_file(
    host, registered, monkeypatch
):
    host.write_config(grace_minutes=0)
    source = drop_named(host, ODD, tiff_bytes(2, 8, 8, seed=4))
    original = os.unlink

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if b"\xff" in os.fsencode(path):  # the camera software still holds it open
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        original(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    for _ in range(holds.HOLD_AFTER_FAILURES):  # a start retries a failing file once
        # the file's failure is reported (exit 1), not the camera's
        assert main(["--config", str(host.config_path), "ingest", "--once"]) == 1
    assert os.path.exists(source)
    journal = Journal(load_config(host.config_path).journal)
    try:
        [held] = holds.failing_files(journal)
        [camera] = collect(load_config(host.config_path), journal).cameras
    finally:
        journal.close()
    assert held.source_path == odd_names.printable(Path(os.fsdecode(source)))
    assert held.failures == holds.HOLD_AFTER_FAILURES and held.held_since is not None
    assert os.strerror(errno.EBUSY) in held.last_error
    assert [h["file"] for h in camera.held] == [held.source_path], "status names the hold"
    assert journal_rows(host, "SELECT * FROM events WHERE action = 'unexpected_error'") == []
    copies = "SELECT state FROM movies WHERE target = 'quarantine'"
    assert journal_rows(host, copies) == [("verified",)], "each try finishes the same row"

    monkeypatch.setattr(os, "unlink", original)
    ingest_once(host)
    assert not os.path.exists(source)
    assert journal_rows(host, copies) == [("quarantined",)]


def test_odd_names_that_wait_cost_no_error_at_each_look(host, registered, monkeypatch):
    host.write_config(grace_minutes=0)
    folder = os.fsencode(host.camera) + b"/20261126_\xff_03.frames"
    os.mkdir(folder)
    drop_named(host, b"/20261126_\xff_03.frames/frame_0001.tif", tiff_bytes(2, 8, 8, seed=5))
    waiting = drop_named(host, ODD, tiff_bytes(2, 8, 8, seed=6))
    full = space.Usage(host.quarantine, 0, 100 << 30, 0)  # quarantine's filesystem is full
    monkeypatch.setattr(space, "usage", lambda folder: full)

    for _ in range(3):
        ingest_once(host)

    assert os.path.exists(waiting) and os.listdir(folder) == [b"frame_0001.tif"]
    assert journal_rows(host, "SELECT * FROM events WHERE action = 'unexpected_error'") == []
    assert journal_rows(host, "SELECT * FROM held_files") == []


class Crash(BaseException):
    """The power goes: nothing after this point runs."""


@pytest.mark.parametrize("removed", [False, True], ids=["before-removal", "after-removal"])
def test_a_crash_in_an_odd_names_quarantine_leaves_one_row_and_loses_nothing(
    host, registered, monkeypatch, removed
):
    host.write_config(grace_minutes=0)
    odd = drop_named(host, ODD, tiff_bytes(2, 8, 8, seed=7))
    long = drop_named(host, b"/" + b"b" * 240 + b".mrc", mrc_bytes(8, 8, 2, seed=8))
    data = {Path(os.fsdecode(path)).read_bytes() for path in (odd, long)}
    remove = odd_names._remove_unchanged

    def crash(*args: Any) -> None:
        if removed:
            remove(*args)
        raise Crash

    monkeypatch.setattr(odd_names, "_remove_unchanged", crash)
    for _ in range(2):  # one file each time
        with pytest.raises(Crash):
            main(["--config", str(host.config_path), "ingest", "--once"])
    monkeypatch.setattr(odd_names, "_remove_unchanged", remove)
    ingest_once(host)
    ingest_once(host)

    assert os.listdir(host.camera) == [], "both left the camera share"
    kept = host.quarantine / CAMERA_HOST
    assert {(kept / name).read_bytes() for name in os.listdir(kept)} == data
    rows = journal_rows(host, "SELECT state, dest_path FROM movies ORDER BY id")
    assert sorted(state for state, _ in rows) == ["quarantined", "quarantined"], rows
    assert len({dest for _, dest in rows}) == 2
