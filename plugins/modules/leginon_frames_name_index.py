#!/usr/bin/python
# Copyright: embuffer contributors
# SPDX-License-Identifier: BSD-3-Clause
# Ansible's module layout puts the imports after DOCUMENTATION, EXAMPLES and RETURN.
# ruff: noqa: E402

DOCUMENTATION = r"""
---
module: leginon_frames_name_index
short_description: Index CameraEMData's frames name in leginondb for the buffer's lookups
description:
  - Leginon's ORM indexes only C(DEF_timestamp) and the C(REF|) columns, so C(CameraEMData)
    has no index on C(frames name), the camera-side file name by which a buffer server finds
    the image a movie belongs to. On a leginondb of millions of images an index makes that
    lookup take about a millisecond; embuffer works without it.
  - With O(state=present), runs
    C(ALTER TABLE `CameraEMData` ADD INDEX `embuffer_frames_name` (`frames name`(40))) unless
    an index whose first column is C(frames name) exists already (of any name, as a site may
    have made its own).
  - With O(state=absent), drops the index C(embuffer_frames_name) if it exists; an index of
    another name is never dropped.
  - B(Cost), building the index reads the whole table (seconds per million rows). On MyISAM
    it is a table copy during which Leginon cannot write to C(CameraEMData), so run it
    between sessions; on InnoDB the build is online.
author:
  - embuffer contributors (@embuffer)
requirements:
  - PyMySQL on the host that runs the module (C(python3-pymysql) on Debian/Ubuntu).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports the statement it would run, and the diff, without running it.
  diff_mode:
    support: full
    details: Shows the indexes whose first column is C(frames name), before and after.
  platform:
    platforms: posix
options:
  state:
    description:
      - V(present) makes sure an index on C(frames name) exists; V(absent) drops the one this
        module made.
    type: str
    choices: [present, absent]
    default: present
  login_host:
    description:
      - Host running the database server.
      - When not set, the C(host) of O(config_file) is used, else C(localhost).
    type: str
  login_port:
    description:
      - TCP port of the database server.
      - When not set, the C(port) of O(config_file) is used, else C(3306).
    type: int
  login_user:
    description:
      - Database user, which needs ALTER and INDEX on C(CameraEMData).
      - When not set, the C(user) of O(config_file) is used.
    type: str
  login_password:
    description:
      - Password of O(login_user). When not set, the C(password) of O(config_file) is used.
    type: str
  login_unix_socket:
    description:
      - Unix socket of a local database server; takes precedence over O(login_host).
    type: str
  login_db:
    description:
      - Name of the Leginon database.
      - When not set, the C(database) of O(config_file) is used, else C(leginondb).
    type: str
  config_file:
    description:
      - A my.cnf-style file whose C([client]) section supplies the login options not given.
    type: path
    default: ~/.my.cnf
  connect_timeout:
    description:
      - Seconds to wait for the database connection.
    type: int
    default: 30
notes:
  - Several buffer servers may run this at once; the ones that find the index made by
    another meanwhile report no change.
seealso:
  - module: embuffer.buffer.leginon_buffer_host
"""

EXAMPLES = r"""
- name: Index frames name, between sessions (MyISAM blocks Leginon's writes while it builds)
  leginon_frames_name_index:
    login_host: leginondb.example.org
    login_user: embuffer_admin
    login_password: "{{ vault_leginondb_admin_password }}"

- name: Drop the index embuffer made
  leginon_frames_name_index:
    state: absent
    config_file: /root/.leginondb.cnf
"""

RETURN = r"""
changed:
  description: Whether the index was (in check mode, would be) created or dropped.
  returned: always
  type: bool
  sample: true
statement:
  description: The statement run (in check mode, to run); null when nothing is to do.
  returned: success
  type: str
  sample: ALTER TABLE `CameraEMData` ADD INDEX `embuffer_frames_name` (`frames name`(40))
indexes:
  description: Names of the indexes whose first column is C(frames name), after this run.
  returned: success
  type: list
  elements: str
  sample: [embuffer_frames_name]
engine:
  description: Storage engine of C(CameraEMData) (MyISAM copies the table to build an index).
  returned: success
  type: str
  sample: MyISAM
table_rows:
  description: The server's estimate of the rows in C(CameraEMData).
  returned: success
  type: int
  sample: 4000000
seconds:
  description: How long the statement took; 0 when none ran.
  returned: success
  type: float
  sample: 23.4
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.embuffer.buffer.plugins.module_utils.leginondb import (
    LeginonDBError,
    leginondb_argument_spec,
    run_against_leginondb,
)

TABLE = "CameraEMData"
COLUMN = "frames name"
INDEX = "embuffer_frames_name"
# The statement `embuffer config check` prints; the same text here.
CREATE = f"ALTER TABLE `{TABLE}` ADD INDEX `{INDEX}` (`{COLUMN}`(40))"
DROP = f"ALTER TABLE `{TABLE}` DROP INDEX `{INDEX}`"
ER_DUP_KEYNAME = 1061
ER_CANT_DROP_FIELD_OR_KEY = 1091


def frames_name_indexes(cursor):
    """Names of the indexes of CameraEMData whose first column is `frames name`."""
    cursor.execute(
        "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND SEQ_IN_INDEX = 1"
        " AND COLUMN_NAME = %s ORDER BY INDEX_NAME",
        (TABLE, COLUMN),
    )
    return [row[0] for row in cursor.fetchall()]


def table_facts(cursor):
    """(engine, estimated rows) of CameraEMData, or raise when the table is missing."""
    cursor.execute(
        "SELECT ENGINE, TABLE_ROWS FROM information_schema.TABLES"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        (TABLE,),
    )
    found = cursor.fetchone()
    if found is None:
        raise LeginonDBError(
            f"the database has no {TABLE} table the login can see: is login_db the Leginon "
            f"database, and may the login ALTER {TABLE}?"
        )
    return found[0], int(found[1] or 0)


def planned_statement(state, indexes):
    """The statement this run needs, or None."""
    if state == "present":
        return None if indexes else CREATE
    return DROP if INDEX in indexes else None


def run_statement(pymysql, cursor, statement):
    """Run it; another buffer server that made (or dropped) the index meanwhile is no error."""
    try:
        cursor.execute(statement)
    except pymysql.err.MySQLError as exc:
        code = exc.args[0] if exc.args else None
        if code not in (ER_DUP_KEYNAME, ER_CANT_DROP_FIELD_OR_KEY):
            raise
        return False
    return True


def run(module, pymysql, connection):
    cursor = connection.cursor()
    engine, table_rows = table_facts(cursor)
    before = frames_name_indexes(cursor)
    statement = planned_statement(module.params["state"], before)
    changed, seconds, after = statement is not None, 0.0, list(before)
    if statement and module.check_mode:
        after = [INDEX] if statement == CREATE else [name for name in before if name != INDEX]
    elif statement:
        started = time.monotonic()
        changed = run_statement(pymysql, cursor, statement)
        seconds = round(time.monotonic() - started, 3)
        after = frames_name_indexes(cursor)
    result = {
        "changed": changed,
        "statement": statement,
        "indexes": after,
        "engine": engine,
        "table_rows": table_rows,
        "seconds": seconds,
    }
    if module._diff:
        header = f"{TABLE} indexes on `{COLUMN}`"
        result["diff"] = {
            "before_header": header,
            "after_header": header,
            "before": {"indexes": before},
            "after": {"indexes": after},
        }
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            leginondb_argument_spec(),
            state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        ),
        supports_check_mode=True,
    )
    run_against_leginondb(
        module, TABLE, lambda pymysql, connection, _settings: run(module, pymysql, connection)
    )


if __name__ == "__main__":
    main()
