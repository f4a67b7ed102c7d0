# Copyright: embuffer contributors
# SPDX-License-Identifier: BSD-3-Clause
"""What the leginon_buffer_host module reads and decides before it writes a row.

The schema probe (is this a leginondb, which cameras to register, which buffer tables and
columns exist) and the plan (insert, update or leave each camera's BufferHostData row) live
here; the module writes the plan and reports it. Nothing here writes a row: the only statements
that change the database are the CREATE TABLE of missing_tables, outside check mode.
"""

import re

from ansible_collections.embuffer.buffer.plugins.module_utils.leginondb import (
    LeginonDBError,
    quote_identifier,
)

TABLE = "BufferHostData"
INSTRUMENTS = "InstrumentData"
# Public field name -> leginondb column (sinedon stores field names verbatim, spaces included).
COLUMNS = {
    "id": "DEF_id",
    "camera_id": "REF|InstrumentData|ccdcamera",
    "buffer_hostname": "buffer hostname",
    "buffer_base_path": "buffer base path",
    "disabled": "disabled",
    "append_full_head": "append full head",
}
APPEND_COLUMN = COLUMNS["append_full_head"]
BOOLEAN_FIELDS = ("disabled", "append_full_head")
WRITE_ACTIONS = ("inserted", "updated")
# Leginon's ORM creates a table when its first row is inserted, so a site that never used a
# buffer server has neither of these. They are created here with the ORM's columns and keys,
# and with the engine and character set of the database's own Leginon tables (sinedon names
# MyISAM unless sinedon.cfg says otherwise, and no character set, so sites differ), so that
# the buffer's first movie can record its buffer frame path (the ingest may only INSERT).
SINEDON_TABLES = {
    "BufferHostData": (
        "CREATE TABLE IF NOT EXISTS `BufferHostData` ("
        " `DEF_id` int(16) NOT NULL AUTO_INCREMENT,"
        " `DEF_timestamp` timestamp NOT NULL DEFAULT current_timestamp(),"
        " `REF|InstrumentData|ccdcamera` INT(20) NULL DEFAULT NULL,"
        " `buffer hostname` TEXT NULL, `buffer base path` TEXT NULL,"
        " `disabled` TINYINT(1) NULL DEFAULT 0, `append full head` TINYINT(1) NULL DEFAULT 0,"
        " PRIMARY KEY (`DEF_id`), KEY `DEF_timestamp` (`DEF_timestamp`),"
        " KEY `REF|InstrumentData|ccdcamera` (`REF|InstrumentData|ccdcamera`))"
    ),
    "BufferFramePathData": (
        "CREATE TABLE IF NOT EXISTS `BufferFramePathData` ("
        " `DEF_id` int(16) NOT NULL AUTO_INCREMENT,"
        " `DEF_timestamp` timestamp NOT NULL DEFAULT current_timestamp(),"
        " `REF|SessionData|session` INT(20) NULL DEFAULT NULL,"
        " `REF|BufferHostData|host` INT(20) NULL DEFAULT NULL,"
        " `buffer frame path` TEXT NULL,"
        " PRIMARY KEY (`DEF_id`), KEY `DEF_timestamp` (`DEF_timestamp`),"
        " KEY `REF|SessionData|session` (`REF|SessionData|session`),"
        " KEY `REF|BufferHostData|host` (`REF|BufferHostData|host`))"
    ),
}
# The Leginon tables whose engine and character set new tables copy, in order of preference:
# SessionData is in every leginondb that has seen a session; InstrumentData is the one table
# the registration login is sure to see (it needs SELECT on it).
MODEL_TABLES = ("SessionData", "InstrumentData")
# Server-given names are put into CREATE TABLE only when they look like names.
_SQL_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def column_sql(field):
    """The quoted leginondb column of a public field name."""
    return quote_identifier(COLUMNS[field])


# --- schema probe ---------------------------------------------------------------------------


def table_exists(cursor, table):
    """Whether the table exists. information_schema.TABLES lists a table on which the login
    has any privilege (CREATE alone, say), where COLUMNS would show none of its columns."""
    cursor.execute(
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        " AND TABLE_NAME = %s",
        (table,),
    )
    return cursor.fetchone() is not None


def table_columns(cursor, table):
    """The column names of a table the login can see (empty when the table is missing)."""
    cursor.execute(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        (table,),
    )
    return {row[0] for row in cursor.fetchall()}


def require_leginondb(cursor):
    """Refuse a database without InstrumentData: it is not a leginondb."""
    if not table_columns(cursor, INSTRUMENTS):
        raise LeginonDBError(
            f"the database has no {INSTRUMENTS} table: is login_db the Leginon database "
            "(leginondb)?"
        )


def _unknown_host_error(cursor, camera_host):
    """The error for a camera host no InstrumentData row has, listing the known host names."""
    cursor.execute(
        f"SELECT DISTINCT `hostname` FROM {quote_identifier(INSTRUMENTS)}"
        " WHERE `hostname` IS NOT NULL AND `hostname` <> '' ORDER BY `hostname`"
    )
    known = [row[0] for row in cursor.fetchall()]
    return LeginonDBError(
        f"camera host {camera_host!r} is unknown: no InstrumentData row has hostname "
        f"{camera_host!r}. Host names in the database: "
        f"{', '.join(known) if known else '(none)'}. Run Leginon once on that camera PC, "
        "or fix camera_host."
    )


def find_cameras(cursor, camera_host, camera_name):
    """The InstrumentData rows to register, or raise LeginonDBError naming what exists."""
    select = (
        f"SELECT `DEF_id`, `name`, `hostname` FROM {quote_identifier(INSTRUMENTS)}"
        " WHERE `hostname` = %s"
    )
    cursor.execute(select + " ORDER BY `DEF_id`", (camera_host,))
    on_host = cursor.fetchall()
    if not on_host:
        raise _unknown_host_error(cursor, camera_host)
    if camera_name is not None:
        # Compared in SQL, like the host name, so both follow the column's collation.
        cursor.execute(select + " AND `name` = %s ORDER BY `DEF_id`", (camera_host, camera_name))
        chosen = cursor.fetchall()
        if not chosen:
            names = sorted({row[1] or "(no name)" for row in on_host})
            raise LeginonDBError(
                f"camera host {camera_host!r} has no instrument named {camera_name!r}; "
                f"its instruments are: {', '.join(names)}"
            )
        on_host = chosen
    return [{"id": row[0], "name": row[1], "host": row[2]} for row in on_host]


def leginon_table_options(cursor):
    """Engine, character set and collation of the database's own Leginon tables (the first
    of MODEL_TABLES the login can see), which tables created here copy; the server's
    defaults (empty dict) when none is visible."""
    cursor.execute(
        "SELECT t.TABLE_NAME, t.ENGINE, t.TABLE_COLLATION, c.CHARACTER_SET_NAME"
        " FROM information_schema.TABLES t LEFT JOIN information_schema.COLLATIONS c"
        " ON c.COLLATION_NAME = t.TABLE_COLLATION"
        " WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_NAME IN (%s, %s)",
        MODEL_TABLES,
    )
    found = {row[0]: row[1:] for row in cursor.fetchall()}
    for table in MODEL_TABLES:
        engine, collation, charset = found.get(table, (None, None, None))
        if all(value and _SQL_NAME.match(value) for value in (engine, collation, charset)):
            return {"like": table, "engine": engine, "charset": charset, "collation": collation}
    return {}


def create_statement(table, options):
    """The CREATE TABLE of a buffer table, with the engine and character set of `options`."""
    statement = SINEDON_TABLES[table]
    if options:
        statement += (
            f" ENGINE={options['engine']} DEFAULT CHARSET={options['charset']}"
            f" COLLATE={options['collation']}"
        )
    return statement


def missing_tables(cursor, check_mode):
    """The buffer tables this leginondb lacks, and the table options they get (created now
    unless in check mode). Called after the cameras were found: a run that fails creates
    nothing."""
    missing = [table for table in SINEDON_TABLES if not table_exists(cursor, table)]
    options = leginon_table_options(cursor) if missing else {}
    if missing and not check_mode:
        for table in missing:
            cursor.execute(create_statement(table, options))
    return missing, options


def append_column_state(cursor, created, params, check_mode, warn):
    """Whether BufferHostData has the append full head column, is to get it, and so whether
    the field is managed; refuses append_full_head=true on a table that cannot have it.

    Returns had_table (the table can be read now), had_append, add_column, manage_append.
    """
    # in check mode a table to be created is planned as the ORM would make it
    had_table = TABLE not in created or not check_mode
    columns = table_columns(cursor, TABLE) if had_table else set(COLUMNS.values())
    had_append = APPEND_COLUMN in columns
    add_column = not had_append and params["add_append_full_head_column"]
    if not had_append and not add_column:
        if params["append_full_head"]:
            raise LeginonDBError(
                f"append_full_head=true was asked, but {TABLE} has no `{APPEND_COLUMN}` column "
                "(the database predates it). Set add_append_full_head_column=true to add it, or "
                "leave append_full_head out."
            )
        warn(
            f"{TABLE} has no `{APPEND_COLUMN}` column (older leginondb): the other fields are "
            "managed, the append full head mode stays off. Set "
            "add_append_full_head_column=true to add the column."
        )
    return {
        "had_table": had_table,
        "had_append": had_append,
        "add_column": add_column,
        "manage_append": had_append or add_column,
    }


def probe_schema(cursor, params, check_mode, warn):
    """The schema probe: check the database is a leginondb, find the cameras, create the
    missing buffer tables (not in check mode) and settle the append full head column.

    Returns a dict: cameras, created (tables), table_options (what they copy), had_table,
    had_append, add_column, manage_append.
    """
    require_leginondb(cursor)
    cameras = find_cameras(cursor, params["camera_host"], params["camera_name"])
    created, table_options = missing_tables(cursor, check_mode)
    schema = append_column_state(cursor, created, params, check_mode, warn)
    schema.update(cameras=cameras, created=created, table_options=table_options)
    return schema


# --- rows and plan ----------------------------------------------------------------------------


def public_row(values, with_append):
    """A BufferHostData row as the module reports it (booleans, no column-name spaces)."""
    row = {field: values.get(field) for field in COLUMNS}
    for field in BOOLEAN_FIELDS:
        if row[field] is not None:
            row[field] = bool(row[field])
    if not with_append:
        row["append_full_head"] = None
    return row


def select_row(cursor, with_append, where, args):
    """The first BufferHostData row matching `where` (an SQL condition with placeholders)."""
    fields = [field for field in COLUMNS if with_append or field != "append_full_head"]
    columns = ", ".join(column_sql(field) for field in fields)
    cursor.execute(f"SELECT {columns} FROM {quote_identifier(TABLE)} WHERE {where}", args)
    found = cursor.fetchone()
    if not found:
        return None
    return public_row({field: found[index] for index, field in enumerate(fields)}, with_append)


def newest_row(cursor, camera_id, buffer_hostname, with_append):
    """The row Leginon and Appion use for this camera and buffer host: the highest DEF_id."""
    where = (
        f"{column_sql('camera_id')} = %s AND {column_sql('buffer_hostname')} = %s"
        " ORDER BY `DEF_id` DESC LIMIT 1"
    )
    return select_row(cursor, with_append, where, (camera_id, buffer_hostname))


def wanted_fields(current, params, manage_append):
    """The managed fields this run sets. State present leaves `disabled` as it is on an
    existing row, so that only the outage playbooks (or an operator on purpose) change
    whether the buffer is in use; a first registration enables."""
    wanted = {}
    if params["state"] != "present":
        wanted["disabled"] = params["state"] == "disabled"
    elif current is None:
        wanted["disabled"] = False
    if params["buffer_base_path"] is not None:
        wanted["buffer_base_path"] = params["buffer_base_path"]
    if manage_append and params["append_full_head"] is not None:
        wanted["append_full_head"] = params["append_full_head"]
    return wanted


def plan_camera(camera, current, params, manage_append):
    """Decide insert/update/nothing for one camera; returns (action, fields, after-row)."""
    wanted = wanted_fields(current, params, manage_append)
    if current is None:
        if "buffer_base_path" not in wanted:
            return "absent", [], None
        after = public_row(
            {"camera_id": camera["id"], "buffer_hostname": params["buffer_hostname"]},
            manage_append,
        )
        after.update(wanted)
        if manage_append and after["append_full_head"] is None:
            after["append_full_head"] = False
        fields = [
            field
            for field in COLUMNS
            if field != "id" and (manage_append or field != "append_full_head")
        ]
        return "inserted", fields, after
    fields = [field for field in sorted(wanted) if current[field] != wanted[field]]
    after = dict(current)
    after.update(wanted)
    return ("updated" if fields else "unchanged"), fields, after


def plan_cameras(cursor, schema, params, warn):
    """The plan: for each camera its current row and what to do with it (warns about a
    camera that has nothing to disable). Each entry: camera, before, action, fields, after."""
    plans = []
    for camera in schema["cameras"]:
        before = (
            newest_row(cursor, camera["id"], params["buffer_hostname"], schema["had_append"])
            if schema["had_table"]
            else None
        )
        current = before
        if before is not None and schema["add_column"]:
            # ALTER TABLE ... DEFAULT 0 gives existing rows 0; plan against that.
            current = dict(before, append_full_head=False)
        action, fields, after = plan_camera(camera, current, params, schema["manage_append"])
        plans.append(
            {"camera": camera, "before": before, "action": action, "fields": fields, "after": after}
        )
        if action == "absent":
            warn(
                f"camera {camera['name']} (InstrumentData {camera['id']}) has no {TABLE} row "
                f"for buffer host {params['buffer_hostname']}: nothing to disable"
            )
    return plans


def plan_changes(schema, plans):
    """Whether the run changes the database: a table, the column, or a row."""
    return (
        bool(schema["created"])
        or schema["add_column"]
        or any(plan["action"] in WRITE_ACTIONS for plan in plans)
    )
