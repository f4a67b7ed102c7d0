"""Where frames go, by Leginon's rule, and where Appion will look for them.

Leginon sends a camera's frames to a buffer only while its newest BufferHostData row is
enabled; Appion then looks at the buffer frame path first. During an outage (row disabled)
frames still land on the buffer, and once the row is enabled again the session's buffer
frame path is recorded, so Appion's lookup finds them."""

from __future__ import annotations

import json
import os
import sqlite3
import time

from conftest import BUFFER_HOSTNAME, CAMERA_HOST, BufferHost
from support.movies import mrc_bytes

from embuffer.cli import main


def run(host: BufferHost, *args: str) -> int:
    return main(["--config", str(host.config_path), *args])


def drop(host: BufferHost, name: str, seed: int) -> bytes:
    data = mrc_bytes(8, 8, 2, seed=seed)
    path = host.camera / name
    path.write_bytes(data)
    then = time.time() - 60
    os.utime(path, (then, then))
    return data


def frame_paths(host: BufferHost) -> list[tuple[int, int, str]]:
    return [
        (int(row["s"]), int(row["h"]), str(row["p"]))
        for row in host.leginon.rows(
            "SELECT `REF|SessionData|session` AS s, `REF|BufferHostData|host` AS h, "
            "`buffer frame path` AS p FROM BufferFramePathData ORDER BY DEF_id"
        )
    ]


def test_a_camera_without_a_buffer_host_row_keeps_its_frames_and_config_check_says_why(
    host, capsys
):
    camera = host.leginon.instrument("K3", CAMERA_HOST)  # never registered for a buffer
    session = host.session(uid=os.getuid(), gid=os.getgid())
    host.leginon.acquisition(session, camera, "20261126_130000_01", "nobuf_1")
    data = drop(host, "20261126_130000_01.mrc", seed=1)

    assert run(host, "ingest", "--once") == 0
    # Leginon would have written it to the session frame path, which is not this buffer:
    # it stays on the camera share, nowhere Appion would not look
    assert (host.camera / "20261126_130000_01.mrc").read_bytes() == data
    assert not list(host.buffer.rglob("*.frames.*"))
    capsys.readouterr()
    assert run(host, "status", "--json") == 0
    [status] = json.loads(capsys.readouterr().out)["cameras"]
    assert "no BufferHostData row" in status["last_error"]

    assert run(host, "config", "check") == 1
    out = capsys.readouterr().out
    assert f"[camera '{CAMERA_HOST}'] K3 (InstrumentData {camera}) has no BufferHostData" in out
    assert "run the registration" in out

    host.leginon.ensure_table("BufferFramePathData")
    host.leginon.buffer_host(camera, BUFFER_HOSTNAME, str(host.buffer))  # now registered
    assert run(host, "config", "check") == 0
    assert run(host, "ingest", "--once") == 0
    assert (host.buffer_folder() / "nobuf_1.frames.mrc").read_bytes() == data


def test_frames_taken_during_an_outage_are_found_by_appion_after_it(host, registered):
    leginon, camera = host.leginon, registered["camera"]
    with leginon.connection.cursor() as cursor:  # outage-on: BufferHostData disabled
        cursor.execute(
            "UPDATE BufferHostData SET disabled = 1 WHERE DEF_id = %s", (registered["host_row"],)
        )
    outage_path = host.root / "outage" / "leginon" / "joe" / "26nov27a" / "rawdata"
    outage_path.mkdir(parents=True)
    session = leginon.session("26nov27a", str(outage_path), uid=os.getuid(), gid=os.getgid())
    leginon.acquisition(session, camera, "20261127_080000_01", "outage_1")
    data = drop(host, "20261127_080000_01.mrc", seed=2)
    assert run(host, "outage", "start", "--reason", "NFS", "--location", str(outage_path)) == 0

    assert run(host, "ingest", "--once") == 0
    folder = host.buffer / "joe" / "26nov27a" / "rawdata"  # the buffer layout of that row
    assert (folder / "outage_1.frames.mrc").read_bytes() == data
    assert frame_paths(host) == [], "nothing registered while Appion does not look here"

    with leginon.connection.cursor() as cursor:  # outage-off: enabled again
        cursor.execute(
            "UPDATE BufferHostData SET disabled = 0 WHERE DEF_id = %s", (registered["host_row"],)
        )
    assert run(host, "outage", "end") == 0
    # Appion's lookup (buffer frame path of session and host row) now finds the frames
    assert frame_paths(host) == [(session, registered["host_row"], str(folder))]
    assert run(host, "outage", "end") == 0
    assert len(frame_paths(host)) == 1, "recorded once"
    connection = sqlite3.connect(host.journal)
    assert connection.execute(
        "SELECT frame_path_registered FROM movies WHERE image_filename = 'outage_1'"
    ).fetchall() == [(1,)]
    connection.close()


def test_the_running_ingest_records_outage_frame_paths_itself(host, registered):
    leginon, camera = host.leginon, registered["camera"]
    with leginon.connection.cursor() as cursor:
        cursor.execute("UPDATE BufferHostData SET disabled = 1")
    session = host.session("26nov27b", uid=os.getuid(), gid=os.getgid())
    leginon.acquisition(session, camera, "20261127_090000_01", "outage_2")
    drop(host, "20261127_090000_01.mrc", seed=3)
    assert run(host, "ingest", "--once") == 0
    assert frame_paths(host) == []
    with leginon.connection.cursor() as cursor:
        cursor.execute("UPDATE BufferHostData SET disabled = 0")
    # no `outage end` (the playbook may not have run yet): the next ingest pass records it
    assert run(host, "ingest", "--once") == 0
    assert frame_paths(host) == [
        (session, registered["host_row"], str(host.buffer_folder("26nov27b")))
    ]


def test_a_recorded_frame_path_outside_the_buffer_is_refused_and_nothing_is_written(
    host, registered
):
    leginon = host.leginon
    with leginon.connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO BufferFramePathData (`REF|SessionData|session`, "
            "`REF|BufferHostData|host`, `buffer frame path`) VALUES (%s, %s, '/etc/elsewhere')",
            (registered["session"], registered["host_row"]),
        )
    leginon.acquisition(registered["session"], registered["camera"], "20261127_100000_01", "x_1")
    data = drop(host, "20261127_100000_01.mrc", seed=4)
    assert run(host, "ingest", "--once") == 0
    assert (host.camera / "20261127_100000_01.mrc").read_bytes() == data
    assert not os.path.exists("/etc/elsewhere")


def test_an_image_filename_that_is_a_path_is_quarantined_never_followed(host, registered):
    victim = host.root / "state" / "x.frames.mrc"  # beside the journal
    escape = os.path.relpath(host.root / "state" / "x", host.buffer_folder())
    assert escape.startswith("../")
    host.leginon.acquisition(
        registered["session"], registered["camera"], "20261127_110000_01", escape
    )
    data = drop(host, "20261127_110000_01.mrc", seed=5)
    assert run(host, "ingest", "--once") == 0
    assert not victim.exists()
    assert not list(host.buffer.rglob("*.frames.mrc"))
    [kept] = list((host.quarantine / CAMERA_HOST).iterdir())
    assert kept.read_bytes() == data
    connection = sqlite3.connect(host.journal)
    [(reason,)] = connection.execute("SELECT reason FROM movies WHERE state = 'quarantined'")
    connection.close()
    assert "contains '/'" in reason and "not followed" in reason


def test_a_session_folder_linked_out_of_the_buffer_is_refused_before_leginondb_is_written(
    host, registered
):
    outside = host.root / "elsewhere"
    outside.mkdir()
    parent = host.buffer_folder().parent
    parent.mkdir(parents=True)
    (parent / "rawdata").symlink_to(outside)  # planted by the session's owner
    host.leginon.acquisition(
        registered["session"], registered["camera"], "20261127_120000_01", "l_1"
    )
    data = drop(host, "20261127_120000_01.mrc", seed=6)
    assert run(host, "ingest", "--once") == 0
    assert list(outside.iterdir()) == []
    assert (host.camera / "20261127_120000_01.mrc").read_bytes() == data
    assert frame_paths(host) == [], "nothing recorded for a folder that was refused"


def test_a_reference_filename_that_is_a_path_is_not_copied(host, registered):
    leginon, session, camera = host.leginon, registered["session"], registered["camera"]
    secret = host.root / "secret.mrc"
    secret.write_bytes(mrc_bytes(4, 4, 1, seed=7))
    ref_camera = leginon.camera_em(session, camera, "ref")
    norm = leginon.image(
        "NormImageData",
        session,
        ref_camera,
        os.path.relpath(host.root / "secret", host.image_path()),
    )
    leginon.acquisition(session, camera, "20261127_130000_01", "r_1", norm_id=norm)
    drop(host, "20261127_130000_01.mrc", seed=8)
    assert run(host, "ingest", "--once") == 0
    assert (host.buffer_folder() / "r_1.frames.mrc").exists(), "the movie itself still lands"
    assert not list(host.buffer.rglob("secret*"))
