"""leginondb questions the reports ask: which instruments a camera PC carries, and which
sessions were created while primary storage was out."""

from __future__ import annotations

from typing import Any

from embuffer.leginon.db import LeginonDB


def instruments_on_host(db: LeginonDB, hostname: str) -> list[dict[str, Any]]:
    """The InstrumentData rows (id, name) of one camera PC."""
    return db.rows(
        "SELECT `DEF_id` AS id, `name` FROM `InstrumentData` WHERE `hostname` = %s",
        (hostname,),
    )


def sessions_created_in(
    db: LeginonDB, start: float, end: float, location: str
) -> list[dict[str, Any]]:
    """Sessions created in [start, end] (one second of slack each side) whose image path is
    under `location`, oldest first: the ones an outage's temporary location received."""
    under = location.rstrip("/").replace("%", r"\%").replace("_", r"\_") + "/%"
    return db.rows(
        "SELECT `name`, `image path` AS image_path, `DEF_timestamp` AS created "
        "FROM `SessionData` WHERE `DEF_timestamp` BETWEEN FROM_UNIXTIME(%s) AND "
        "FROM_UNIXTIME(%s) AND `image path` LIKE %s ORDER BY `DEF_id`",
        (int(start) - 1, int(end) + 1, under),
    )
