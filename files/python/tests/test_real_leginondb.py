"""Ingest against a leginondb as Leginon's ORM leaves it: tables appear with their first row,
older sites lack newer columns. Every test here starts from the core tables only."""

from __future__ import annotations

import sqlite3

from conftest import CAMERA_HOST, BufferHost, register
from support.movies import mrc_bytes, tiff_bytes
from test_ingest import drop, ingest_once
from test_metrics import Scrape, collect_once

from embuffer.config import load_config
from embuffer.report.metrics import collector as metrics

OPTIONAL_IMAGE_TABLES = ("DarkImageData", "BrightImageData", "NormImageData")


def events(host: BufferHost, action: str) -> list[str]:
    connection = sqlite3.connect(host.journal)
    try:
        return [
            str(row[0])
            for row in connection.execute("SELECT detail FROM events WHERE action = ?", (action,))
        ]
    finally:
        connection.close()


def scrape(host: BufferHost) -> Scrape:
    return collect_once(metrics.JournalCollector(load_config(host.config_path)))


def test_unmatched_file_where_optional_image_tables_never_existed_goes_to_quarantine(
    host, registered
):
    # The site never took a dark, bright or norm reference: those tables do not exist.
    assert not set(OPTIONAL_IMAGE_TABLES) & host.leginon.tables()
    host.write_config(grace_minutes=0)
    session, camera = registered["session"], registered["camera"]
    host.leginon.acquisition(session, camera, "20261126_090000_01", "site_00001en")
    drop(host.camera / "20261126_090000_01.mrc", mrc_bytes(16, 16, 4, seed=1))
    drop(host.camera / "20261126_090000_99.tif", tiff_bytes(2, 8, 8, seed=2))  # no image

    assert ingest_once(host) == 0

    assert (host.buffer_folder() / "site_00001en.frames.mrc").exists()
    [quarantined] = list((host.quarantine / CAMERA_HOST).iterdir())
    assert quarantined.name == "20261126_090000_99.tif"
    assert not any(host.camera.iterdir())
    gaps = events(host, "schema_missing")
    for table in OPTIONAL_IMAGE_TABLES:
        assert any(f"table {table}" in gap for gap in gaps), (table, gaps)
    assert len(gaps) == len(set(gaps)), "each gap is told once"
    assert scrape(host).value("embuffer_leginondb_schema_gaps_total", camera=CAMERA_HOST) == 3
    # embuffer never creates Leginon's tables itself
    assert not set(OPTIONAL_IMAGE_TABLES) & host.leginon.tables()


def test_an_older_site_without_the_newer_columns_takes_the_whole_path(old_host):
    import numpy

    from embuffer.leginon.mrcimage import write_mrc
    from embuffer.safecopy.copy import Ownership

    host = old_host
    ids = register(host)  # the registration role creates the buffer tables, old layout
    assert "append full head" not in host.leginon.columns("BufferHostData")
    assert "uid" not in host.leginon.columns("SessionData")
    host.write_config(grace_minutes=0)
    leginon, session, camera = host.leginon, ids["session"], ids["camera"]
    ref_camera = leginon.camera_em(session, camera, "ref")
    write_mrc(host.image_path() / "norm_7.mrc", numpy.ones((3, 4), numpy.float32), Ownership())
    write_mrc(host.image_path() / "dark_7.mrc", numpy.zeros((3, 4), numpy.float32), Ownership())
    norm_id = leginon.image("NormImageData", session, ref_camera, "norm_7")
    dark_id = leginon.image("DarkImageData", session, ref_camera, "dark_7")
    leginon.acquisition(
        session, camera, "20261126_091000_01", "old_00001en", norm_id=norm_id, dark_id=dark_id
    )
    drop(host.camera / "20261126_091000_01.tif", tiff_bytes(3, 8, 8, seed=3))
    drop(host.camera / "20261126_091000_77.mrc", mrc_bytes(8, 8, 2, seed=4))  # no image

    assert ingest_once(host) == 0

    folder = host.buffer_folder()
    landed = folder / "old_00001en.frames.tif"
    assert landed.exists()
    # no uid/gid columns: the owner of the session's image path, as Leginon does
    image_path = host.image_path().stat()
    assert (landed.stat().st_uid, landed.stat().st_gid) == (image_path.st_uid, image_path.st_gid)
    references = folder / "references"
    assert (references / "norm_7.mrc").exists() and (references / "dark_7.mrc").exists()
    assert not list(references.glob("*_mod.mrc")), "no flip/rotate columns: no modified copies"
    assert len(list((host.quarantine / CAMERA_HOST).iterdir())) == 1
    rows = leginon.rows("SELECT `buffer frame path` AS p FROM BufferFramePathData")
    assert [row["p"] for row in rows] == [str(folder)]
    gaps = "\n".join(events(host, "schema_missing"))
    for column in ("align frames", "frame flip", "uid", "append full head"):
        assert f"`{column}`" in gaps, (column, gaps)
    assert "no row is taken for an aligned-frame sum" in gaps  # what is assumed, said


def test_a_table_created_mid_session_is_found_again(host, registered):
    host.write_config(grace_minutes=60)
    session, camera = registered["session"], registered["camera"]
    drop(host.camera / "20261126_092000_01.mrc", mrc_bytes(8, 8, 2, seed=5))
    assert ingest_once(host) == 0  # no image anywhere yet: it waits on the camera share
    assert (host.camera / "20261126_092000_01.mrc").exists()
    # the first bright reference of this site: Leginon creates BrightImageData now
    bright_camera = host.leginon.camera_em(session, camera, "20261126_092000_01")
    host.leginon.image("BrightImageData", session, bright_camera, "bright_1")
    assert ingest_once(host) == 0
    assert (host.buffer_folder() / "bright_1.frames.mrc").exists()
