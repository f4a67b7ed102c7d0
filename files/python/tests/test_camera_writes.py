"""What camera software really does to a file: pause at a page boundary, keep it open, append
after it was copied. None of it may move a partial movie or lose a whole one."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import CAMERA_HOST, BufferHost
from support.movies import eer_bytes, mrc_bytes, tiff_bytes
from test_faults import wait_for
from test_worker_resilience import running_ingest

from embuffer.cli import main

PAGES = 6


def journal_rows(host: BufferHost, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(host.journal)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def write_with_a_pause(path: Path, first: bytes, whole: bytes, pause: float) -> None:
    """A writer that stops exactly at a page boundary (the file is then a valid movie with
    fewer frames), pauses longer than the settle window, then writes the rest."""
    with open(path, "wb") as stream:
        stream.write(first)
    time.sleep(pause)
    with open(path, "r+b") as stream:  # the next pages, and the header/IFD link to them
        stream.write(whole)


def camera_writes_after_the_copy(
    monkeypatch: pytest.MonkeyPatch, source: Path, first: bytes, then: bytes
) -> None:
    """The camera writes `then` into `source` once embuffer has verified its copy of
    `first`, i.e. between the copy and the removal of the camera file; its first version is
    put in place now, written a minute ago."""
    from embuffer.safecopy import transfer

    reread = transfer.Transfer.reread

    def reread_then_write(self: transfer.Transfer, movie_id: int, **kwargs: object) -> float:
        verified = reread(self, movie_id, **kwargs)  # type: ignore[arg-type]
        if source.read_bytes() == first:
            source.write_bytes(then)
        return verified

    monkeypatch.setattr(transfer.Transfer, "reread", reread_then_write)
    source.write_bytes(first)
    a_minute_ago = time.time() - 60
    os.utime(source, (a_minute_ago, a_minute_ago))


def ingest_again(host: BufferHost, source: Path) -> int:
    """The next `ingest --once`, with the camera file old enough to be taken at once."""
    a_minute_ago = time.time() - 60
    os.utime(source, (a_minute_ago, a_minute_ago))
    return main(["--config", str(host.config_path), "ingest", "--once"])


@pytest.mark.parametrize(
    ("suffix", "partial", "whole"),
    [
        (".tif", tiff_bytes(PAGES // 2, 32, 32, seed=7), tiff_bytes(PAGES, 32, 32, seed=7)),
        (".mrc", mrc_bytes(32, 32, PAGES // 2, seed=8), mrc_bytes(32, 32, PAGES, seed=8)),
    ],
    ids=["gatan-tiff", "mrc"],
)
def test_a_writer_pausing_at_a_page_boundary_waits_for_its_frame_count(
    host, registered, suffix, partial, whole
):
    host.write_config(settle_seconds=0.5, frame_count_settle_seconds=20)
    frames = "20261126_140000_01"
    host.leginon.acquisition(
        registered["session"], registered["camera"], frames, "paused_1", nframes=PAGES
    )
    landed = host.buffer_folder() / f"paused_1.frames{suffix[1:] and suffix}"
    with running_ingest(host):
        writer = threading.Thread(
            target=write_with_a_pause,
            args=(host.camera / f"{frames}{suffix}", partial, whole, 3.0),  # 6x the window
        )
        writer.start()
        writer.join()
        finished = time.time()
        wait_for(
            lambda: landed.exists() and not (host.camera / f"{frames}{suffix}").exists(),
            30,
            "the whole movie",
        )
    assert landed.read_bytes() == whole
    [(started, attempts)] = journal_rows(
        host, "SELECT copy_started_at, attempts FROM movies WHERE state = 'done'"
    )
    assert started >= finished, "copied before the camera finished writing"
    assert attempts == 1


def test_a_wrong_frame_count_never_holds_a_movie_for_ever(host, registered):
    host.write_config(settle_seconds=0.5, frame_count_settle_seconds=2)
    frames = "20261126_140100_01"
    host.leginon.acquisition(
        registered["session"], registered["camera"], frames, "wrong_1", nframes=PAGES * 10
    )
    data = tiff_bytes(PAGES, 16, 16, seed=9)
    with running_ingest(host):
        (host.camera / f"{frames}.tif").write_bytes(data)
        wait_for(lambda: not (host.camera / f"{frames}.tif").exists(), 30, "the movie")
    assert (host.buffer_folder() / "wrong_1.frames.tif").read_bytes() == data
    [(detail,)] = journal_rows(host, "SELECT detail FROM events WHERE action = 'frame_count_short'")
    assert f"{PAGES} of the {PAGES * 10} frames" in detail


def test_eer_keeps_the_timing_rule_because_its_count_is_not_a_page_count(host, registered):
    # Falcon 4: nframes = computed count x eer_render (7), never the EER's page count
    host.write_config(settle_seconds=0.5, frame_count_settle_seconds=600)
    frames = "FoilHole_1_Data_2"
    host.leginon.acquisition(
        registered["session"], registered["camera"], frames, "eer_1", nframes=7 * 20
    )
    data = eer_bytes(20, seed=10)
    with running_ingest(host):
        (host.camera / f"{frames}.eer").write_bytes(data)
        wait_for(lambda: not (host.camera / f"{frames}.eer").exists(), 30, "the EER movie")
    assert (host.buffer_folder() / "eer_1.frames.eer").read_bytes() == data


def test_a_source_appended_after_its_copy_is_copied_again_whole(host, registered, monkeypatch):
    host.write_config(settle_seconds=0.5)
    frames = "20261126_140200_01"
    host.leginon.acquisition(registered["session"], registered["camera"], frames, "grown_1")
    source = host.camera / f"{frames}.tif"
    first, whole = tiff_bytes(2, 16, 16, seed=11), tiff_bytes(4, 16, 16, seed=11)
    camera_writes_after_the_copy(monkeypatch, source, first, whole)  # more pages
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0
    assert source.read_bytes() == whole, "kept: it changed after the copy"
    # the shorter copy never stays under the final name, nor anywhere under the buffer root
    assert not list(host.buffer.rglob("grown_1*"))
    monkeypatch.undo()
    assert ingest_again(host, source) == 0
    assert (host.buffer_folder() / "grown_1.frames.tif").read_bytes() == whole
    assert not source.exists()
    assert len(list(host.buffer.rglob("grown_1*"))) == 1


def test_a_source_rewritten_with_other_bytes_keeps_both_versions(host, registered, monkeypatch):
    frames = "20261126_140300_01"
    host.leginon.acquisition(registered["session"], registered["camera"], frames, "redo_1")
    source = host.camera / f"{frames}.mrc"
    old, new = mrc_bytes(8, 8, 2, seed=12), mrc_bytes(8, 8, 2, seed=13)
    camera_writes_after_the_copy(monkeypatch, source, old, new)  # another movie, same name
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0
    monkeypatch.undo()
    assert ingest_again(host, source) == 0
    folder = host.buffer_folder()
    assert (folder / "redo_1.frames.mrc").read_bytes() == new
    assert [p.name for p in host.buffer.rglob("redo_1*")] == ["redo_1.frames.mrc"]
    # the earlier copy is a movie of its own: in quarantine, never deleted
    [earlier] = list((host.quarantine / CAMERA_HOST).iterdir())
    assert earlier.read_bytes() == old
    assert not source.exists()


def wait_for_refused_removal(host: BufferHost) -> None:
    """Until the service has met the camera's refusal to let a file go (its event)."""
    wait_for(
        lambda: bool(journal_rows(host, "SELECT 1 FROM events WHERE action = 'source_busy'")),
        30,
        "the refused removal",
    )


@pytest.fixture
def held_open(tmp_path):
    """A camera file the camera software still holds: the kernel refuses to unlink a file
    that is a mount point (EBUSY), which is what a CIFS sharing violation looks like here."""
    mounted: list[Path] = []

    def hold(path: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("a bind mount needs root")
        result = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot bind-mount: {result.stderr.decode()}")
        mounted.append(path)

    def release() -> None:
        while mounted:
            subprocess.run(["umount", str(mounted.pop())], check=True)

    hold.release = release  # type: ignore[attr-defined]
    yield hold
    release()


def test_a_camera_file_still_held_open_is_removed_later_never_duplicated(
    host, registered, held_open
):
    host.write_config(settle_seconds=0.5)
    frames = "20261126_140400_01"
    host.leginon.acquisition(registered["session"], registered["camera"], frames, "busy_1")
    source = host.camera / f"{frames}.mrc"
    data = mrc_bytes(16, 16, 3, seed=14)
    source.write_bytes(data)
    with open(source, "rb"):  # the camera program has it open, and its removal fails
        held_open(source)
        with pytest.raises(OSError) as refused:
            os.unlink(source)
        assert refused.value.errno == 16  # EBUSY: the same refusal the service meets
        landed = host.buffer_folder() / "busy_1.frames.mrc"
        with running_ingest(host):
            wait_for_refused_removal(host)
            assert landed.read_bytes() == data
            assert source.exists()
            held_open.release()  # the camera closes it
            wait_for(lambda: not source.exists(), 60, "the removal to be retried")
    assert landed.read_bytes() == data
    assert list(host.buffer.rglob("busy_1*")) == [landed]
    assert journal_rows(host, "SELECT state, COUNT(*) FROM movies GROUP BY state") == [("done", 1)]


def test_a_crash_while_the_earlier_copy_is_set_aside_misfiles_nothing(
    host, registered, monkeypatch
):
    from embuffer.ingest import verifiers

    frames = "20261126_140500_01"
    host.leginon.acquisition(registered["session"], registered["camera"], frames, "crash_1")
    source = host.camera / f"{frames}.mrc"
    old, new = mrc_bytes(8, 8, 2, seed=21), mrc_bytes(8, 8, 2, seed=22)

    def quarantine_full(self, movie_id, reason):
        raise OSError(28, "No space left on device (quarantine)")

    camera_writes_after_the_copy(monkeypatch, source, old, new)
    monkeypatch.setattr(verifiers.Verifiers, "quarantine", quarantine_full)
    main(["--config", str(host.config_path), "ingest", "--once"])
    assert source.read_bytes() == new
    monkeypatch.undo()  # room again; the next start finishes what was left
    assert ingest_again(host, source) == 0
    folder = host.buffer_folder()
    assert (folder / "crash_1.frames.mrc").read_bytes() == new
    assert [p.name for p in folder.iterdir() if p.name.startswith((".crash", "crash"))] == [
        "crash_1.frames.mrc"
    ]
    [earlier] = list((host.quarantine / CAMERA_HOST).iterdir())
    assert earlier.read_bytes() == old
    assert not source.exists()
    states = dict(
        journal_rows(
            host, "SELECT image_filename, state FROM movies WHERE image_filename IS NOT NULL"
        )
    )
    assert states == {"crash_1": "done"}


def test_an_unmatched_file_still_held_open_ends_in_quarantine(host, registered, held_open):
    host.write_config(settle_seconds=0.5, grace_minutes=0)
    source = host.camera / "20261126_140600_99.mrc"  # no Leginon image
    data = mrc_bytes(8, 8, 2, seed=23)
    source.write_bytes(data)
    with open(source, "rb"):
        held_open(source)
        with running_ingest(host):
            wait_for_refused_removal(host)
            held_open.release()
            wait_for(lambda: not source.exists(), 60, "the removal to be retried")
    [(state, target)] = journal_rows(host, "SELECT state, target FROM movies")
    assert (state, target) == ("quarantined", "quarantine")
    [kept] = list((host.quarantine / CAMERA_HOST).iterdir())
    assert kept.read_bytes() == data
