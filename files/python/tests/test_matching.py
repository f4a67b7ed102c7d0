"""Matching rules against a real leginondb: table order, windows, path modes, owners."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pymysql
import pytest
from conftest import CAMERA_HOST, BufferHost
from support.leginon_data import LeginonDB
from support.mariadb_server import TEST_PASSWORD, TEST_USER
from support.movies import mrc_bytes

from embuffer.cli import main
from embuffer.ingest.scan import is_candidate_name
from embuffer.leginon.credentials import read_credentials
from embuffer.leginon.db import LeginonDB as EmbufferDB
from embuffer.leginon.matching import (
    destination_name,
    explain_miss,
    find_image,
    frames_key,
    load_session,
)
from embuffer.leginon.placement import (
    derive_buffer_frame_path,
    session_buffer_folder,
    session_owner,
)
from embuffer.safecopy.formats import MOVIE_FORMAT_BY_SUFFIX


def db_of(host: BufferHost) -> EmbufferDB:
    return EmbufferDB(read_credentials(host.credentials))


@pytest.mark.parametrize(
    ("name", "is_dir", "wanted"),
    [
        ("20261126_1.mrc", False, True),
        ("x.mrcs", False, True),
        ("x.tif", False, True),
        ("x.eer", False, True),
        ("x.TIF", False, True),
        ("x.xml", False, False),
        ("x.txt", False, False),
        (".DS_Store", False, False),
        ("x.frames", True, True),
        ("20261126_1", True, True),
        ("notes", True, False),
        (".x.mrc.embuffer-partial", False, False),
    ],
)
def test_file_type_filter(name, is_dir, wanted):
    assert is_candidate_name(name, is_dir) is wanted


def test_keys_and_destination_names():
    assert frames_key("20261126_101500_01.tif", False) == "20261126_101500_01"
    assert frames_key("20261126_1.frames", True) == "20261126_1.frames"
    assert destination_name("img_1en", "a.tif", False) == "img_1en.frames.tif"
    assert destination_name("img_1en", "a.eer", False) == "img_1en.frames.eer"
    assert destination_name("img_1en", "a.mrc", False) == "img_1en.frames.mrc"
    assert destination_name("img_1en", "20261126_1", True) == "img_1en.frames"


@pytest.mark.parametrize("suffix", sorted(MOVIE_FORMAT_BY_SUFFIX))
def test_every_movie_suffix_is_scanned_keyed_and_named_alike(suffix):
    """The one suffix table decides the scan, the frames name and the buffer name."""
    for written in (suffix, suffix.upper()):
        name = f"20261126_1.5{written}"
        assert is_candidate_name(name, False)
        assert frames_key(name, False) == "20261126_1.5"
        stored = ".tif" if written.lower() in (".tif", ".tiff") else written.lower()
        assert destination_name("img_1en", name, False) == f"img_1en.frames{stored}"


def test_a_sidecar_is_named_beside_its_movie():
    assert destination_name("img_1en", "20261126_1.xml", False) == "img_1en.frames.xml"
    assert frames_key("20261126_1.5.xml", False) == "20261126_1"


@pytest.mark.parametrize(
    ("image_path", "base", "full_head", "expected"),
    [
        (
            "/data/leginon/joe/17nov06a/rawdata",
            "/bufferdata/frames",
            False,
            "/bufferdata/frames/joe/17nov06a/rawdata",
        ),
        (
            "/common_data/leginon/22oct25a/rawdata",
            "/bufferdata",
            True,
            "/bufferdata/common_data/22oct25a/rawdata",
        ),
        ("/a/leginon/b/leginon/s1/rawdata", "/buf", False, "/buf/s1/rawdata"),
        ("/no/such/word/s1/rawdata", "/buf", False, None),
    ],
)
def test_buffer_path_rule_matches_the_reference_table(image_path, base, full_head, expected):
    assert derive_buffer_frame_path(image_path, base, full_head) == expected


def test_tables_are_searched_in_leginon_order_within_check_days(host, registered):
    leginon, session = host.leginon, registered["session"]
    camera_em = leginon.camera_em(session, registered["camera"], "20261126_ref_00")
    leginon.image("NormImageData", session, camera_em, "norm_hit")
    leginon.image("DarkImageData", session, camera_em, "dark_hit")
    db = db_of(host)
    match = find_image(db, "20261126_ref_00", CAMERA_HOST, 10)
    assert match is not None and (match.table, match.filename) == ("DarkImageData", "dark_hit")
    leginon.acquisition(session, registered["camera"], "20261126_ref_00", "acq_hit")
    match = find_image(db, "20261126_ref_00", CAMERA_HOST, 10)
    assert match is not None and match.filename == "acq_hit"
    assert find_image(db, "20261126_ref_00", "other-host", 10) is None


def test_an_older_acquisition_comes_before_a_newer_camera_row_of_the_name(host, registered):
    """Leginon's table order holds when the newest camera row of a frames name is not an
    acquisition's: neither a camera row whose image Leginon has not written yet nor a
    reference taken later under the same name hides the movie; a newer movie wins."""
    leginon, session, camera = host.leginon, registered["session"], registered["camera"]
    name = "20261126_later_00"
    older = leginon.camera_em(session, camera, name)
    leginon.image("AcquisitionImageData", session, older, "acq_older")
    leginon.rows(
        "UPDATE CameraEMData SET DEF_timestamp = NOW() - INTERVAL 1 HOUR WHERE DEF_id = %s",
        (older,),
    )
    db = db_of(host)
    pending = leginon.camera_em(session, camera, name)
    found = find_image(db, name, CAMERA_HOST, 10)
    assert found is not None and (found.table, found.filename) == (
        "AcquisitionImageData",
        "acq_older",
    )
    leginon.image("DarkImageData", session, pending, "dark_newer")
    found = find_image(db, name, CAMERA_HOST, 10)
    assert found is not None and found.filename == "acq_older"
    leginon.acquisition(session, camera, name, "acq_newer")
    found = find_image(db, name, CAMERA_HOST, 10)
    assert found is not None and found.filename == "acq_newer"

    leginon.camera_em(session, camera, "20261126_unwritten_00")
    assert find_image(db, "20261126_unwritten_00", CAMERA_HOST, 10) is None
    reason = explain_miss(db, "20261126_unwritten_00", CAMERA_HOST, 10).reason
    assert reason.startswith("no Leginon image has frames name '20261126_unwritten_00'")


def test_existing_buffer_frame_path_row_is_used_and_first_use_inserts_once(host, registered):
    leginon = host.leginon
    db = db_of(host)
    session = load_session(db, registered["session"])
    custom = str(host.buffer / "custom" / "place")
    other = host.session("26nov26b", uid=1, gid=1)
    with leginon.connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO BufferFramePathData (`REF|SessionData|session`, "
            "`REF|BufferHostData|host`, `buffer frame path`) VALUES (%s, %s, %s)",
            (other, registered["host_row"], custom),
        )
    placed = session_buffer_folder(db, session, registered["camera"], str(host.buffer))
    assert placed is not None and placed.registered
    assert placed.folder == str(host.buffer_folder())
    again = session_buffer_folder(db, session, registered["camera"], str(host.buffer))
    assert again is not None and again.folder == placed.folder
    rows = leginon.rows("SELECT `REF|SessionData|session` AS s FROM BufferFramePathData")
    assert sorted(row["s"] for row in rows) == sorted([other, registered["session"]])
    placed_other = session_buffer_folder(
        db, load_session(db, other), registered["camera"], str(host.buffer)
    )
    assert placed_other is not None and placed_other.folder == custom


def test_owner_falls_back_to_the_image_path_owner(host, registered):
    image_path = host.image_path("26nov26c")
    image_path.mkdir(parents=True)
    os.chown(image_path, 4321, 8765)
    session_id = host.leginon.session("26nov26c", str(image_path))
    session = load_session(db_of(host), session_id)
    assert session_owner(session) == (4321, 8765)


def test_database_without_the_append_full_head_column(host):
    host.server.create_leginondb(host.database, with_append_full_head=False)
    connection = pymysql.connect(
        host="127.0.0.1",
        port=host.server.port,
        user=TEST_USER,
        password=TEST_PASSWORD,
        database=host.database,
        autocommit=True,
    )
    leginon = LeginonDB(connection)
    camera = leginon.instrument("K3", CAMERA_HOST)
    leginon.buffer_host(camera, "buffer-01", str(host.buffer), append_full_head=None)
    image_path = host.root / "data" / "leginon" / "old" / "26nov26d" / "rawdata"
    image_path.mkdir(parents=True)
    session = leginon.session("26nov26d", str(image_path), uid=5, gid=5)
    leginon.acquisition(session, camera, "20261126_old_00", "olddb_1")
    path = host.camera / "20261126_old_00.mrc"
    data = mrc_bytes(8, 8, 1, seed=3)
    path.write_bytes(data)
    os.utime(path, (time.time() - 30, time.time() - 30))
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0
    assert (
        host.buffer / "old" / "26nov26d" / "rawdata" / "olddb_1.frames.mrc"
    ).read_bytes() == data
    connection.close()


def test_destination_head_leaves_other_heads_alone(host, registered):
    host.leginon.acquisition(
        registered["session"], registered["camera"], "20261126_head_00", "head_x"
    )
    path = host.camera / "20261126_head_00.mrc"
    data = mrc_bytes(8, 8, 1, seed=4)
    path.write_bytes(data)
    os.utime(path, (time.time() - 30, time.time() - 30))
    host.write_config(grace_minutes=0, destination_head="/elsewhere")
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0
    assert path.read_bytes() == data  # left for the embuffer that serves /elsewhere
    assert not list(host.quarantine.rglob("*.mrc"))
    host.write_config(grace_minutes=0, destination_head=str(host.buffer))
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0
    assert (host.buffer_folder() / "head_x.frames.mrc").read_bytes() == data


def test_reference_change_mid_session_is_logged(host, registered):
    import sqlite3

    leginon, session, camera = host.leginon, registered["session"], registered["camera"]
    ref_camera = leginon.camera_em(session, camera, "ref")
    norms = [leginon.image("NormImageData", session, ref_camera, f"norm_{n}") for n in (1, 2)]
    for n, norm in enumerate(norms):
        leginon.acquisition(session, camera, f"20261126_refchg_{n}", f"refchg_{n}", norm_id=norm)
        path = host.camera / f"20261126_refchg_{n}.tif"
        from support.movies import tiff_bytes

        path.write_bytes(tiff_bytes(1, 8, 8, seed=n))
        os.utime(path, (time.time() - 30, time.time() - 30))
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0
    connection = sqlite3.connect(host.journal)
    changes = connection.execute(
        "SELECT detail FROM events WHERE action = 'reference_changed'"
    ).fetchall()
    norm_ids = [row[0] for row in connection.execute("SELECT norm_id FROM movies ORDER BY id")]
    connection.close()
    assert norm_ids == norms
    assert len(changes) == 1 and "refchg_1" in changes[0][0]
    assert Path(host.buffer_folder() / "references").is_dir()


def test_a_name_a_latin1_leginondb_cannot_hold_matches_nothing_and_is_no_outage(host):
    """A camera file named with characters latin1 has no code for: MariaDB refuses the
    comparison ("Illegal mix of collations"); that is no image, not an unreachable database
    (which would back the whole camera off)."""
    host.leginon.rows("ALTER TABLE CameraEMData CONVERT TO CHARACTER SET latin1", ())
    db = db_of(host)
    key = "26nov26a_00001\u2028INFO forged"
    assert find_image(db, key, CAMERA_HOST, 10) is None
    miss = explain_miss(db, key, CAMERA_HOST, 10)
    assert miss.reason.startswith(f"no Leginon image has frames name '{key}'")
    assert db.errors == 0
