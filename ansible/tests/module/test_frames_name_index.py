"""leginon_frames_name_index against a real MariaDB: the index on CameraEMData `frames name`
is made only when asked, shown first by --check, made once, and a site's own index counts."""

from __future__ import annotations

from typing import Any

from buffer_host_harness import Database

STATEMENT = "ALTER TABLE `CameraEMData` ADD INDEX `embuffer_frames_name` (`frames name`(40))"
MODULE = "leginon_frames_name_index"


def indexes(db: Database) -> dict[str, tuple[str, int | None]]:
    """Index name -> (first column, prefix length) of CameraEMData."""
    rows = db.data.rows(
        "SELECT INDEX_NAME AS name, COLUMN_NAME AS col, SUB_PART AS part"
        " FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s"
        " AND TABLE_NAME = 'CameraEMData' AND SEQ_IN_INDEX = 1",
        (db.name,),
    )
    return {row["name"]: (row["col"], row["part"]) for row in rows}


def args(db: Database, **extra: Any) -> dict[str, Any]:
    return {**db.login, **extra}


def test_check_shows_the_statement_then_the_index_is_made_once(site_leginondb, run_module):
    assert "embuffer_frames_name" not in indexes(site_leginondb)
    engine = site_leginondb.data.rows(
        "SELECT ENGINE AS e FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
        " AND TABLE_NAME = 'CameraEMData'",
        (site_leginondb.name,),
    )[0]["e"]

    dry = run_module(args(site_leginondb), check=True, diff=True, module=MODULE)
    assert dry.result["changed"] and dry.result["statement"] == STATEMENT
    assert dry.result["engine"] == engine
    assert dry.result["diff"]["before"] == {"indexes": []}
    assert dry.result["diff"]["after"] == {"indexes": ["embuffer_frames_name"]}
    assert "embuffer_frames_name" not in indexes(site_leginondb)

    made = run_module(args(site_leginondb), module=MODULE)
    assert made.result["changed"] and made.result["indexes"] == ["embuffer_frames_name"]
    assert indexes(site_leginondb)["embuffer_frames_name"] == ("frames name", 40)

    again = run_module(args(site_leginondb), check=True, module=MODULE)
    assert not again.result["changed"] and again.result["statement"] is None


def test_a_sites_own_index_counts_and_is_never_dropped(leginondb, run_module):
    with leginondb.data.connection.cursor() as cursor:
        cursor.execute("ALTER TABLE `CameraEMData` ADD INDEX `fname` (`frames name`(64))")

    present = run_module(args(leginondb), module=MODULE)
    assert not present.result["changed"] and present.result["indexes"] == ["fname"]
    absent = run_module(args(leginondb, state="absent"), module=MODULE)
    assert not absent.result["changed"]
    assert set(indexes(leginondb)) >= {"fname"} and "embuffer_frames_name" not in indexes(leginondb)


def test_absent_drops_the_index_embuffer_made(leginondb, run_module):
    assert run_module(args(leginondb), module=MODULE).result["changed"]
    dropped = run_module(args(leginondb, state="absent"), module=MODULE)
    assert dropped.result["changed"] and dropped.result["indexes"] == []
    assert "embuffer_frames_name" not in indexes(leginondb)


def test_a_login_with_alter_and_index_on_the_table_is_enough(leginondb, run_module):
    root = leginondb.server.root()
    try:
        with root.cursor() as cursor:
            cursor.execute("CREATE USER IF NOT EXISTS 'indexer'@'%' IDENTIFIED BY 'i-pw'")
            cursor.execute(
                f"GRANT ALTER, INDEX ON `{leginondb.name}`.`CameraEMData` TO 'indexer'@'%'"
            )
    finally:
        root.close()
    limited = args(leginondb, login_user="indexer", login_password="i-pw")

    made = run_module(limited, module=MODULE)

    assert not made.failed, made.result
    assert made.result["changed"] and "embuffer_frames_name" in indexes(leginondb)
    assert not run_module(limited, module=MODULE).result["changed"]
