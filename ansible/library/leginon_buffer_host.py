#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: embuffer contributors
# SPDX-License-Identifier: BSD-3-Clause

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: leginon_buffer_host
short_description: Register a buffer (ingestion) server for Leginon cameras in leginondb
description:
  - Creates or updates the C(BufferHostData) rows that tell Leginon's transfer tools and Appion
    where a camera's movie frames are buffered, the job C(buffer_host_setup.py) does by hand.
  - For every C(InstrumentData) row whose C(hostname) is O(camera_host) (or only the one named
    O(camera_name)), the newest C(BufferHostData) row (highest C(DEF_id)) for that camera and
    O(buffer_hostname) is the one managed. When there is none, a row is inserted; otherwise only
    the fields that differ are updated in place.
  - Rows are never deleted or renumbered, because C(BufferFramePathData) and Appion refer to
    them by C(DEF_id). Older rows for the same camera and buffer host are left as they are.
  - Works on databases created before the C(append full head) column existed; see
    O(append_full_head) and O(add_append_full_head_column).
  - Leginon's ORM creates a table only when its first row is inserted, so a site that never
    used a buffer server has no C(BufferHostData) and no C(BufferFramePathData). Both are then
    created with the ORM's layout (the login needs CREATE on them); a database without
    C(InstrumentData) is refused as not being a leginondb.
author:
  - embuffer contributors
requirements:
  - PyMySQL on the host that runs the module (C(python3-pymysql) on Debian/Ubuntu).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Computes and reports the change (and the diff) without writing anything.
  diff_mode:
    support: full
    details:
      - Shows the managed rows, and whether the table has the C(append full head) column,
        before and after.
  platform:
    platforms: posix
options:
  camera_host:
    description:
      - Host name of the camera PC, as Leginon stored it in C(InstrumentData.hostname).
      - Every C(InstrumentData) row with this host name is registered unless O(camera_name) is set.
      - The module fails, listing the host names the database knows, when no row has it.
    type: str
    required: true
  camera_name:
    description:
      - Register only the C(InstrumentData) rows with this C(name) on O(camera_host), for a camera
        PC that drives several cameras or also hosts the microscope's own instrument row.
    type: str
  buffer_hostname:
    description:
      - Host name of the buffer server as the transfer tools look it up (C(buffer hostname)).
    type: str
    required: true
  buffer_base_path:
    description:
      - Absolute folder on the buffer server under which session frame folders are created
        (C(buffer base path)), stored as given (no C(~) or variable expansion, as the module may
        run on another host than the buffer server).
      - Required when O(state=enabled). With O(state=disabled) it may be left out to keep the
        stored path; a camera without any row then has nothing to disable and is only reported.
    type: str
  append_full_head:
    description:
      - Value of C(append full head), which makes the buffer frame path keep the part of the
        session image path before its last C(leginon) folder.
      - Left out, an existing row keeps its value and a new row gets C(false).
      - On a database without the column, V(true) fails unless O(add_append_full_head_column=true).
    type: bool
  add_append_full_head_column:
    description:
      - Add the C(append full head) column to C(BufferHostData) as a nullable C(TINYINT) of
        width 1, default 0, when the database predates it. An C(ALTER TABLE) on a shared
        database is a decision for its administrator, hence off by default.
      - When V(false) and the column is missing, the module warns and manages the other fields.
    type: bool
    default: false
  state:
    description:
      - V(enabled) sets C(disabled=0) so that new sessions' frames go to the buffer.
      - V(disabled) sets C(disabled=1), as the outage procedure does, so that new frames go to
        the session frame path instead.
    type: str
    choices: [enabled, disabled]
    default: enabled
  login_host:
    description:
      - Host running the database server.
      - When not set, the C(host) of O(config_file) is used, else C(localhost).
      - Setting it makes the module use TCP even when O(config_file) names a C(socket).
    type: str
  login_port:
    description:
      - TCP port of the database server.
      - When not set, the C(port) of O(config_file) is used, else C(3306).
    type: int
  login_user:
    description:
      - Database user, which needs SELECT on C(InstrumentData) and SELECT, INSERT and UPDATE on
        C(BufferHostData) (ALTER too for O(add_append_full_head_column)).
      - When not set, the C(user) of O(config_file) is used.
    type: str
  login_password:
    description:
      - Password of O(login_user). When not set, the C(password) of O(config_file) is used.
    type: str
  login_unix_socket:
    description:
      - Unix socket of a local database server; takes precedence over O(login_host).
      - When not set, the C(socket) of O(config_file) is used unless O(login_host) is set.
    type: str
  login_db:
    description:
      - Name of the Leginon database.
      - When not set, the C(database) of O(config_file) is used, else C(leginondb).
    type: str
  config_file:
    description:
      - A my.cnf-style file whose C([client]) section supplies C(host), C(port), C(socket),
        C(user), C(password) and C(database) for options not given explicitly.
      - C(!include) and C(!includedir) lines are followed. The default file may be absent; a
        file named explicitly must exist.
    type: path
    default: ~/.my.cnf
  connect_timeout:
    description:
      - Seconds to wait for the database connection.
    type: int
    default: 30
notes:
  - Camera and buffer host names are compared with the column's collation, as Leginon's own
    queries do (case-insensitive on the usual latin1/utf8 collations).
  - All row changes of one run are written in one transaction. The C(ALTER TABLE) of
    O(add_append_full_head_column) commits on its own, before them.
"""

EXAMPLES = r"""
- name: Register buffer01 for every camera on the K3 camera PC
  leginon_buffer_host:
    camera_host: k3-cam-01
    buffer_hostname: buffer01
    buffer_base_path: /bufferdata/frames
    login_host: leginondb.example.org
    login_user: embuffer_admin
    login_password: "{{ vault_leginondb_admin_password }}"

- name: Register only the Falcon on a camera PC shared with the microscope
  leginon_buffer_host:
    camera_host: krios-pc
    camera_name: Falcon4EC
    buffer_hostname: buffer02
    buffer_base_path: /bufferdata
    append_full_head: true
    add_append_full_head_column: true
    config_file: /root/.leginondb.cnf

- name: Send new frames to the session frame path during a primary storage outage
  leginon_buffer_host:
    camera_host: k3-cam-01
    buffer_hostname: buffer01
    state: disabled
    config_file: /root/.leginondb.cnf
"""

RETURN = r"""
changed:
  description:
    - Whether a row was (or, in check mode, would be) inserted or updated, or the column added.
  returned: always
  type: bool
  sample: true
append_full_head_supported:
  description:
    - Whether C(BufferHostData) has the C(append full head) column after this run (in check
      mode, whether it would have it).
  returned: success
  type: bool
  sample: true
append_full_head_column_added:
  description: Whether the C(append full head) column was (or would be) added by this run.
  returned: success
  type: bool
  sample: false
tables_created:
  description: The buffer tables this run created (would create, in check mode).
  returned: success
  type: list
  elements: str
  sample: [BufferFramePathData]
rows:
  description:
    - One entry per matching camera, the newest C(BufferHostData) row for it and O(buffer_hostname)
      as it is after this run (as it would be, in check mode).
  returned: success
  type: list
  elements: dict
  contains:
    action:
      description:
        - V(inserted), V(updated), V(unchanged), or V(absent) (O(state=disabled), no row and no
          O(buffer_base_path), so nothing to disable).
      type: str
      sample: updated
    changed_fields:
      description: The fields written by an update (all of them for an insert).
      type: list
      elements: str
      sample: [buffer_base_path, disabled]
    id:
      description: C(DEF_id) of the row; null for a row check mode would insert, or an absent one.
      type: int
      sample: 17
    camera_id:
      description:
        - C(DEF_id) of the camera's C(InstrumentData) row (C(REF|InstrumentData|ccdcamera)).
      type: int
      sample: 3
    camera_name:
      description: C(InstrumentData.name) of the camera.
      type: str
      sample: GatanK3
    camera_host:
      description: C(InstrumentData.hostname) of the camera.
      type: str
      sample: k3-cam-01
    buffer_hostname:
      description: C(buffer hostname) of the row.
      type: str
      sample: buffer01
    buffer_base_path:
      description: C(buffer base path) of the row.
      type: str
      sample: /bufferdata/frames
    disabled:
      description: C(disabled) of the row (null when the database holds NULL).
      type: bool
      sample: false
    append_full_head:
      description: C(append full head) of the row; null when the column is missing or NULL.
      type: bool
      sample: false
diff:
  description: The managed rows before and after, keyed by camera, with the column's presence.
  returned: when diff mode is on
  type: dict
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.leginondb import (
    LeginonDBError,
    connect,
    connection_settings,
    describe_target,
    leginondb_argument_spec,
    load_pymysql,
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
# Leginon's ORM creates a table when its first row is inserted, so a site that never used a
# buffer server has neither of these. They are created here exactly as the ORM would, so that
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


def column_sql(field):
    return quote_identifier(COLUMNS[field])


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
    cursor.execute(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        (table,),
    )
    return set(row[0] for row in cursor.fetchall())


def find_cameras(cursor, camera_host, camera_name):
    """The InstrumentData rows to register, or raise LeginonDBError naming what exists."""
    select = "SELECT `DEF_id`, `name`, `hostname` FROM {0} WHERE `hostname` = %s".format(
        quote_identifier(INSTRUMENTS)
    )
    cursor.execute(select + " ORDER BY `DEF_id`", (camera_host,))
    on_host = cursor.fetchall()
    if not on_host:
        cursor.execute(
            "SELECT DISTINCT `hostname` FROM {0} WHERE `hostname` IS NOT NULL AND `hostname` <> ''"
            " ORDER BY `hostname`".format(quote_identifier(INSTRUMENTS))
        )
        known = [row[0] for row in cursor.fetchall()]
        raise LeginonDBError(
            "camera host %r is unknown: no InstrumentData row has hostname %r. Host names in the "
            "database: %s. Run Leginon once on that camera PC, or fix camera_host."
            % (camera_host, camera_host, ", ".join(known) if known else "(none)")
        )
    if camera_name is not None:
        # Compared in SQL, like the host name, so both follow the column's collation.
        cursor.execute(select + " AND `name` = %s ORDER BY `DEF_id`", (camera_host, camera_name))
        chosen = cursor.fetchall()
        if not chosen:
            names = sorted(set(row[1] or "(no name)" for row in on_host))
            raise LeginonDBError(
                "camera host %r has no instrument named %r; its instruments are: %s"
                % (camera_host, camera_name, ", ".join(names))
            )
        on_host = chosen
    return [dict(id=row[0], name=row[1], host=row[2]) for row in on_host]


def public_row(values, with_append):
    """A BufferHostData row as the module reports it (booleans, no column-name spaces)."""
    row = dict((field, values.get(field)) for field in COLUMNS)
    for field in BOOLEAN_FIELDS:
        if row[field] is not None:
            row[field] = bool(row[field])
    if not with_append:
        row["append_full_head"] = None
    return row


def select_row(cursor, with_append, where, args):
    """The first BufferHostData row matching `where` (an SQL condition with placeholders)."""
    fields = [field for field in COLUMNS if with_append or field != "append_full_head"]
    cursor.execute(
        "SELECT {0} FROM {1} WHERE {2}".format(
            ", ".join(column_sql(field) for field in fields), quote_identifier(TABLE), where
        ),
        args,
    )
    found = cursor.fetchone()
    return public_row(dict(zip(fields, found)), with_append) if found else None


def newest_row(cursor, camera_id, buffer_hostname, with_append):
    """The row Leginon and Appion use for this camera and buffer host: the highest DEF_id."""
    where = "{0} = %s AND {1} = %s ORDER BY `DEF_id` DESC LIMIT 1".format(
        column_sql("camera_id"), column_sql("buffer_hostname")
    )
    return select_row(cursor, with_append, where, (camera_id, buffer_hostname))


def plan_camera(camera, current, params, manage_append):
    """Decide insert/update/nothing for one camera; returns (action, fields, after-row)."""
    wanted = {"disabled": params["state"] == "disabled"}
    if params["buffer_base_path"] is not None:
        wanted["buffer_base_path"] = params["buffer_base_path"]
    if manage_append and params["append_full_head"] is not None:
        wanted["append_full_head"] = params["append_full_head"]
    if current is None:
        if "buffer_base_path" not in wanted:
            return "absent", [], None
        after = public_row(
            dict(camera_id=camera["id"], buffer_hostname=params["buffer_hostname"]), manage_append
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


def write_row(cursor, action, fields, after):
    values = [int(after[field]) if field in BOOLEAN_FIELDS else after[field] for field in fields]
    if action == "inserted":
        cursor.execute(
            "INSERT INTO {0} ({1}) VALUES ({2})".format(
                quote_identifier(TABLE),
                ", ".join(column_sql(field) for field in fields),
                ", ".join(["%s"] * len(fields)),
            ),
            values,
        )
        return cursor.lastrowid
    cursor.execute(
        "UPDATE {0} SET {1} WHERE `DEF_id` = %s".format(
            quote_identifier(TABLE), ", ".join("%s = %%s" % column_sql(field) for field in fields)
        ),
        values + [after["id"]],
    )
    return after["id"]


def diff_key(camera):
    return "%s (InstrumentData %s)" % (camera["name"], camera["id"])


def missing_tables(module, cursor):
    """The buffer tables this leginondb lacks; created now unless in check mode. Called
    after the cameras were found: a run that fails creates nothing."""
    missing = [table for table in SINEDON_TABLES if not table_exists(cursor, table)]
    if missing and not module.check_mode:
        for table in missing:
            cursor.execute(SINEDON_TABLES[table])
    return missing


def run(module, connection, settings):
    params = module.params
    cursor = connection.cursor()
    if not table_columns(cursor, INSTRUMENTS):
        raise LeginonDBError(
            "the database has no %s table: is login_db the Leginon database (leginondb)?"
            % INSTRUMENTS
        )
    cameras = find_cameras(cursor, params["camera_host"], params["camera_name"])
    created = missing_tables(module, cursor)
    # in check mode a table to be created is planned as the ORM would make it
    had_table = TABLE not in created or not module.check_mode
    columns = table_columns(cursor, TABLE) if had_table else set(COLUMNS.values())
    had_append = APPEND_COLUMN in columns

    add_column = not had_append and params["add_append_full_head_column"]
    if not had_append and not add_column:
        if params["append_full_head"]:
            raise LeginonDBError(
                "append_full_head=true was asked, but %s has no `%s` column (the database predates "
                "it). Set add_append_full_head_column=true to add it, or leave append_full_head "
                "out." % (TABLE, APPEND_COLUMN)
            )
        module.warn(
            "%s has no `%s` column (older leginondb): the other fields are managed, the append "
            "full head mode stays off. Set add_append_full_head_column=true to add the column."
            % (TABLE, APPEND_COLUMN)
        )
    manage_append = had_append or add_column

    plans = []
    for camera in cameras:
        before = (
            newest_row(cursor, camera["id"], params["buffer_hostname"], had_append)
            if had_table
            else None
        )
        current = before
        if before is not None and add_column:
            # ALTER TABLE ... DEFAULT 0 gives existing rows 0; plan against that.
            current = dict(before, append_full_head=False)
        action, fields, after = plan_camera(camera, current, params, manage_append)
        plans.append(dict(camera=camera, before=before, action=action, fields=fields, after=after))
        if action == "absent":
            module.warn(
                "camera %s (InstrumentData %s) has no %s row for buffer host %s: nothing to disable"
                % (camera["name"], camera["id"], TABLE, params["buffer_hostname"])
            )

    changed = (
        bool(created)
        or add_column
        or any(plan["action"] in ("inserted", "updated") for plan in plans)
    )
    if changed and not module.check_mode:
        if add_column:
            cursor.execute(
                "ALTER TABLE {0} ADD COLUMN {1} TINYINT(1) NULL DEFAULT 0".format(
                    quote_identifier(TABLE), quote_identifier(APPEND_COLUMN)
                )
            )
        try:
            connection.begin()
            for plan in plans:
                if plan["action"] in ("inserted", "updated"):
                    plan["id"] = write_row(cursor, plan["action"], plan["fields"], plan["after"])
            connection.commit()
        except Exception:
            connection.rollback()
            raise
        for plan in plans:
            if plan["action"] in ("inserted", "updated"):
                # Report what the database holds now, DEF_id of new rows included.
                plan["after"] = select_row(cursor, manage_append, "`DEF_id` = %s", (plan["id"],))

    rows = []
    for plan in plans:
        camera = plan["camera"]
        row = dict(plan["after"] or public_row({}, manage_append))
        row.update(
            action=plan["action"],
            changed_fields=plan["fields"],
            camera_id=camera["id"],
            camera_name=camera["name"],
            camera_host=camera["host"],
            buffer_hostname=row["buffer_hostname"] or params["buffer_hostname"],
        )
        rows.append(row)

    result = dict(
        changed=changed,
        rows=rows,
        append_full_head_supported=manage_append,
        append_full_head_column_added=add_column,
        tables_created=created,
    )
    if module._diff:
        result["diff"] = dict(
            before_header="%s, %s" % (TABLE, describe_target(settings)),
            after_header="%s, %s" % (TABLE, describe_target(settings)),
            before=dict(
                tables_missing=created,
                append_full_head_column=had_append,
                rows=dict(
                    (diff_key(plan["camera"]), plan["before"]) for plan in plans if plan["before"]
                ),
            ),
            after=dict(
                tables_missing=[],
                append_full_head_column=manage_append,
                rows=dict(
                    (diff_key(plan["camera"]), plan["after"]) for plan in plans if plan["after"]
                ),
            ),
        )
    return result


def main():
    argument_spec = leginondb_argument_spec()
    argument_spec.update(
        camera_host=dict(type="str", required=True),
        camera_name=dict(type="str"),
        buffer_hostname=dict(type="str", required=True),
        buffer_base_path=dict(type="str"),
        append_full_head=dict(type="bool"),
        add_append_full_head_column=dict(type="bool", default=False),
        state=dict(type="str", choices=["enabled", "disabled"], default="enabled"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[("state", "enabled", ("buffer_base_path",))],
        supports_check_mode=True,
    )
    params = module.params
    for option in ("camera_host", "buffer_hostname"):
        if not params[option].strip():
            module.fail_json(msg="%s must not be empty" % option)
    if params["buffer_base_path"] is not None and not params["buffer_base_path"].startswith("/"):
        module.fail_json(
            msg="buffer_base_path must be an absolute path on the buffer host, got %r"
            % params["buffer_base_path"]
        )

    try:
        pymysql = load_pymysql()
    except ImportError:
        module.fail_json(
            msg=missing_required_lib(
                "PyMySQL",
                reason="to reach leginondb (install python3-pymysql on the host running this task)",
            ),
            exception=traceback.format_exc(),
        )

    try:
        settings = connection_settings(params)
        connection = connect(pymysql, settings)
    except LeginonDBError as exc:
        module.fail_json(msg=str(exc))
    try:
        result = run(module, connection, settings)
    except LeginonDBError as exc:
        module.fail_json(msg=str(exc))
    except pymysql.err.MySQLError as exc:
        module.fail_json(
            msg="database error on %s (%s): %s" % (TABLE, describe_target(settings), exc),
            exception=traceback.format_exc(),
        )
    finally:
        connection.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
