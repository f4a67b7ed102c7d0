# Copyright: embuffer contributors
# SPDX-License-Identifier: BSD-3-Clause
"""Leginon's two readings of a camera's BufferHostData rows, and what an outage does to them.

Leginon's transfer (rawtransfer.py, filetransfer.py: ddinfo.getUseBufferFromImage) uses a
buffer only when the camera's newest row, of any buffer host, is enabled. Appion
(apDDprocess.getSessionFramePathFromImage: ddinfo.getBufferFrameSessionPathFromImage) takes
the camera's newest row whose `disabled` is 0 and looks for the frames under it. So disabling
this buffer's row for an outage sends Appion to any older enabled row of the camera (a
replaced buffer server, a second buffer, an older row of this one), where the frames are not.
This module finds those rows and plans what to do with them: refuse, or disable them too and
re-enable exactly them when the outage ends.
"""

from ansible_collections.embuffer.buffer.plugins.module_utils.leginon_bufferhost import (
    COLUMNS,
    TABLE,
    column_sql,
    public_row,
)
from ansible_collections.embuffer.buffer.plugins.module_utils.leginondb import (
    LeginonDBError,
    quote_identifier,
)

OTHER_ROW_MODES = ("fail", "disable")


def camera_rows(cursor, camera_id, with_append):
    """Every BufferHostData row of a camera, of any buffer host, oldest first."""
    fields = [field for field in COLUMNS if with_append or field != "append_full_head"]
    cursor.execute(
        f"SELECT {', '.join(column_sql(field) for field in fields)} FROM {quote_identifier(TABLE)}"
        f" WHERE {column_sql('camera_id')} = %s ORDER BY `DEF_id`",
        (camera_id,),
    )
    return [
        public_row({field: found[index] for index, field in enumerate(fields)}, with_append)
        for found in cursor.fetchall()
    ]


def _age(row):
    """Sort key: DEF_id; a row check mode would insert has none yet and is the newest."""
    return float("inf") if row["id"] is None else row["id"]


def transfer_row(rows):
    """The row Leginon's transfer reads: the newest of any buffer host (None: no row)."""
    return max(rows, key=_age) if rows else None


def transfer_uses_buffer(rows):
    """getUseBufferFromImage: the newest row is enabled (`not disabled`, so NULL counts as
    enabled there, unlike in Appion's query)."""
    newest = transfer_row(rows)
    return newest is not None and not newest["disabled"]


def appion_row(rows):
    """The row Appion reads: the newest with `disabled` = 0 (None: Appion reads the
    session frame path)."""
    enabled = [row for row in rows if row["disabled"] is False]
    return max(enabled, key=_age) if enabled else None


def rule_summary(rows):
    """Where both rules point, for the module's result."""
    newest, appion = transfer_row(rows), appion_row(rows)
    return {
        "transfer_row_id": newest["id"] if newest else None,
        "transfer_uses_buffer": transfer_uses_buffer(rows),
        "appion_row_id": appion["id"] if appion else None,
        "appion_buffer_hostname": appion["buffer_hostname"] if appion else None,
    }


def apply_plan(rows, managed_after, others):
    """The camera's rows as they are after the planned writes."""
    changed = {other["id"]: other["after"] for other in others}
    after = []
    for row in rows:
        if managed_after is not None and row["id"] == managed_after["id"]:
            after.append(managed_after)
        else:
            after.append(changed.get(row["id"], row))
    if managed_after is not None and managed_after["id"] is None:
        after.append(managed_after)
    return after


def _flip(row, disabled):
    return {
        "id": row["id"],
        "before": row,
        "after": dict(row, disabled=disabled),
        "action": "disabled" if disabled else "enabled",
    }


def fallback_rows(rows, managed):
    """With the managed row disabled, the other rows Appion could read instead: every other
    enabled row, when the managed row is the camera's newest (this buffer is the one Leginon
    sends the camera's frames to). A camera whose newest row is another buffer's is not
    served by this buffer; its rows are left to that buffer's own outage."""
    if managed is None or transfer_row(rows)["id"] != managed["id"]:
        return []
    return [row for row in rows if row["id"] != managed["id"] and row["disabled"] is False]


def plan_other_rows(rows, managed, params):
    """The other rows of one camera to change: ([changes], [fallbacks left enabled])."""
    if params["state"] == "disabled":
        fallbacks = fallback_rows(rows, managed)
        if params["other_enabled_rows"] == "disable":
            return [_flip(row, True) for row in fallbacks], []
        return [], fallbacks
    if params["state"] == "enabled" and params["reenable_rows"]:
        wanted = set(params["reenable_rows"])
        return [_flip(row, False) for row in rows if row["id"] in wanted and row["disabled"]], []
    return [], []


def describe_row(row):
    return (
        f"BufferHostData row {row['id']} (buffer hostname {row['buffer_hostname']}, "
        f"base path {row['buffer_base_path']})"
    )


def fallback_error(blocked, params):
    """The refusal for rows Appion would read once this buffer's rows are disabled: names
    each of them and the choices."""
    lines = []
    for camera, managed, fallbacks in blocked:
        newest = max(fallbacks, key=_age)
        lines.append(
            f"camera {camera['name']} (InstrumentData {camera['id']}, {camera['host']}): with "
            f"{params['buffer_hostname']}'s row {managed['id']} disabled, Appion reads the "
            f"newest enabled row, {describe_row(newest)}, and looks for this buffer's frames "
            f"there; enabled rows of this camera besides this buffer's: "
            f"{', '.join(describe_row(row) for row in fallbacks)}"
        )
    return LeginonDBError(
        "; ".join(lines) + ". Choices: set other_enabled_rows=disable (the outage playbooks: "
        "embuffer_outage_other_enabled_rows: disable) to disable those rows too and re-enable "
        "exactly them when the outage ends (reenable_rows); or, when that buffer host is "
        "retired, disable its rows for good (UPDATE BufferHostData SET disabled = 1 WHERE "
        "DEF_id IN (...)) and run again."
    )


def unknown_reenable_rows(params, plans):
    """Row ids asked to be re-enabled that belong to none of the managed cameras."""
    known = {row["id"] for plan in plans for row in plan["camera_rows"]}
    return sorted(set(params["reenable_rows"] or []) - known)


def plan_rules(plans, params, warn):
    """Add each plan's other-row changes and the rules' after-state; refuse fallbacks left
    enabled (other_enabled_rows=fail), naming every one before anything is written."""
    blocked = []
    for plan in plans:
        managed = plan["before"]
        others, fallbacks = plan_other_rows(plan["camera_rows"], managed, params)
        plan["others"] = others
        if fallbacks:
            blocked.append((plan["camera"], managed, fallbacks))
        plan["rules"] = rule_summary(apply_plan(plan["camera_rows"], plan["after"], others))
    if blocked:
        raise fallback_error(blocked, params)
    if params["state"] == "enabled":
        for row_id in unknown_reenable_rows(params, plans):
            warn(
                f"reenable_rows names {TABLE} row {row_id}, which is no row of the cameras "
                "managed here: left as it is"
            )
