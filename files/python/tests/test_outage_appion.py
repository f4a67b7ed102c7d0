"""Through an outage, a session's frames stay where Appion looks for them, and the outage
report names any session whose frames Appion would not find.

Appion's rule is asked here as Appion asks it (ddinfo.getBufferFrameSessionPathFromImage):
the camera's newest BufferHostData row with disabled = 0, then the session's
BufferFramePathData row for it; with no enabled row, the session frame path. A session
"moved" by Leginon's change_buffer_frame_path.py has its BufferFramePathData row rewritten
to another folder; the frames it takes during an outage must land there too.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from conftest import BufferHost
from support.movies import mrc_bytes

from embuffer.cli import main


def run(host: BufferHost, *args: str) -> int:
    return main(["--config", str(host.config_path), *args])


def run_json(host: BufferHost, capsys, *args: str) -> dict:
    capsys.readouterr()
    assert run(host, *args) == 0
    return json.loads(capsys.readouterr().out)


def drop(host: BufferHost, name: str, seed: int) -> bytes:
    data = mrc_bytes(8, 8, 2, seed=seed)
    path = host.camera / name
    path.write_bytes(data)
    then = time.time() - 60
    os.utime(path, (then, then))
    return data


def appion_looks_in(host: BufferHost, session: int, camera: int) -> str | None:
    """The buffer frame path Appion reads, or None when it reads the session frame path."""
    rows = host.leginon.rows(
        "SELECT `DEF_id` AS id FROM BufferHostData WHERE `REF|InstrumentData|ccdcamera` = %s "
        "AND disabled = 0 ORDER BY DEF_id DESC LIMIT 1",
        (camera,),
    )
    if not rows:
        return None
    paths = host.leginon.rows(
        "SELECT `buffer frame path` AS p FROM BufferFramePathData WHERE "
        "`REF|SessionData|session` = %s AND `REF|BufferHostData|host` = %s "
        "ORDER BY DEF_id DESC LIMIT 1",
        (session, rows[0]["id"]),
    )
    return str(paths[0]["p"]) if paths else None


def frame_path_rows(host: BufferHost, session: int) -> list[tuple[int, str]]:
    return [
        (int(row["h"]), str(row["p"]))
        for row in host.leginon.rows(
            "SELECT `REF|BufferHostData|host` AS h, `buffer frame path` AS p "
            "FROM BufferFramePathData WHERE `REF|SessionData|session` = %s ORDER BY DEF_id",
            (session,),
        )
    ]


def set_disabled(host: BufferHost, host_row: int, disabled: int) -> None:
    with host.leginon.connection.cursor() as cursor:
        cursor.execute(
            "UPDATE BufferHostData SET disabled = %s WHERE DEF_id = %s", (disabled, host_row)
        )


def move_session(host: BufferHost, session: int, host_row: int, new_path: Path) -> None:
    """What change_buffer_frame_path.py does: rewrite the session's row to the new path."""
    with host.leginon.connection.cursor() as cursor:
        cursor.execute(
            "UPDATE BufferFramePathData SET `REF|BufferHostData|host` = %s, "
            "`buffer frame path` = %s WHERE `REF|SessionData|session` = %s",
            (host_row, str(new_path), session),
        )


def test_a_moved_session_keeps_its_frames_where_appion_looks_through_an_outage(
    host, registered, capsys
):
    leginon, camera, row = host.leginon, registered["camera"], registered["host_row"]
    session = registered["session"]
    leginon.acquisition(session, camera, "20261126_100000_01", "moved_1")
    leginon.acquisition(session, camera, "20261126_100000_02", "moved_2")
    # Appion recorded the session's derived path on its first look; an administrator then
    # moved the session to another folder of the buffer
    with leginon.connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO BufferFramePathData (`REF|SessionData|session`, "
            "`REF|BufferHostData|host`, `buffer frame path`) VALUES (%s, %s, %s)",
            (session, row, str(host.buffer_folder())),
        )
    moved = host.buffer / "moved" / "joe" / "26nov26a" / "rawdata"
    move_session(host, session, row, moved)
    assert appion_looks_in(host, session, camera) == str(moved)
    first = drop(host, "20261126_100000_01.mrc", seed=1)
    assert run(host, "ingest", "--once") == 0
    assert (moved / "moved_1.frames.mrc").read_bytes() == first

    set_disabled(host, row, 1)  # outage-on
    assert run(host, "outage", "start", "--reason", "NFS", "--location", "/outage/leginon") == 0
    data = drop(host, "20261126_100000_02.mrc", seed=2)
    assert run(host, "ingest", "--once") == 0
    assert appion_looks_in(host, session, camera) is None  # the session frame path
    assert (moved / "moved_2.frames.mrc").read_bytes() == data

    set_disabled(host, row, 0)  # outage-off
    ended = run_json(host, capsys, "outage", "end")
    assert ended["buffer_frame_paths"]["conflicts"] == []
    assert frame_path_rows(host, session) == [(row, str(moved))], "no second row"
    assert appion_looks_in(host, session, camera) == str(moved)
    report = run_json(host, capsys, "outage", "report", "--json")
    assert report["sessions_appion_cannot_find"] == []


def test_the_report_names_sessions_whose_frames_appion_would_not_find(host, registered, capsys):
    leginon, camera, row = host.leginon, registered["camera"], registered["host_row"]
    set_disabled(host, row, 1)
    assert run(host, "outage", "start", "--reason", "NFS", "--location", "/outage/leginon") == 0
    session = host.session("26nov27a", uid=os.getuid(), gid=os.getgid())
    leginon.acquisition(session, camera, "20261127_080000_01", "late_1")
    drop(host, "20261127_080000_01.mrc", seed=3)
    assert run(host, "ingest", "--once") == 0
    placed = host.buffer_folder("26nov27a")
    assert (placed / "late_1.frames.mrc").exists()

    during = run_json(host, capsys, "outage", "report", "--json")
    [entry] = during["sessions_appion_cannot_find"]
    frames_path = str(host.image_path("26nov27a")).replace("/leginon/", "/frames/")
    assert (entry["session"], entry["appion_path"]) == ("26nov27a", frames_path)
    assert entry["frames_in"] == [str(placed)] and entry["missing"] == 1

    # someone records another folder for the session before the outage ends
    elsewhere = host.buffer / "elsewhere" / "26nov27a" / "rawdata"
    with leginon.connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO BufferFramePathData (`REF|SessionData|session`, "
            "`REF|BufferHostData|host`, `buffer frame path`) VALUES (%s, %s, %s)",
            (session, row, str(elsewhere)),
        )
    set_disabled(host, row, 0)
    ended = run_json(host, capsys, "outage", "end")
    assert len(ended["buffer_frame_paths"]["conflicts"]) == 1
    assert frame_path_rows(host, session) == [(row, str(elsewhere))], "no second row"

    report = run_json(host, capsys, "outage", "report", "--json")
    [entry] = report["sessions_appion_cannot_find"]
    assert entry["appion_path"] == str(elsewhere) == appion_looks_in(host, session, camera)
    assert entry["appion_source"].startswith("BufferFramePathData row")
    assert entry["frames_in"] == [str(placed)]
    capsys.readouterr()
    assert run(host, "outage", "report") == 0
    text = capsys.readouterr().out
    assert f"26nov27a: Appion looks in {elsewhere}" in text
    assert f"1 movie(s) are in {placed}" in text
