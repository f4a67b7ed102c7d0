"""leginon_buffer_host and the two ways Leginon reads BufferHostData: a routine registration
keeps the outage state, an outage never sends Appion to another buffer's row, and the tables
the module creates are made as the site's Leginon makes its own.

The rules are asked here as Leginon asks them (sinedon's queries, newest DEF_id first):
rawtransfer.py uses a buffer only while the camera's newest row of any buffer host is
enabled; Appion reads the camera's newest row with `disabled` = 0.
"""

from __future__ import annotations

from typing import Any

from buffer_host_harness import Database, run_playbook

BUFFER = "buffer01"
BASE = "/bufferdata/frames"
RETIRED = "buffer-old"


def register(db: Database, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "camera_host": "k3-cam-01",
        "buffer_hostname": BUFFER,
        "buffer_base_path": BASE,
        **db.login,
    }
    args.update(overrides)
    return {key: value for key, value in args.items() if value is not None}


def transfer_rule(db: Database, camera: int) -> tuple[int | None, bool]:
    """ddinfo.getUseBufferFromImage: (the newest row, whether the transfer uses a buffer)."""
    rows = db.data.rows(
        "SELECT `DEF_id`, `disabled` FROM `BufferHostData` "
        "WHERE `REF|InstrumentData|ccdcamera` = %s ORDER BY `DEF_id` DESC LIMIT 1",
        (camera,),
    )
    return (rows[0]["DEF_id"], not rows[0]["disabled"]) if rows else (None, False)


def appion_rule(db: Database, camera: int) -> int | None:
    """ddinfo.getBufferFrameSessionPathFromImage: the newest row with disabled = 0."""
    rows = db.data.rows(
        "SELECT `DEF_id` FROM `BufferHostData` WHERE `REF|InstrumentData|ccdcamera` = %s "
        "AND `disabled` = 0 ORDER BY `DEF_id` DESC LIMIT 1",
        (camera,),
    )
    return rows[0]["DEF_id"] if rows else None


def disabled_flags(db: Database) -> dict[int, int]:
    return {row["DEF_id"]: row["disabled"] for row in db.buffer_rows()}


def two_buffers(db: Database) -> tuple[int, int, int, int]:
    """A camera first served by a buffer server since retired (its row still enabled), an
    even older row of it that an administrator disabled, then this buffer registered."""
    camera = db.data.instrument("GatanK3", "k3-cam-01")
    long_off = db.data.buffer_host(camera, RETIRED, "/older/frames", disabled=True)
    retired = db.data.buffer_host(camera, RETIRED, "/old/frames")
    ours = db.data.buffer_host(camera, BUFFER, BASE)
    return camera, long_off, retired, ours


def test_a_routine_registration_keeps_the_outage_state_and_a_first_one_enables(
    leginondb, run_module
):
    camera = leginondb.data.instrument("GatanK3", "k3-cam-01")
    first = run_module(register(leginondb))
    assert first.result["rows"][0]["action"] == "inserted"
    row = first.result["rows"][0]["id"]
    assert disabled_flags(leginondb) == {row: 0}

    assert run_module(register(leginondb, state="disabled")).result["changed"]
    # site.yml during the outage: a changed base path is written, the outage stays
    during = run_module(register(leginondb, buffer_base_path="/bufferdata/new"))
    assert during.result["changed"] and during.result["rows"][0]["changed_fields"] == [
        "buffer_base_path"
    ]
    assert disabled_flags(leginondb) == {row: 1}
    assert transfer_rule(leginondb, camera) == (row, False)
    assert appion_rule(leginondb, camera) is None
    again = run_module(register(leginondb, buffer_base_path="/bufferdata/new"))
    assert not again.result["changed"]

    assert run_module(register(leginondb, state="enabled")).result["changed"]
    assert disabled_flags(leginondb) == {row: 0}
    assert transfer_rule(leginondb, camera) == (row, True)


def test_disabling_refuses_when_appion_would_read_another_buffers_row(leginondb, run_module):
    camera, long_off, retired, ours = two_buffers(leginondb)
    assert transfer_rule(leginondb, camera) == (ours, True)
    assert appion_rule(leginondb, camera) == ours
    before = leginondb.buffer_rows()

    for check in (True, False):
        outcome = run_module(register(leginondb, state="disabled"), check=check)
        assert outcome.failed
        message = outcome.result["msg"]
        assert f"row {ours} disabled, Appion reads the newest enabled row" in message
        assert f"BufferHostData row {retired} (buffer hostname {RETIRED}, base path " in message
        assert f"row {long_off} " not in message  # already disabled: Appion never reads it
        assert "other_enabled_rows=disable" in message and "retired" in message
    assert leginondb.buffer_rows() == before


def test_an_outage_disables_the_other_row_too_and_restores_exactly_it(leginondb, run_module):
    camera, long_off, retired, ours = two_buffers(leginondb)
    outage = register(leginondb, state="disabled", other_enabled_rows="disable")

    dry = run_module(outage, check=True, diff=True)
    assert dry.result["changed"]
    [planned] = dry.result["rows"]
    assert [(r["id"], r["action"]) for r in planned["other_rows"]] == [(retired, "disabled")]
    assert planned["appion_row_id"] is None and not planned["transfer_uses_buffer"]
    assert dry.result["diff"]["before"]["other_rows"][f"row {retired}"]["disabled"] is False
    assert disabled_flags(leginondb) == {long_off: 1, retired: 0, ours: 0}

    during = run_module(outage)
    [reported] = during.result["rows"]
    assert [(r["id"], r["disabled"]) for r in reported["other_rows"]] == [(retired, True)]
    assert disabled_flags(leginondb) == {long_off: 1, retired: 1, ours: 1}
    # Leginon's transfer sends no frames to a buffer; Appion reads the session frame path
    assert transfer_rule(leginondb, camera) == (ours, False)
    assert appion_rule(leginondb, camera) is None
    assert (reported["transfer_row_id"], reported["appion_row_id"]) == (ours, None)
    assert not run_module(outage).result["changed"]

    # the end of the outage names the rows it disabled, and an id of no managed camera
    ended = register(leginondb, state="enabled", reenable_rows=[retired, 999])
    after = run_module(ended)
    assert after.result["changed"]
    assert [(r["id"], r["action"]) for r in after.result["rows"][0]["other_rows"]] == [
        (retired, "enabled")
    ]
    assert any("row 999" in warning for warning in after.warnings)
    assert disabled_flags(leginondb) == {long_off: 1, retired: 0, ours: 0}
    assert transfer_rule(leginondb, camera) == (ours, True)
    assert appion_rule(leginondb, camera) == ours
    assert not run_module(ended).result["changed"]


def test_a_camera_served_by_another_buffer_keeps_that_buffers_rows(leginondb, run_module):
    # The camera's newest row is buffer02's: Leginon sends its frames there, and this
    # buffer's outage leaves buffer02's row (Appion's) alone.
    camera = leginondb.data.instrument("GatanK3", "k3-cam-01")
    ours = leginondb.data.buffer_host(camera, BUFFER, BASE)
    theirs = leginondb.data.buffer_host(camera, "buffer02", "/buffer02/frames")

    outcome = run_module(register(leginondb, state="disabled"))

    assert not outcome.failed, outcome.result
    assert outcome.result["rows"][0]["other_rows"] == []
    assert disabled_flags(leginondb) == {ours: 1, theirs: 0}
    assert transfer_rule(leginondb, camera) == (theirs, True)
    assert appion_rule(leginondb, camera) == theirs


def table_options(db: Database, table: str) -> tuple[str, str]:
    [row] = db.data.rows(
        "SELECT ENGINE AS engine, TABLE_COLLATION AS collation FROM information_schema.TABLES"
        " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        (db.name, table),
    )
    return row["engine"], row["collation"]


def test_created_tables_follow_the_sites_leginon_tables(site_leginondb, run_module):
    site_leginondb.data.instrument("GatanK3", "k3-cam-01")
    with site_leginondb.data.connection.cursor() as cursor:
        cursor.execute("DROP TABLE `BufferHostData`")
        cursor.execute("DROP TABLE `BufferFramePathData`")
    engine, collation = table_options(site_leginondb, "SessionData")

    outcome = run_module(register(site_leginondb))

    assert not outcome.failed, outcome.result
    assert outcome.result["tables_created"] == ["BufferHostData", "BufferFramePathData"]
    assert outcome.result["tables_created_like"]["like"] == "SessionData"
    for table in ("BufferHostData", "BufferFramePathData"):
        assert table_options(site_leginondb, table) == (engine, collation), table
    # a text column holds what the site's other tables hold
    path = "/bufferdata/frames/caf\u00e9/26nov26a/rawdata"
    site_leginondb.data.session("26nov26a", "/data/leginon/caf\u00e9/26nov26a/rawdata")
    with site_leginondb.data.connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO `BufferFramePathData` (`REF|SessionData|session`, "
            "`REF|BufferHostData|host`, `buffer frame path`) VALUES (1, 1, %s)",
            (path,),
        )
    assert site_leginondb.data.rows(
        "SELECT `buffer frame path` AS p FROM `BufferFramePathData` f JOIN `SessionData` s "
        "ON s.`DEF_id` = f.`REF|SessionData|session` WHERE s.`image path` LIKE %s",
        ("%caf\u00e9%",),
    ) == [{"p": path}]


def registration_play(db: Database, **variables: Any) -> dict[str, Any]:
    login = db.login
    return {
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {
            "embuffer_cameras": [{"host": "k3-cam-01", "path": "/mnt/k3-cam-01"}],
            "embuffer_buffer_hostname": BUFFER,
            "embuffer_buffer_root": BASE,
            "embuffer_registration_delegate_to": "localhost",
            "embuffer_registration_install_pymysql": False,
            **{f"embuffer_registration_{key}": value for key, value in login.items()},
            **variables,
        },
        "roles": ["embuffer.buffer.embuffer_registration"],
    }


def task_result(document: dict[str, Any], name: str) -> dict[str, Any]:
    for task in document["plays"][0]["tasks"]:
        if task["task"]["name"].endswith(name):
            return task["hosts"]["localhost"]
    raise AssertionError(f"no task {name!r} ran: {document['_stdout'][-2000:]}")


def test_the_role_keeps_an_outage_and_the_append_flag_and_indexes_when_asked(leginondb, tmp_path):
    camera = leginondb.data.instrument("GatanK3", "k3-cam-01")
    # registered by buffer_host_setup.py --prepend_to_full_path, now in an outage
    row = leginondb.data.buffer_host(camera, BUFFER, BASE, disabled=True, append_full_head=True)

    converge = run_playbook(tmp_path, registration_play(leginondb))
    assert converge["_rc"] == 0, converge["_stdout"][-3000:]
    assert converge["stats"]["localhost"]["changed"] == 0
    [kept] = leginondb.buffer_rows()
    assert (kept["DEF_id"], kept["disabled"], kept["append full head"]) == (row, 1, 1)
    assert task_result(converge, "Index CameraEMData frames name for the ingest's lookups")[
        "skipped"
    ]

    indexed = registration_play(leginondb, embuffer_registration_frames_name_index=True)
    dry = run_playbook(tmp_path, indexed, check=True, diff=True)
    shown = task_result(dry, "Index CameraEMData frames name for the ingest's lookups")
    assert shown["changed"] and shown["statement"].startswith("ALTER TABLE `CameraEMData`")
    assert not leginondb.data.rows(
        "SHOW INDEX FROM `CameraEMData` WHERE Key_name = %s", ("embuffer_frames_name",)
    )
    assert run_playbook(tmp_path, indexed)["stats"]["localhost"]["changed"] == 1
    assert leginondb.data.rows(
        "SHOW INDEX FROM `CameraEMData` WHERE Key_name = %s", ("embuffer_frames_name",)
    )
    assert run_playbook(tmp_path, indexed)["stats"]["localhost"]["changed"] == 0
