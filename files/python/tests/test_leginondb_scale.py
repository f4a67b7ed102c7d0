"""Every query embuffer sends to leginondb for a camera file, on a leginondb of 4 million
images: right answers, and a plan that reads no more than the query's time window, with and
without the index a facility may add on `CameraEMData.frames name`.

The SQL checked is the SQL embuffer's own functions send (recorded on the way to the server),
so a query that regresses to a full scan fails here. The database is built once and cached
(support/large_leginondb.py); a test session copies it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import pytest
from support.large_leginondb import (
    DATABASE,
    INDEXED_DATABASE,
    SIZES,
    LargeLeginonDB,
    Shape,
    start_large_leginondb,
)
from support.leginondb_scenarios import BUFFER_ROOT, OTHER_HOST, Scenario, plant
from support.mariadb_server import TEST_PASSWORD, TEST_USER

from embuffer.journal import Journal
from embuffer.leginon.credentials import Credentials
from embuffer.leginon.db import LeginonDB
from embuffer.leginon.frames_index import FRAMES_NAME_INDEX_STATEMENT, inspect
from embuffer.leginon.image_query import IMAGE_TABLES
from embuffer.leginon.matching import explain_days, explain_miss, find_image, load_session
from embuffer.leginon.mrcimage import write_mrc
from embuffer.leginon.placement import Placement, session_buffer_folder
from embuffer.leginon.references import ReferenceWriter
from embuffer.safecopy.copy import Ownership

CHECK_DAYS = 10
IMAGES = SIZES["4M"]
# Tables that grow with the collection; InstrumentData and BufferHostData hold a row per
# camera and may be read whole.
LARGE_TABLES = {
    "AcquisitionImageData",
    "CameraEMData",
    "DarkImageData",
    "BrightImageData",
    "NormImageData",
    "SessionData",
    "BufferFramePathData",
    "CorrectorPlanData",
}


class RecordingDB(LeginonDB):
    """embuffer's own connection class, keeping every statement it sends."""

    def __init__(self, credentials: Credentials) -> None:
        super().__init__(credentials)
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    def rows(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        self.sent.append((sql, tuple(args)))
        return super().rows(sql, args)

    def lookups(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The statements sent to leginondb's tables (not to information_schema)."""
        return [(sql, args) for sql, args in self.sent if "information_schema" not in sql]


@dataclass
class Facility:
    large: LargeLeginonDB
    scenarios: dict[str, Scenario]

    def db(self, database: str) -> RecordingDB:
        server = self.large.server
        return RecordingDB(
            Credentials(TEST_USER, TEST_PASSWORD, database, host="127.0.0.1", port=server.port)
        )


@pytest.fixture(scope="module")
def facility(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Facility]:
    large = start_large_leginondb(IMAGES)
    scenarios = {}
    for database in (DATABASE, INDEXED_DATABASE):
        image_path = tmp_path_factory.mktemp(database) / "leginon" / "scale" / "rawdata"
        image_path.mkdir(parents=True)
        connection = large.root(database)
        scenarios[database] = plant(connection, str(image_path))
        connection.close()
    yield Facility(large, scenarios)
    large.stop()


def window_rows(days: float) -> int:
    """What a DEF_timestamp range of `days` may hold by the server's estimate, with room for
    the estimate's error: a range, never the table."""
    return int(days * 86400 / Shape(IMAGES).step_seconds * 1.5) + 100


ALIASED = re.compile(r"`(\w+)` (?:AS )?(\w+)\b")  # `Table` alias


def table_of(sql: str, step: dict[str, Any]) -> str:
    """The table an EXPLAIN step reads: its alias resolved in the statement's part (a UNION
    numbers its parts 1, 2, ... in `id`)."""
    parts = sql.split(" UNION ALL ")
    part = parts[int(step["id"]) - 1] if step["id"] is not None else sql
    named = {found.group(2): found.group(1) for found in ALIASED.finditer(part)}
    return named.get(str(step["table"]), str(step["table"]))


def assert_reads_its_window(facility: Facility, db: RecordingDB, days: float) -> list[Any]:
    """EXPLAIN every statement `db` sent: no full scan or full index scan of a large table,
    and no step reading more than a `days` window by the server's estimate."""
    connection = facility.large.root(db.credentials.database)
    plans = []
    try:
        for sql, args in db.lookups():
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN " + sql, args)
                columns = [column[0] for column in cursor.description]
                plan = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
            for step in plan:
                table = table_of(sql, step)
                access = str(step["type"]).split("|")[0]
                if table in LARGE_TABLES:
                    assert access not in ("ALL", "index"), (sql, plan)
                if step["rows"] is not None:  # None: the UNION's result, not a read
                    assert int(str(step["rows"]).split()[0]) <= window_rows(days), (sql, plan)
            plans.append((sql, plan))
    finally:
        connection.close()
    assert plans, "no statement was recorded"
    return plans


DATABASES = pytest.mark.parametrize("database", [DATABASE, INDEXED_DATABASE])


@DATABASES
def test_find_image_on_millions_of_images_reads_only_check_days(facility, database):
    scenario = facility.scenarios[database]
    db = facility.db(database)
    found = {}
    for case in ("matched", "movie", "dark"):
        found[case] = find_image(db, scenario.names[case], scenario.host, CHECK_DAYS)
    bulk = find_image(db, scenario.bulk_name, scenario.host, CHECK_DAYS)
    for case in ("other_host", "old", "aligned_only", "unknown"):
        assert find_image(db, scenario.names[case], scenario.host, CHECK_DAYS) is None, case
    assert_reads_its_window(facility, db, CHECK_DAYS + 1)

    matched = found["matched"]
    assert matched is not None and matched.filename == scenario.filenames["matched"]
    assert (matched.norm_id, matched.dark_id, matched.plan_id) == (
        scenario.norm_id,
        scenario.dark_id,
        scenario.plan_id,
    )
    assert (matched.frame_flip, matched.frame_rotate, matched.nframes) == (True, 2, 40)
    assert found["movie"] is not None and found["movie"].filename == scenario.filenames["movie"]
    assert found["dark"] is not None
    assert (found["dark"].table, found["dark"].filename) == (
        "DarkImageData",
        scenario.filenames["dark"],
    )
    assert bulk is not None and bulk.filename == scenario.bulk_filename
    assert find_image(db, scenario.names["other_host"], OTHER_HOST, CHECK_DAYS) is not None


@DATABASES
def test_a_waiting_file_costs_one_statement_and_a_movie_two(facility, database):
    """An unmatched name is looked up again and again while its file waits: one statement,
    which reads CameraEMData (its window, or the name by the index) and no image table. A
    movie takes one more, by its camera row's key."""
    scenario = facility.scenarios[database]
    db = facility.db(database)
    find_image(db, scenario.names["unknown"], scenario.host, CHECK_DAYS)  # schema read
    db.sent.clear()
    assert find_image(db, scenario.names["unknown"], scenario.host, CHECK_DAYS) is None
    [(statement, _args)] = db.lookups()
    assert not [table for table in IMAGE_TABLES if table in statement], statement
    db.sent.clear()
    assert find_image(db, scenario.names["matched"], scenario.host, CHECK_DAYS) is not None
    assert len(db.lookups()) == 2
    assert_reads_its_window(facility, db, CHECK_DAYS + 1)


@DATABASES
def test_explain_miss_is_bounded_and_still_says_why(facility, database):
    scenario = facility.scenarios[database]
    db = facility.db(database)
    names, host = scenario.names, scenario.host
    reasons = {case: explain_miss(db, names[case], host, CHECK_DAYS).reason for case in names}
    days = explain_days(CHECK_DAYS)
    assert_reads_its_window(facility, db, days + 1)

    assert f"belongs to camera host(s) {OTHER_HOST}" in reasons["other_host"]
    assert f"older than check_days ({CHECK_DAYS} days)" in reasons["old"]
    assert "matches only aligned-frame sums" in reasons["aligned_only"]
    for case in ("unknown", "ancient"):  # 200 days old: beyond where it looks, and it says so
        assert reasons[case] == (
            f"no Leginon image has frames name '{names[case]}' for camera host {host} "
            f"(nor for any other) within the last {days} days"
        )


@DATABASES
def test_placement_and_references_read_single_rows(facility, database, tmp_path):
    scenario = facility.scenarios[database]
    db = facility.db(database)
    image_path = Path(scenario.image_path)
    write_mrc(image_path / "scale_norm.mrc", numpy.ones((4, 6), numpy.float32), Ownership())
    write_mrc(image_path / "scale_dark.mrc", numpy.zeros((4, 6), numpy.float32), Ownership())
    match = find_image(db, scenario.names["matched"], scenario.host, CHECK_DAYS)
    assert match is not None
    db.sent.clear()

    session = load_session(db, match.session_id)
    first = session_buffer_folder(db, session, match.instrument_id, BUFFER_ROOT)
    again = session_buffer_folder(db, session, match.instrument_id, BUFFER_ROOT)
    folder = tmp_path / "frames"
    writer = ReferenceWriter(db, Journal(tmp_path / "journal.sqlite"), scenario.host)
    writer.write_for(1, match, folder, Ownership())
    assert_reads_its_window(facility, db, 1)

    assert session.image_path == scenario.image_path
    assert isinstance(first, Placement) and isinstance(again, Placement)
    assert first.folder == again.folder == f"{BUFFER_ROOT}/scale/rawdata"
    assert (first.note, again.note) == ("new BufferFramePathData row", "BufferFramePathData")
    listed = (folder / "references" / "reference_list.txt").read_text().split("\t")
    assert listed[0] == scenario.filenames["matched"]
    plan = f"defect_plan{scenario.plan_id:04d}.txt\n"
    assert listed[4:] == ["scale_norm_mod.mrc", "scale_dark_mod.mrc", plan]


@DATABASES
def test_the_frames_name_index_is_told_with_its_statement(facility, database):
    found = inspect(facility.db(database))
    assert found is not None
    assert found.rows >= IMAGES
    if database == INDEXED_DATABASE:
        assert found.present and found.index_name == "embuffer_frames_name"
        assert "has an index on `frames name`" in found.describe()
    else:
        assert not found.present
        described = found.describe()
        assert FRAMES_NAME_INDEX_STATEMENT in described
        assert "blocks Leginon's writes to CameraEMData" in described
        assert f"about {found.estimated_seconds():.0f} s" in described
        assert found.estimated_seconds() >= 20


def test_config_check_and_status_tell_the_index_and_how_to_add_it(host, registered, capsys):
    from embuffer.cli import main

    def told(*command: str) -> str:
        capsys.readouterr()
        main(["--config", str(host.config_path), *command])
        return capsys.readouterr().out

    assert FRAMES_NAME_INDEX_STATEMENT in told("config", "check")
    assert FRAMES_NAME_INDEX_STATEMENT in told("status")
    assert "run between sessions" in json.loads(told("status", "--json"))["frames_name_index"]
    with host.leginon.connection.cursor() as cursor:
        cursor.execute(FRAMES_NAME_INDEX_STATEMENT)
    checked = told("config", "check")
    assert "has an index on `frames name` (embuffer_frames_name)" in checked
    assert FRAMES_NAME_INDEX_STATEMENT not in checked
