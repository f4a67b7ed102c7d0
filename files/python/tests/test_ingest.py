"""Ingest end to end (`embuffer ingest --once`) against a real MariaDB and real files."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest
import xxhash
from conftest import CAMERA_HOST, BufferHost, hours_ago
from support.movies import eer_bytes, mrc_bytes, tiff_bytes

from embuffer.cli import main


def ingest_once(host: BufferHost) -> int:
    return main(["--config", str(host.config_path), "ingest", "--once"])


def drop(path: Path, data: bytes, age_seconds: float = 30.0) -> bytes:
    """A camera file that was closed `age_seconds` ago."""
    path.write_bytes(data)
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    return data


def digest(data: bytes) -> str:
    return xxhash.xxh3_128(data).hexdigest()


def journal_rows(host: BufferHost, where: str = "1") -> list[dict[str, object]]:
    connection = sqlite3.connect(host.journal)
    connection.row_factory = sqlite3.Row
    rows = [dict(row) for row in connection.execute(f"SELECT * FROM movies WHERE {where}")]
    connection.close()
    return rows


def test_movies_of_each_format_land_named_verified_and_owned(host, registered):
    leginon = host.leginon
    session, camera = registered["session"], registered["camera"]
    movies = {
        "20261126_101500_01.mrc": (mrc_bytes(64, 64, 8, seed=1), "a_00001en", ".frames.mrc"),
        "20261126_101501_02.tif": (tiff_bytes(6, 64, 64, seed=2), "a_00002en", ".frames.tif"),
        "FoilHole_3_Data_4.eer": (eer_bytes(20, seed=3), "a_00003en", ".frames.eer"),
    }
    for name, (data, filename, _) in movies.items():
        leginon.acquisition(session, camera, name.rsplit(".", 1)[0], filename)
        drop(host.camera / name, data)

    assert ingest_once(host) == 0

    folder = host.buffer_folder()
    for name, (data, filename, suffix) in movies.items():
        landed = folder / (filename + suffix)
        assert landed.read_bytes() == data, name
        info = landed.stat()
        assert (info.st_uid, info.st_gid) == (os.getuid() + 1000, os.getgid() + 1000)
        assert stat.S_IMODE(info.st_mode) == 0o664
        assert not (host.camera / name).exists()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o2775
    rows = journal_rows(host)
    assert {row["state"] for row in rows} == {"done"}
    assert {row["hash"] for row in rows} == {digest(d) for d, _, _ in movies.values()}
    # BufferFramePathData inserted once for the session, exactly where the files went
    paths = leginon.rows("SELECT `buffer frame path` AS p FROM BufferFramePathData")
    assert [row["p"] for row in paths] == [str(folder)]
    assert not list(host.quarantine.rglob("*.*"))


def test_sidecar_and_de_frames_folder_travel_whole(host, registered):
    session, camera = registered["session"], registered["camera"]
    host.leginon.acquisition(session, camera, "20261126_120000_00", "b_00001en")
    drop(host.camera / "20261126_120000_00.mrc", mrc_bytes(32, 32, 4, seed=5))
    drop(host.camera / "20261126_120000_00.xml", b"<Falcon>metadata</Falcon>")
    de = host.camera / "20261126_120500_00.frames"
    (de / "sub").mkdir(parents=True)
    files = {"info.txt": b"Frames: 3\n", "frame_0001.tif": b"x" * 5000, "sub/extra.dat": b"z" * 77}
    for relpath, data in files.items():
        drop(de / relpath, data)
    then = time.time() - 60
    os.utime(de, (then, then))
    os.utime(de / "sub", (then, then))
    host.leginon.acquisition(session, camera, de.name, "b_00002en")

    assert ingest_once(host) == 0

    folder = host.buffer_folder()
    assert (folder / "b_00001en.frames.xml").read_bytes() == b"<Falcon>metadata</Falcon>"
    for relpath, data in files.items():
        assert (folder / "b_00002en.frames" / relpath).read_bytes() == data
    assert list(host.camera.iterdir()) == []
    folder_row = [row for row in journal_rows(host) if row["kind"] == "dir"][0]
    assert len(json.loads(folder_row["manifest"])) == 3


def test_identical_existing_destination_frees_the_camera_but_different_one_quarantines(
    host, registered
):
    session, camera = registered["session"], registered["camera"]
    folder = host.buffer_folder()
    folder.mkdir(parents=True)
    same, other = mrc_bytes(16, 16, 2, seed=7), mrc_bytes(16, 16, 2, seed=8)
    host.leginon.acquisition(session, camera, "20261126_000001_00", "c_1")
    host.leginon.acquisition(session, camera, "20261126_000002_00", "c_2")
    (folder / "c_1.frames.mrc").write_bytes(same)
    (folder / "c_2.frames.mrc").write_bytes(other)
    drop(host.camera / "20261126_000001_00.mrc", same)
    newcomer = drop(host.camera / "20261126_000002_00.mrc", mrc_bytes(16, 16, 2, seed=9))

    assert ingest_once(host) == 0

    assert not (host.camera / "20261126_000001_00.mrc").exists()
    assert (folder / "c_2.frames.mrc").read_bytes() == other  # never overwritten
    quarantined = list((host.quarantine / CAMERA_HOST).iterdir())
    assert [path.read_bytes() for path in quarantined] == [newcomer]
    row = journal_rows(host, "state = 'quarantined'")[0]
    assert "different file already exists" in row["reason"]


def test_unmatched_files_wait_for_the_grace_period_then_go_to_quarantine(host, registered):
    data = drop(host.camera / "20261126_090000_00.tif", tiff_bytes(2, 16, 16, seed=11))
    assert ingest_once(host) == 0
    assert (host.camera / "20261126_090000_00.tif").read_bytes() == data  # within grace

    host.write_config(grace_minutes=0.001)
    time.sleep(0.1)
    assert ingest_once(host) == 0
    assert not (host.camera / "20261126_090000_00.tif").exists()
    assert (host.quarantine / CAMERA_HOST / "20261126_090000_00.tif").read_bytes() == data
    row = journal_rows(host, "state = 'quarantined'")[0]
    assert "no Leginon image has frames name '20261126_090000_00'" in row["reason"]

    # the database is fixed afterwards: retry places it under its Leginon name
    host.leginon.acquisition(
        registered["session"], registered["camera"], "20261126_090000_00", "late_00001en"
    )
    assert main(["--config", str(host.config_path), "quarantine", "retry"]) == 0
    assert (host.buffer_folder() / "late_00001en.frames.tif").read_bytes() == data
    assert not (host.quarantine / CAMERA_HOST / "20261126_090000_00.tif").exists()


def test_images_outside_check_days_or_of_another_camera_are_quarantined_with_the_reason(
    host, registered
):
    leginon, session = host.leginon, registered["session"]
    leginon.acquisition(
        session, registered["camera"], "20261101_000000_00", "old_1", timestamp=hours_ago(24 * 20)
    )
    other_camera = leginon.instrument("Falcon", "falcon-cam-02")
    leginon.acquisition(session, other_camera, "20261126_000000_00", "other_1")
    old = drop(host.camera / "20261101_000000_00.mrc", mrc_bytes(8, 8, 2, seed=12))
    other = drop(host.camera / "20261126_000000_00.mrc", mrc_bytes(8, 8, 2, seed=13))
    host.write_config(grace_minutes=0)

    assert ingest_once(host) == 0

    reasons = {
        Path(row["source_path"]).name: row["reason"]
        for row in journal_rows(host, "state = 'quarantined'")
    }
    assert "older than check_days" in reasons["20261101_000000_00.mrc"]
    assert "belongs to camera host(s) falcon-cam-02" in reasons["20261126_000000_00.mrc"]
    assert (host.quarantine / CAMERA_HOST / "20261101_000000_00.mrc").read_bytes() == old
    assert (host.quarantine / CAMERA_HOST / "20261126_000000_00.mrc").read_bytes() == other
    assert main(["--config", str(host.config_path), "quarantine", "list"]) == 0


def test_aligned_sum_sharing_the_frames_name_is_skipped(host, registered):
    session, camera = registered["session"], registered["camera"]
    host.leginon.acquisition(session, camera, "20261126_130000_00", "movie_1en")
    host.leginon.acquisition(
        session, camera, "20261126_130000_00", "movie_1en-a", align_frames=True
    )
    data = drop(host.camera / "20261126_130000_00.tif", tiff_bytes(3, 16, 16, seed=14))
    assert ingest_once(host) == 0
    assert (host.buffer_folder() / "movie_1en.frames.tif").read_bytes() == data
    assert not (host.buffer_folder() / "movie_1en-a.frames.tif").exists()


def test_incomplete_movie_is_never_moved(host, registered):
    host.leginon.acquisition(
        registered["session"], registered["camera"], "20261126_140000_00", "partial_1"
    )
    full = mrc_bytes(64, 64, 10, seed=15)
    drop(host.camera / "20261126_140000_00.mrc", full[: len(full) // 2], age_seconds=600)
    assert ingest_once(host) == 0
    assert (host.camera / "20261126_140000_00.mrc").exists()
    assert not host.buffer_folder().exists() or not list(host.buffer_folder().iterdir())


def test_hostile_names_and_symlinks_are_handled_without_harm(host, registered):
    session, camera = registered["session"], registered["camera"]
    outside = host.root / "outside.mrc"
    outside.write_bytes(b"must survive")
    (host.camera / "20261126_150000_00.mrc").symlink_to(outside)
    host.leginon.acquisition(session, camera, "20261126_150000_00", "link_1")
    names = ["-rf 20261126.mrc", "20261126\nnewline.tif", "ünïcødé_20261126.eer", "..mrc"]
    datas = {}
    for index, name in enumerate(names):
        if name.endswith(".tif"):
            data = tiff_bytes(1, 8, 8, seed=20 + index)
        elif name.endswith(".eer"):
            data = eer_bytes(3, seed=20 + index)
        else:
            data = mrc_bytes(8, 8, 1, seed=20 + index)
        datas[name] = drop(host.camera / name, data)
    host.leginon.acquisition(session, camera, "-rf 20261126", "dash_1")
    host.write_config(grace_minutes=0)

    assert ingest_once(host) == 0

    assert outside.read_bytes() == b"must survive"
    assert (host.camera / "20261126_150000_00.mrc").is_symlink()
    assert (host.buffer_folder() / "dash_1.frames.mrc").read_bytes() == datas["-rf 20261126.mrc"]
    for name in names[1:]:
        assert (host.quarantine / CAMERA_HOST / name).read_bytes() == datas[name]


def test_wrong_camera_host_deletes_nothing(host, registered):
    host.leginon.acquisition(
        registered["session"], registered["camera"], "20261126_160000_00", "right_1"
    )
    data = drop(host.camera / "20261126_160000_00.mrc", mrc_bytes(8, 8, 2, seed=30))
    config = host.config_path.read_text().replace(f'host = "{CAMERA_HOST}"', 'host = "typo-cam"')
    host.config_path.write_text(config)
    assert ingest_once(host) == 0
    assert (host.camera / "20261126_160000_00.mrc").read_bytes() == data
    assert not list(host.buffer.rglob("*.mrc"))


def test_append_full_head_mode_and_disabled_buffer_host(host):
    leginon = host.leginon
    leginon.ensure_table("BufferFramePathData")  # as the registration role does
    camera = leginon.instrument("K3", CAMERA_HOST)
    leginon.buffer_host(camera, "buffer-01", str(host.buffer), append_full_head=True)
    image_path = host.root / "common" / "leginon" / "22oct25a" / "rawdata"
    image_path.mkdir(parents=True)
    session = leginon.session("22oct25a", str(image_path), uid=1234, gid=5678)
    leginon.acquisition(session, camera, "20261126_170000_00", "head_1")
    data = drop(host.camera / "20261126_170000_00.mrc", mrc_bytes(8, 8, 2, seed=31))
    assert ingest_once(host) == 0
    expected = Path(str(host.buffer) + str(host.root / "common") + "/22oct25a/rawdata")
    assert (expected / "head_1.frames.mrc").read_bytes() == data
    assert (expected / "head_1.frames.mrc").stat().st_uid == 1234

    # outage: the host row disabled -> still to the buffer, but nothing registered for Appion
    leginon.buffer_host(camera, "buffer-01", str(host.buffer), disabled=True)
    session2 = leginon.session(
        "22oct25b", str(host.root / "common/leginon/22oct25b/rawdata"), uid=1234, gid=5678
    )
    leginon.acquisition(session2, camera, "20261126_170001_00", "head_2")
    drop(host.camera / "20261126_170001_00.mrc", mrc_bytes(8, 8, 2, seed=32))
    assert ingest_once(host) == 0
    assert len(leginon.rows("SELECT * FROM BufferFramePathData")) == 1
    landed = list(host.buffer.rglob("head_2.frames.mrc"))
    assert len(landed) == 1


def test_references_are_written_next_to_the_frames(host, registered):
    import numpy

    from embuffer.leginon.mrcimage import read_mrc

    leginon, session = host.leginon, registered["session"]
    # The norm and dark lie in pytest's folder, which only the account running the tests can
    # reach: here it owns the session, as a real owner can read their own image path.
    leginon.rows(
        "UPDATE SessionData SET uid = %s, gid = %s WHERE DEF_id = %s",
        (os.getuid(), os.getgid(), session),
    )
    camera = registered["camera"]
    ref_camera = leginon.camera_em(session, camera, "ref")
    norm = numpy.arange(12, dtype=numpy.float32).reshape(3, 4)
    dark = numpy.full((3, 4), 40.0, dtype=numpy.float32)
    from embuffer.leginon.mrcimage import write_mrc
    from embuffer.safecopy.copy import Ownership

    write_mrc(host.image_path() / "norm_1.mrc", norm, Ownership())
    write_mrc(host.image_path() / "dark_1.mrc", dark, Ownership())
    norm_id = leginon.image("NormImageData", session, ref_camera, "norm_1")
    dark_id = leginon.image("DarkImageData", session, ref_camera, "dark_1")
    plan_id = leginon.corrector_plan(
        session, ref_camera, bad_rows=[5], bad_cols=[1, 2], bad_pixels=[(3, 4)]
    )
    leginon.acquisition(
        session,
        camera,
        "20261126_180000_00",
        "ref_movie",
        norm_id=norm_id,
        dark_id=dark_id,
        plan_id=plan_id,
        flip=True,
        rotate=1,
        nframes=20,
    )
    drop(host.camera / "20261126_180000_00.tif", tiff_bytes(2, 8, 8, seed=40))
    assert ingest_once(host) == 0
    references = host.buffer_folder() / "references"
    assert (references / "norm_1.mrc").exists()
    assert numpy.array_equal(
        read_mrc(references / "norm_1_mod.mrc"), numpy.rot90(numpy.flipud(norm), 3)
    )
    assert numpy.allclose(read_mrc(references / "dark_1_mod.mrc"), 2.0)
    assert (references / f"defect_plan{plan_id:04d}.txt").read_text().startswith("bad_cols: [1, 2]")
    line = (references / "reference_list.txt").read_text().splitlines()
    assert line == [
        f"ref_movie\t1\t1\t20\tnorm_1_mod.mrc\tdark_1_mod.mrc\tdefect_plan{plan_id:04d}.txt"
    ]


def test_status_and_verify_report_truthfully(host, registered, capsys):
    host.leginon.acquisition(
        registered["session"], registered["camera"], "20261126_190000_00", "v_1"
    )
    drop(host.camera / "20261126_190000_00.mrc", mrc_bytes(16, 16, 4, seed=50))
    assert ingest_once(host) == 0
    capsys.readouterr()
    assert main(["--config", str(host.config_path), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["cameras"][0]["moved"] == 1
    assert status["archive"]["backlog_files"] == 1

    landed = host.buffer_folder() / "v_1.frames.mrc"
    assert main(["--config", str(host.config_path), "verify", str(landed)]) == 0
    with open(landed, "r+b") as stream:  # bit rot
        stream.seek(2000)
        stream.write(b"\xff")
    assert main(["--config", str(host.config_path), "verify", str(landed)]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_bad_config_never_starts_ingest(host, capsys):
    host.config_path.write_text(
        host.config_path.read_text().replace("check_days = 10", 'check_days = "ten"\nspeed = 3')
    )
    host.credentials.chmod(0o644)
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 78
    errors = capsys.readouterr().err
    assert "'check_days' must be a whole number" in errors
    assert "unknown key 'speed'" in errors
    assert "make it 0600" in errors


@pytest.mark.parametrize("missing", ["buffer", "quarantine"])
def test_config_check_names_missing_folders(host, capsys, missing):
    target = host.buffer if missing == "buffer" else host.quarantine
    target.rmdir()
    assert main(["--config", str(host.config_path), "config", "check"]) == 78
    assert f"'{target}' does not exist" in capsys.readouterr().err


def test_once_shows_a_progress_bar_on_a_terminal_only(host, registered):
    import pty
    import subprocess
    import sys

    host.leginon.acquisition(
        registered["session"], registered["camera"], "20261126_pty_00", "pty_1"
    )
    drop(host.camera / "20261126_pty_00.mrc", mrc_bytes(512, 512, 40, seed=60))
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "embuffer.cli",
            "--config",
            str(host.config_path),
            "ingest",
            "--once",
        ],
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "100"},
    )
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert process.wait(timeout=60) == 0
    os.close(controller)
    assert "━".encode() in seen  # rich's bar, drawn on the terminal
    assert (host.buffer_folder() / "pty_1.frames.mrc").exists()
    # off a terminal (the services, CI): log lines only
    host.leginon.acquisition(
        registered["session"], registered["camera"], "20261126_pty_01", "pty_2"
    )
    drop(host.camera / "20261126_pty_01.mrc", mrc_bytes(64, 64, 4, seed=61))
    piped = subprocess.run(
        [
            sys.executable,
            "-m",
            "embuffer.cli",
            "--config",
            str(host.config_path),
            "ingest",
            "--once",
        ],
        capture_output=True,
        check=True,
    )
    assert "━".encode() not in piped.stderr and b"ingested" in piped.stderr


def test_copy_record_reaches_the_device_before_the_camera_copy_goes(host, registered, monkeypatch):
    """The service commits without an fsync per commit (journal.py, Durability); before a
    camera copy is removed, the WAL holding its copy record must have been fsynced."""
    session, camera = registered["session"], registered["camera"]
    names = [f"20261126_13000{n}_00.mrc" for n in range(3)]
    for n, name in enumerate(names):
        host.leginon.acquisition(session, camera, name[:-4], f"d_0000{n}en")
        drop(host.camera / name, mrc_bytes(32, 32, 4, seed=n))
    wal = f"{host.journal}-wal"
    order: list[tuple[str, str, str]] = []  # (thread, step, journal row at that moment)
    real_fsync, real_unlink = os.fsync, os.unlink

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if os.readlink(f"/proc/self/fd/{fd}") == wal:
            order.append((threading.current_thread().name, "wal-synced", ""))

    def unlink(path, *args, dir_fd=None, **kwargs) -> None:
        where = Path(path) if dir_fd is None else Path(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
        if where.parent == host.camera:
            # what the journal holds (committed) at this moment
            rows = journal_rows(host, f"source_path = '{where}'")
            row = f"{rows[0]['state']}:{bool(rows[0]['hash'])}"
            order.append((threading.current_thread().name, "source-removed", row))
        real_unlink(path, *args, dir_fd=dir_fd, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "unlink", unlink)

    assert ingest_once(host) == 0

    removals = [index for index, (_, step, _) in enumerate(order) if step == "source-removed"]
    assert len(removals) == len(names)
    for index in removals:
        thread, _, row = order[index]
        assert row == "copied:True", order  # the copy record, with its hash, was committed
        before = [step for name, step, _ in order[:index] if name == thread]
        assert before and before[-1] == "wal-synced", order  # ...and then synced
    assert {row["state"] for row in journal_rows(host)} == {"done"}
