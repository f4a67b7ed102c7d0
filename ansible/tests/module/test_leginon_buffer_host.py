"""leginon_buffer_host against a real MariaDB: the buffer_host_setup rules, old schemas,
check and diff mode, and the connection options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from buffer_host_harness import TEST_PASSWORD, TEST_USER, Database, run_playbook

BUFFER = "buffer01"
BASE = "/bufferdata/frames"


def register(db: Database, **overrides: Any) -> dict[str, Any]:
    """Module arguments for registering BUFFER for the K3 camera PC, plus overrides."""
    args: dict[str, Any] = {
        "camera_host": "k3-cam-01",
        "buffer_hostname": BUFFER,
        "buffer_base_path": BASE,
        **db.login,
    }
    args.update(overrides)
    return {key: value for key, value in args.items() if value is not None}


def project(row: dict[str, Any]) -> dict[str, Any]:
    """The columns the module manages, from a raw BufferHostData row."""
    return {
        "camera": row["REF|InstrumentData|ccdcamera"],
        "host": row["buffer hostname"],
        "path": row["buffer base path"],
        "disabled": row["disabled"],
        "append": row.get("append full head"),
    }


def test_first_run_inserts_a_row_and_the_second_changes_nothing(leginondb, run_module):
    camera = leginondb.data.instrument("GatanK3", "k3-cam-01")

    first = run_module(register(leginondb))
    assert first.rc == 0, first.result
    assert first.result["changed"] is True
    [row] = leginondb.buffer_rows()
    assert project(row) == {
        "camera": camera,
        "host": BUFFER,
        "path": BASE,
        "disabled": 0,
        "append": 0,
    }
    [reported] = first.result["rows"]
    assert reported["action"] == "inserted"
    assert reported["id"] == row["DEF_id"]
    assert reported["camera_name"] == "GatanK3"
    assert reported["camera_host"] == "k3-cam-01"
    assert reported["disabled"] is False and reported["append_full_head"] is False
    assert first.result["append_full_head_supported"] is True

    second = run_module(register(leginondb))
    assert second.rc == 0, second.result
    assert second.result["changed"] is False
    assert second.result["rows"][0]["action"] == "unchanged"
    assert leginondb.buffer_rows() == [row]


def test_every_camera_on_the_host_is_registered_or_only_the_named_one(
    leginondb, run_module
):
    k3 = leginondb.data.instrument("GatanK3", "k3-cam-01")
    falcon = leginondb.data.instrument("Falcon4", "k3-cam-01")
    leginondb.data.instrument("Glacios", "scope-pc")

    named = run_module(register(leginondb, camera_name="Falcon4"))
    assert named.rc == 0, named.result
    assert [project(row)["camera"] for row in leginondb.buffer_rows()] == [falcon]

    everything = run_module(register(leginondb))
    assert everything.rc == 0, everything.result
    assert everything.result["changed"] is True
    assert {row["camera_id"]: row["action"] for row in everything.result["rows"]} == {
        k3: "inserted",
        falcon: "unchanged",
    }
    assert sorted(project(row)["camera"] for row in leginondb.buffer_rows()) == [
        k3,
        falcon,
    ]


def test_base_path_and_append_flag_are_updated_in_place(leginondb, run_module):
    camera = leginondb.data.instrument("GatanK3", "k3-cam-01")
    row_id = leginondb.data.buffer_host(
        camera, BUFFER, "/old/frames", append_full_head=False
    )
    (before,) = leginondb.buffer_rows()

    outcome = run_module(
        register(leginondb, buffer_base_path="/bufferdata", append_full_head=True)
    )
    assert outcome.rc == 0, outcome.result
    assert outcome.result["changed"] is True
    [reported] = outcome.result["rows"]
    assert reported["action"] == "updated"
    assert sorted(reported["changed_fields"]) == [
        "append_full_head",
        "buffer_base_path",
    ]
    [after] = leginondb.buffer_rows()
    assert after["DEF_id"] == row_id
    assert project(after) == {**project(before), "path": "/bufferdata", "append": 1}

    # Leaving append_full_head out keeps the stored value.
    again = run_module(register(leginondb, buffer_base_path="/bufferdata"))
    assert again.result["changed"] is False
    assert leginondb.buffer_rows() == [after]


def test_state_disabled_and_enabled_toggle_only_the_disabled_flag(
    leginondb, run_module
):
    camera = leginondb.data.instrument("GatanK3", "k3-cam-01")
    leginondb.data.buffer_host(camera, BUFFER, BASE, append_full_head=True)
    (original,) = leginondb.buffer_rows()

    # The outage playbooks call it like this: no base path, keep everything else.
    disabled = run_module(register(leginondb, buffer_base_path=None, state="disabled"))
    assert disabled.rc == 0, disabled.result
    assert disabled.result["changed"] is True
    assert disabled.result["rows"][0]["changed_fields"] == ["disabled"]
    (row,) = leginondb.buffer_rows()
    assert project(row) == {**project(original), "disabled": 1}
    assert row["DEF_id"] == original["DEF_id"]

    assert (
        run_module(register(leginondb, buffer_base_path=None, state="disabled")).result[
            "changed"
        ]
        is False
    )

    enabled = run_module(register(leginondb, state="enabled"))
    assert enabled.result["changed"] is True
    assert leginondb.buffer_rows() == [original]


def test_disabling_a_camera_without_a_row_writes_nothing(leginondb, run_module):
    leginondb.data.instrument("GatanK3", "k3-cam-01")

    outcome = run_module(register(leginondb, buffer_base_path=None, state="disabled"))

    assert outcome.rc == 0, outcome.result
    assert outcome.result["changed"] is False
    assert outcome.result["rows"][0]["action"] == "absent"
    assert any("nothing to disable" in warning for warning in outcome.warnings), (
        outcome.warnings
    )
    assert leginondb.buffer_rows() == []


def test_enabled_state_requires_a_base_path(leginondb, run_module):
    leginondb.data.instrument("GatanK3", "k3-cam-01")

    outcome = run_module(register(leginondb, buffer_base_path=None))

    assert outcome.failed
    assert "buffer_base_path" in outcome.result["msg"]
    assert leginondb.buffer_rows() == []


def test_relative_base_path_is_refused(leginondb, run_module):
    leginondb.data.instrument("GatanK3", "k3-cam-01")

    outcome = run_module(register(leginondb, buffer_base_path="bufferdata/frames"))

    assert outcome.failed
    assert "absolute" in outcome.result["msg"]
    assert leginondb.buffer_rows() == []


def test_newest_row_is_managed_and_older_rows_are_untouched(leginondb, run_module):
    camera = leginondb.data.instrument("GatanK3", "k3-cam-01")
    other_camera = leginondb.data.instrument("Falcon4", "falcon-pc")
    leginondb.data.buffer_host(camera, BUFFER, "/first/frames")
    leginondb.data.buffer_host(camera, "buffer02", "/other/buffer")
    leginondb.data.buffer_host(other_camera, BUFFER, "/falcon/frames")
    newest = leginondb.data.buffer_host(camera, BUFFER, "/second/frames", disabled=True)
    leginondb.data.buffer_host(other_camera, "buffer02", "/falcon/other")
    before = {row["DEF_id"]: row for row in leginondb.buffer_rows()}

    outcome = run_module(register(leginondb))

    assert outcome.rc == 0, outcome.result
    [reported] = outcome.result["rows"]
    assert reported["id"] == newest
    after = {row["DEF_id"]: row for row in leginondb.buffer_rows()}
    assert sorted(after) == sorted(before), "rows were added or deleted"
    # state present (the default) registers the base path and keeps the row disabled
    assert project(after[newest]) == {**project(before[newest]), "path": BASE}
    untouched = {row_id: row for row_id, row in after.items() if row_id != newest}
    assert untouched == {
        row_id: row for row_id, row in before.items() if row_id != newest
    }


def test_unknown_camera_host_fails_naming_it_and_the_known_hosts(leginondb, run_module):
    leginondb.data.instrument("GatanK3", "k3-cam-01")
    leginondb.data.instrument("Falcon4", "falcon-pc")

    outcome = run_module(register(leginondb, camera_host="k3-cam-1"))

    assert outcome.rc != 0
    assert outcome.failed
    message = outcome.result["msg"]
    assert "'k3-cam-1'" in message and "unknown" in message
    assert "falcon-pc" in message and "k3-cam-01" in message
    assert leginondb.buffer_rows() == []


def test_unknown_camera_name_fails_listing_the_hosts_instruments(leginondb, run_module):
    leginondb.data.instrument("GatanK3", "k3-cam-01")
    leginondb.data.instrument("Krios", "k3-cam-01")

    outcome = run_module(register(leginondb, camera_name="Falcon4"))

    assert outcome.failed
    assert "Falcon4" in outcome.result["msg"]
    assert "GatanK3, Krios" in outcome.result["msg"]
    assert leginondb.buffer_rows() == []


def test_old_schema_without_append_column_works_and_warns(old_leginondb, run_module):
    camera = old_leginondb.data.instrument("GatanK3", "k3-cam-01")

    outcome = run_module(register(old_leginondb, append_full_head=False))

    assert outcome.rc == 0, outcome.result
    assert outcome.result["changed"] is True
    assert outcome.result["append_full_head_supported"] is False
    assert outcome.result["rows"][0]["append_full_head"] is None
    assert any("append full head" in warning for warning in outcome.warnings), (
        outcome.warnings
    )
    [row] = old_leginondb.buffer_rows()
    assert project(row) == {
        "camera": camera,
        "host": BUFFER,
        "path": BASE,
        "disabled": 0,
        "append": None,
    }
    assert "append full head" not in old_leginondb.buffer_columns()
    assert run_module(register(old_leginondb)).result["changed"] is False


def test_old_schema_refuses_to_set_the_append_flag(old_leginondb, run_module):
    old_leginondb.data.instrument("GatanK3", "k3-cam-01")

    outcome = run_module(register(old_leginondb, append_full_head=True))

    assert outcome.failed
    assert "append full head" in outcome.result["msg"]
    assert "add_append_full_head_column" in outcome.result["msg"]
    assert old_leginondb.buffer_rows() == []
    assert "append full head" not in old_leginondb.buffer_columns()


def test_old_schema_gets_the_column_only_when_asked(old_leginondb, run_module):
    camera = old_leginondb.data.instrument("GatanK3", "k3-cam-01")
    existing = old_leginondb.data.buffer_host(
        camera, BUFFER, BASE, append_full_head=None
    )
    asked = register(
        old_leginondb, append_full_head=True, add_append_full_head_column=True
    )

    dry = run_module(asked, check=True)
    assert dry.rc == 0, dry.result
    assert dry.result["changed"] is True
    assert dry.result["append_full_head_column_added"] is True
    assert "append full head" not in old_leginondb.buffer_columns()

    outcome = run_module(asked)
    assert outcome.rc == 0, outcome.result
    assert outcome.result["changed"] is True
    assert outcome.result["append_full_head_supported"] is True
    column = old_leginondb.buffer_columns()["append full head"]
    assert column["type"] == "tinyint(1)"
    assert column["nullable"] == "YES"
    assert column["col_default"] == "0"
    [row] = old_leginondb.buffer_rows()
    assert row["DEF_id"] == existing
    assert row["append full head"] == 1

    again = run_module(asked)
    assert again.result["changed"] is False
    assert again.result["append_full_head_column_added"] is False


def test_check_mode_reports_the_change_and_writes_nothing(leginondb, run_module):
    camera = leginondb.data.instrument("GatanK3", "k3-cam-01")

    insert = run_module(register(leginondb), check=True)
    assert insert.rc == 0, insert.result
    assert insert.result["changed"] is True
    assert insert.result["rows"][0]["action"] == "inserted"
    assert insert.result["rows"][0]["id"] is None
    assert leginondb.buffer_rows() == []

    leginondb.data.buffer_host(camera, BUFFER, "/old/frames")
    before = leginondb.buffer_rows()
    update = run_module(register(leginondb, state="disabled"), check=True)
    assert update.result["changed"] is True
    assert update.result["rows"][0]["buffer_base_path"] == BASE
    assert update.result["rows"][0]["disabled"] is True
    assert leginondb.buffer_rows() == before


def test_diff_shows_rows_before_and_after(leginondb, run_module):
    camera = leginondb.data.instrument("GatanK3", "k3-cam-01")
    row_id = leginondb.data.buffer_host(camera, BUFFER, "/old/frames")
    key = f"GatanK3 (InstrumentData {camera})"

    outcome = run_module(register(leginondb, state="disabled"), check=True, diff=True)

    assert outcome.rc == 0, outcome.result
    diff = outcome.result["diff"]
    assert diff["before"]["rows"][key]["buffer_base_path"] == "/old/frames"
    assert diff["before"]["rows"][key]["disabled"] is False
    assert diff["after"]["rows"][key]["buffer_base_path"] == BASE
    assert diff["after"]["rows"][key]["disabled"] is True
    assert diff["after"]["rows"][key]["id"] == row_id
    assert "test-password" not in json.dumps(diff)

    created = run_module(
        register(leginondb, camera_name=None, camera_host="new-cam"), diff=True
    )
    assert created.failed  # an unknown host gives no diff, only the error
    leginondb.data.instrument("Falcon4", "new-cam")
    created = run_module(register(leginondb, camera_host="new-cam"), diff=True)
    assert created.result["diff"]["before"]["rows"] == {}
    [(_, after)] = created.result["diff"]["after"]["rows"].items()
    assert after["buffer_base_path"] == BASE and after["id"] is not None


def test_config_file_login_over_tcp_and_socket(leginondb, run_module, tmp_path):
    leginondb.data.instrument("GatanK3", "k3-cam-01")
    tcp = leginondb.server.write_credentials(tmp_path / "tcp.cnf", leginondb.name)
    socket_file = leginondb.server.write_credentials(
        tmp_path / "socket.cnf", leginondb.name, via_socket=True
    )
    bare = {
        "camera_host": "k3-cam-01",
        "buffer_hostname": BUFFER,
        "buffer_base_path": BASE,
    }

    over_tcp = run_module({**bare, "config_file": str(tcp)})
    assert over_tcp.rc == 0, over_tcp.result
    assert over_tcp.result["changed"] is True

    over_socket = run_module(
        {**bare, "config_file": str(socket_file), "state": "disabled"}
    )
    assert over_socket.rc == 0, over_socket.result
    assert over_socket.result["changed"] is True
    [row] = leginondb.buffer_rows()
    assert row["disabled"] == 1


def test_config_file_includes_comments_and_other_groups(
    leginondb, run_module, tmp_path
):
    leginondb.data.instrument("GatanK3", "k3-cam-01")
    secret = tmp_path / "conf.d" / "secret.cnf"
    secret.parent.mkdir()
    secret.write_text(
        f'[client]\nuser={TEST_USER}\npassword = "{TEST_PASSWORD}"\ndatabase = {leginondb.name}\n'
    )
    main = tmp_path / "main.cnf"
    main.write_text(
        "# written by hand\n[mysqld]\nuser = mysql\nport = 1\n"
        f"[client]\nhost = 127.0.0.1   # the test server\nport = {leginondb.server.port}\n"
        "!includedir conf.d\n"
        "[mysqldump]\nuser = nobody\n"
    )

    outcome = run_module(
        {
            "camera_host": "k3-cam-01",
            "buffer_hostname": BUFFER,
            "buffer_base_path": BASE,
            "config_file": str(main),
        }
    )

    assert outcome.rc == 0, outcome.result
    assert len(leginondb.buffer_rows()) == 1


def test_explicit_login_options_override_the_config_file(
    leginondb, run_module, tmp_path
):
    leginondb.data.instrument("GatanK3", "k3-cam-01")
    config = tmp_path / "wrong.cnf"
    config.write_text(
        "[client]\nuser = nobody\npassword = 'wrong # not a comment'\nhost = 127.0.0.1\n"
        f"port = {leginondb.server.port}\ndatabase = no_such_db\n"
        # Other programs' groups must not leak into the client settings.
        f'[mysql]\nuser = {TEST_USER}\npassword = "{TEST_PASSWORD}"\n'
    )
    config.chmod(0o600)
    args = {
        "camera_host": "k3-cam-01",
        "buffer_hostname": BUFFER,
        "buffer_base_path": BASE,
        "config_file": str(config),
    }

    refused = run_module(args)
    assert refused.failed
    assert "access denied" in refused.result["msg"]
    assert "nobody@127.0.0.1" in refused.result["msg"]

    accepted = run_module(
        {
            **args,
            "login_user": TEST_USER,
            "login_password": TEST_PASSWORD,
            "login_db": leginondb.name,
        }
    )
    assert accepted.rc == 0, accepted.result
    assert len(leginondb.buffer_rows()) == 1


def test_connection_errors_are_explained_without_the_password(
    leginondb, run_module, tmp_path
):
    leginondb.data.instrument("GatanK3", "k3-cam-01")

    wrong_password = run_module(register(leginondb, login_password="not it"))
    assert wrong_password.failed
    assert "access denied" in wrong_password.result["msg"]
    assert "not it" not in wrong_password.stdout

    wrong_db = run_module(register(leginondb, login_db="leginondb_missing"))
    assert wrong_db.failed
    assert "leginondb_missing" in wrong_db.result["msg"]

    missing_file = run_module(
        register(leginondb, config_file=str(tmp_path / "absent.cnf"))
    )
    assert missing_file.failed
    assert (
        "absent.cnf" in missing_file.result["msg"]
        and "does not exist" in missing_file.result["msg"]
    )

    assert leginondb.buffer_rows() == []


def test_a_site_that_never_had_a_buffer_gets_the_tables_as_leginon_would_make_them(
    leginondb, run_module
):
    # Leginon's ORM creates a table on its first row: such a site has neither buffer table.
    leginondb.data.instrument("GatanK3", "k3-cam-01")
    with leginondb.data.connection.cursor() as cursor:
        cursor.execute("DROP TABLE `BufferHostData`")
        cursor.execute("DROP TABLE `BufferFramePathData`")

    checked = run_module(register(leginondb), check=True)
    assert not checked.failed and checked.result["changed"]
    assert checked.result["tables_created"] == ["BufferHostData", "BufferFramePathData"]
    assert checked.result["rows"][0]["action"] == "inserted"
    assert "BufferHostData" not in leginondb.data.tables()  # check mode wrote nothing

    outcome = run_module(register(leginondb))
    assert not outcome.failed and outcome.result["changed"]
    assert {"BufferHostData", "BufferFramePathData"} <= leginondb.data.tables()
    assert len(leginondb.buffer_rows()) == 1
    # the ingest's insert works on the created table
    with leginondb.data.connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO `BufferFramePathData` (`REF|SessionData|session`, "
            "`REF|BufferHostData|host`, `buffer frame path`) VALUES (1, 1, '/b/x')"
        )
    again = run_module(register(leginondb))
    assert (
        not again.failed
        and not again.result["changed"]
        and again.result["tables_created"] == []
    )


def test_a_registrar_with_only_the_privileges_it_needs_changes_nothing_the_second_time(
    leginondb, run_module
):
    # The account the role documents: CREATE alone on BufferFramePathData shows the table
    # in information_schema.TABLES but none of its columns.
    leginondb.data.instrument("GatanK3", "k3-cam-01")
    name = leginondb.name
    root = leginondb.server.root()
    try:
        with root.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS `%s`.`BufferFramePathData`" % name)
            cursor.execute("DROP TABLE IF EXISTS `%s`.`BufferHostData`" % name)
            cursor.execute(
                "CREATE USER IF NOT EXISTS 'registrar'@'%' IDENTIFIED BY 'r-pw'"
            )
            for grant in (
                f"GRANT SELECT ON `{name}`.`InstrumentData` TO 'registrar'@'%'",
                f"GRANT SELECT, INSERT, UPDATE, CREATE ON `{name}`.`BufferHostData` TO 'registrar'@'%'",
                f"GRANT CREATE ON `{name}`.`BufferFramePathData` TO 'registrar'@'%'",
            ):
                cursor.execute(grant)
    finally:
        root.close()
    limited = register(leginondb, login_user="registrar", login_password="r-pw")

    first = run_module(limited)
    assert not first.failed, first.result
    assert first.result["tables_created"] == ["BufferHostData", "BufferFramePathData"]
    second = run_module(limited)
    assert not second.failed and second.result["changed"] is False, second.result
    assert second.result["tables_created"] == []


def test_a_database_without_leginon_tables_is_named(leginondb, run_module):
    with leginondb.data.connection.cursor() as cursor:
        cursor.execute("DROP TABLE `InstrumentData`")

    outcome = run_module(register(leginondb))

    assert outcome.failed
    assert "no InstrumentData table" in outcome.result["msg"]


def test_missing_pymysql_fails_with_install_hint(leginondb, run_module, tmp_path):
    # A package named pymysql that cannot be imported shadows the real one for the module.
    shadow = tmp_path / "shadow" / "pymysql"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ImportError('PyMySQL hidden by the test')\n"
    )

    outcome = run_module(register(leginondb), env={"PYTHONPATH": str(shadow.parent)})

    assert outcome.failed
    assert "PyMySQL" in outcome.result["msg"]
    assert "python3-pymysql" in outcome.result["msg"]


def test_role_registers_every_configured_camera(leginondb, tmp_path):
    """The embuffer_registration role end to end: dry run, converge, idempotence."""
    k3 = leginondb.data.instrument("GatanK3", "k3-cam-01")
    falcon = leginondb.data.instrument("Falcon4", "falcon-pc")
    leginondb.data.instrument("Krios", "falcon-pc")
    login = leginondb.login
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {
            # The shared facts of embuffer_common; `path` is the folder the ingest
            # service polls, which registration does not read.
            "embuffer_cameras": [
                {"host": "k3-cam-01", "path": "/mnt/k3-cam-01"},
                {"host": "falcon-pc", "name": "Falcon4", "path": "/mnt/falcon-pc"},
            ],
            "embuffer_buffer_hostname": BUFFER,
            "embuffer_buffer_root": BASE,
            "embuffer_registration_append_full_head": True,
            "embuffer_registration_delegate_to": "localhost",
            "embuffer_registration_install_pymysql": False,
            "embuffer_registration_login_host": login["login_host"],
            "embuffer_registration_login_port": login["login_port"],
            "embuffer_registration_login_user": login["login_user"],
            "embuffer_registration_login_password": login["login_password"],
            "embuffer_registration_login_db": login["login_db"],
        },
        "roles": ["embuffer.buffer.embuffer_registration"],
    }

    def registration_task(document: dict[str, Any]) -> dict[str, Any]:
        for task in document["plays"][0]["tasks"]:
            if task["task"]["name"].endswith(
                "Register this buffer host in leginondb for each camera"
            ):
                return task["hosts"]["localhost"]
        raise AssertionError(f"no registration task ran: {document['_stdout'][-2000:]}")

    dry = run_playbook(tmp_path, play, check=True)
    assert dry["_rc"] == 0, dry["_stdout"][-3000:]
    assert registration_task(dry)["changed"] is True, json.dumps(
        registration_task(dry), indent=1
    )[:4000]
    assert leginondb.buffer_rows() == []

    converge = run_playbook(tmp_path, play)
    assert converge["_rc"] == 0, converge["_stdout"][-3000:]
    assert sorted(
        (project(row)["camera"], project(row)["append"])
        for row in leginondb.buffer_rows()
    ) == [
        (k3, 1),
        (falcon, 1),
    ]
    assert "test-password" not in converge["_stdout"]

    idempotent = run_playbook(tmp_path, play)
    assert idempotent["_rc"] == 0
    assert idempotent["stats"]["localhost"]["changed"] == 0


@pytest.mark.parametrize(
    ("bad_camera", "expected"),
    [
        ({"name": "GatanK3", "path": "/mnt/k3"}, "missing required arguments: host"),
        ({"host": " ", "path": "/mnt/k3"}, "needs a non-empty `host`"),
    ],
)
def test_role_rejects_cameras_without_a_host(
    leginondb, tmp_path: Path, bad_camera, expected
):
    leginondb.data.instrument("GatanK3", "k3-cam-01")
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "vars": {
            "embuffer_cameras": [bad_camera],
            "embuffer_registration_delegate_to": "localhost",
            "embuffer_registration_install_pymysql": False,
            **{
                f"embuffer_registration_{key}": value
                for key, value in leginondb.login.items()
            },
        },
        "roles": ["embuffer.buffer.embuffer_registration"],
    }

    document = run_playbook(tmp_path, play)

    assert document["_rc"] != 0
    failures = [
        task["hosts"]["localhost"].get("msg", "")
        for task in document["plays"][0]["tasks"]
        if task["hosts"]["localhost"].get("failed")
    ]
    assert len(failures) == 1 and expected in failures[0], failures
    assert leginondb.buffer_rows() == []
