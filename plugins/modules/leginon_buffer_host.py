#!/usr/bin/python
# Copyright: embuffer contributors
# SPDX-License-Identifier: BSD-3-Clause
# Ansible's module layout puts the imports after DOCUMENTATION, EXAMPLES and RETURN.
# ruff: noqa: E402

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
    created with the ORM's columns and keys, and with the engine and character set of the
    database's own C(SessionData) table (else C(InstrumentData)), as Leginon there would make
    them (MyISAM or InnoDB, latin1 or utf8); the login needs CREATE on them. A database
    without C(InstrumentData) is refused as not being a leginondb.
  - Leginon's transfer uses a buffer only while the camera's newest row, of any buffer host,
    is enabled; Appion reads the camera's newest B(enabled) row. With O(state=disabled), any
    other enabled row of a camera this buffer serves (its newest row is this buffer's) would
    become the row Appion reads, and Appion would look for the frames under that row's path.
    O(other_enabled_rows) says whether to refuse (naming the rows) or to disable them too;
    O(reenable_rows) puts exactly those rows back when the outage ends.
author:
  - embuffer contributors (@embuffer)
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
      - Required when O(state=present) or O(state=enabled). With O(state=disabled) it may be
        left out to keep the stored path; a camera without any row then has nothing to disable
        and is only reported.
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
      - V(present) registers the buffer and leaves C(disabled) of an existing row as it is, so
        that a routine run never ends or starts an outage; a row it inserts is enabled. This
        is what the embuffer_registration role uses.
      - V(enabled) sets C(disabled=0) so that new sessions' frames go to the buffer.
      - V(disabled) sets C(disabled=1), as the outage procedure does, so that new frames go to
        the session frame path instead.
      - C(buffer_host_setup.py) differs here, as it enables the row when re-run with a changed
        base path and toggles it with C(--change_status).
    type: str
    choices: [present, enabled, disabled]
    default: present
  other_enabled_rows:
    description:
      - With O(state=disabled), what to do about the other enabled C(BufferHostData) rows of a
        camera whose newest row is this buffer's (rows of another, maybe retired, buffer host,
        or older rows of this one). Appion would read the newest of them once this buffer's
        row is disabled, and look there for frames that are not there.
      - V(fail) changes nothing and names those rows and the choices.
      - V(disable) disables them in the same transaction and returns them in RV(rows[].other_rows),
        so that the caller can record them and give them to O(reenable_rows) later.
      - A camera whose newest row is another buffer host's is not served by this buffer; its
        other rows are never touched.
    type: str
    choices: [fail, disable]
    default: fail
  reenable_rows:
    description:
      - With O(state=enabled), C(DEF_id)s of other rows of the managed cameras to enable
        again, that is the rows an earlier O(state=disabled) run with
        O(other_enabled_rows=disable) disabled. Rows already enabled are left alone; ids of
        rows of other cameras are ignored with a warning.
    type: list
    elements: int
    default: []
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
    other_enabled_rows: disable
    config_file: /root/.leginondb.cnf
  register: outage_rows

- name: End the outage, enabling again exactly the other rows the outage disabled
  leginon_buffer_host:
    camera_host: k3-cam-01
    buffer_hostname: buffer01
    buffer_base_path: /bufferdata/frames
    state: enabled
    reenable_rows: >-
      {{ outage_rows.rows | map(attribute='other_rows') | flatten | map(attribute='id') }}
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
tables_created_like:
  description:
    - The Leginon table whose engine and character set the created tables copy, and those
      options; null when no table was created, or when no Leginon table could be seen (the
      server's defaults then).
  returned: success
  type: dict
  sample: {like: SessionData, engine: MyISAM, charset: latin1, collation: latin1_swedish_ci}
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
    other_rows:
      description:
        - The camera's other rows this run disabled (O(other_enabled_rows=disable)) or enabled
          again (O(reenable_rows)), as they are after it, each with its C(action).
      type: list
      elements: dict
      sample:
        - {id: 4, buffer_hostname: buffer00, buffer_base_path: /old/frames, disabled: true,
           action: disabled}
    transfer_row_id:
      description:
        - After this run, the camera's newest row of any buffer host, the one Leginon's
          transfer reads (null in check mode for a row still to insert).
      type: int
      sample: 17
    transfer_uses_buffer:
      description: After this run, whether Leginon's transfer sends the camera's frames to a buffer.
      type: bool
      sample: false
    appion_row_id:
      description:
        - After this run, the camera's newest enabled row, the one Appion reads; null when
          Appion reads the session frame path.
      type: int
      sample: null
    appion_buffer_hostname:
      description: C(buffer hostname) of that row; null when there is none.
      type: str
      sample: null
diff:
  description: The managed rows before and after, keyed by camera, with the column's presence.
  returned: when diff mode is on
  type: dict
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.embuffer.buffer.plugins.module_utils.leginon_bufferhost import (
    APPEND_COLUMN,
    BOOLEAN_FIELDS,
    TABLE,
    WRITE_ACTIONS,
    column_sql,
    plan_cameras,
    plan_changes,
    probe_schema,
    public_row,
    select_row,
)
from ansible_collections.embuffer.buffer.plugins.module_utils.leginon_bufferrules import (
    OTHER_ROW_MODES,
    camera_rows,
    plan_rules,
    rule_summary,
)
from ansible_collections.embuffer.buffer.plugins.module_utils.leginondb import (
    describe_target,
    leginondb_argument_spec,
    run_against_leginondb,
    quote_identifier,
)

# --- write ------------------------------------------------------------------------------------


def write_row(cursor, action, fields, after):
    """Insert or update one planned row; returns its DEF_id."""
    values = [int(after[field]) if field in BOOLEAN_FIELDS else after[field] for field in fields]
    columns = [column_sql(field) for field in fields]
    if action == "inserted":
        cursor.execute(
            f"INSERT INTO {quote_identifier(TABLE)} ({', '.join(columns)})"
            f" VALUES ({', '.join(['%s'] * len(fields))})",
            values,
        )
        return cursor.lastrowid
    assignments = ", ".join(f"{column} = %s" for column in columns)
    cursor.execute(
        f"UPDATE {quote_identifier(TABLE)} SET {assignments} WHERE `DEF_id` = %s",
        values + [after["id"]],
    )
    return after["id"]


def write_plans(connection, cursor, schema, plans):
    """The write: add the append full head column when planned (an ALTER commits on its own),
    then insert and update the planned rows, this buffer's and the other rows of its cameras,
    in one transaction, then read them back so that each plan's after-rows and rules are
    what the database holds, DEF_id of new rows included."""
    if schema["add_column"]:
        cursor.execute(
            f"ALTER TABLE {quote_identifier(TABLE)} ADD COLUMN {quote_identifier(APPEND_COLUMN)}"
            " TINYINT(1) NULL DEFAULT 0"
        )
    try:
        connection.begin()
        for plan in plans:
            if plan["action"] in WRITE_ACTIONS:
                plan["id"] = write_row(cursor, plan["action"], plan["fields"], plan["after"])
            for other in plan["others"]:
                write_row(cursor, "updated", ["disabled"], other["after"])
        connection.commit()
    except Exception:
        connection.rollback()
        raise
    for plan in plans:
        if plan["action"] in WRITE_ACTIONS:
            plan["after"] = select_row(
                cursor, schema["manage_append"], "`DEF_id` = %s", (plan["id"],)
            )
        for other in plan["others"]:
            other["after"] = select_row(
                cursor, schema["manage_append"], "`DEF_id` = %s", (other["id"],)
            )
        plan["rules"] = rule_summary(
            camera_rows(cursor, plan["camera"]["id"], schema["manage_append"])
        )


# --- result and diff ----------------------------------------------------------------------


def result_rows(plans, params, manage_append):
    """The `rows` of the result: each plan's after-row with its action and camera."""
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
            other_rows=[dict(other["after"], action=other["action"]) for other in plan["others"]],
            **plan["rules"],
        )
        rows.append(row)
    return rows


def diff_key(camera):
    """How a camera's row is named in the diff."""
    return f"{camera['name']} (InstrumentData {camera['id']})"


def row_diff(schema, plans, settings):
    """The diff: managed rows, missing tables and the column's presence, before and after."""
    header = f"{TABLE}, {describe_target(settings)}"
    return {
        "before_header": header,
        "after_header": header,
        "before": {
            "tables_missing": schema["created"],
            "append_full_head_column": schema["had_append"],
            "rows": {diff_key(plan["camera"]): plan["before"] for plan in plans if plan["before"]},
            "other_rows": {
                f"row {other['id']}": other["before"] for plan in plans for other in plan["others"]
            },
        },
        "after": {
            "tables_missing": [],
            "append_full_head_column": schema["manage_append"],
            "rows": {diff_key(plan["camera"]): plan["after"] for plan in plans if plan["after"]},
            "other_rows": {
                f"row {other['id']}": other["after"] for plan in plans for other in plan["others"]
            },
        },
    }


def run(module, connection, settings):
    """The module's job on an open connection: probe, plan, write (not in check mode), report."""
    cursor = connection.cursor()
    schema = probe_schema(cursor, module.params, module.check_mode, module.warn)
    plans = plan_cameras(cursor, schema, module.params, module.warn)
    for plan in plans:
        plan["camera_rows"] = (
            camera_rows(cursor, plan["camera"]["id"], schema["had_append"])
            if schema["had_table"]
            else []
        )
    plan_rules(plans, module.params, module.warn)
    changed = plan_changes(schema, plans) or any(plan["others"] for plan in plans)
    if changed and not module.check_mode:
        write_plans(connection, cursor, schema, plans)
    result = {
        "changed": changed,
        "rows": result_rows(plans, module.params, schema["manage_append"]),
        "append_full_head_supported": schema["manage_append"],
        "append_full_head_column_added": schema["add_column"],
        "tables_created": schema["created"],
        "tables_created_like": schema["table_options"] or None,
    }
    if module._diff:
        result["diff"] = row_diff(schema, plans, settings)
    return result


# --- arguments and entry point ----------------------------------------------------------------


def build_module():
    """The AnsibleModule, its arguments parsed and checked beyond what the spec can say."""
    argument_spec = leginondb_argument_spec()
    argument_spec.update(
        camera_host={"type": "str", "required": True},
        camera_name={"type": "str"},
        buffer_hostname={"type": "str", "required": True},
        buffer_base_path={"type": "str"},
        append_full_head={"type": "bool"},
        add_append_full_head_column={"type": "bool", "default": False},
        state={
            "type": "str",
            "choices": ["present", "enabled", "disabled"],
            "default": "present",
        },
        other_enabled_rows={"type": "str", "choices": list(OTHER_ROW_MODES), "default": "fail"},
        reenable_rows={"type": "list", "elements": "int", "default": []},
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[
            ("state", "present", ("buffer_base_path",)),
            ("state", "enabled", ("buffer_base_path",)),
        ],
        supports_check_mode=True,
    )
    params = module.params
    for option in ("camera_host", "buffer_hostname"):
        if not params[option].strip():
            module.fail_json(msg=f"{option} must not be empty")
    if params["buffer_base_path"] is not None and not params["buffer_base_path"].startswith("/"):
        module.fail_json(
            msg="buffer_base_path must be an absolute path on the buffer host, got "
            f"{params['buffer_base_path']!r}"
        )
    return module


def main():
    """Connect to leginondb, run, and turn database errors into task failures."""
    module = build_module()
    run_against_leginondb(
        module, TABLE, lambda _pymysql, connection, settings: run(module, connection, settings)
    )


if __name__ == "__main__":
    main()
