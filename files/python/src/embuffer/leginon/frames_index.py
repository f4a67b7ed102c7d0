"""Whether CameraEMData has an index on `frames name`, and what adding one costs.

sinedon never indexes a TEXT column, so a leginondb as Leginon leaves it has none. embuffer's
lookups read only their time window without it (matching.py); with it, a lookup reads one or
two rows at any database size. Adding it is the facility's choice: on MyISAM, ALTER TABLE
copies the whole table and blocks Leginon's writes to CameraEMData meanwhile, so it belongs
between sessions. `embuffer config check` and `embuffer status` say which it is and, without
it, print the statement and its estimated time; the registration role runs the same
statement when the operator asks for it. embuffer never requires it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from embuffer.leginon.db import LeginonDB
from embuffer.leginon.indexes import FRAMES_NAME, indexes_of

# 40 characters hold every frames name Leginon writes (a date, a time and a counter, or a
# DE/Falcon stem) while keeping the key small; `=` on the full column still checks the rest.
FRAMES_NAME_INDEX_STATEMENT = (
    "ALTER TABLE `CameraEMData` ADD INDEX `embuffer_frames_name` (`frames name`(40))"
)
# Measured on MariaDB 10.11 (MyISAM, the facility-size test database): about 4.6 s a million
# rows. Slower disks take longer; the estimate is a floor to plan a window around.
SECONDS_PER_MILLION_ROWS = 6.0


@dataclass(frozen=True)
class FramesIndex:
    present: bool
    index_name: str | None
    rows: int  # CameraEMData's rows, as the server estimates them
    engine: str

    def estimated_seconds(self) -> float:
        return max(1.0, self.rows / 1e6 * SECONDS_PER_MILLION_ROWS)

    def describe(self) -> str:
        if self.present:
            return (
                f"CameraEMData has an index on `frames name` ({self.index_name}): each "
                "lookup reads one or two rows"
            )
        blocking = (
            "copies the table and blocks Leginon's writes to CameraEMData meanwhile (MyISAM)"
            if self.engine.lower() == "myisam"
            else f"is built in place ({self.engine}), Leginon's writes waiting only at its ends"
        )
        return (
            f"CameraEMData has no index on `frames name` ({self.rows} rows): lookups read "
            "their check_days window, which is enough; to make them read one row instead, "
            f"run between sessions: {FRAMES_NAME_INDEX_STATEMENT}; it takes about "
            f"{self.estimated_seconds():.0f} s and {blocking}"
        )


def inspect(db: LeginonDB) -> FramesIndex | None:
    """The index's state; None when leginondb has no CameraEMData table yet."""
    tables = db.rows(
        "SELECT ENGINE AS engine, TABLE_ROWS AS table_rows FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'CameraEMData'"
    )
    if not tables:
        return None
    names = [
        index.name for index in indexes_of(db, "CameraEMData") if index.columns[0] == FRAMES_NAME
    ]
    return FramesIndex(
        present=bool(names),
        index_name=names[0] if names else None,
        rows=int(tables[0]["table_rows"] or 0),
        engine=str(tables[0]["engine"] or ""),
    )


# `embuffer status --watch` redraws every few seconds; the index changes between sessions
STATUS_RECHECK_SECONDS = 600.0
# a report must not hang on a database that does not answer
REPORT_CONNECT_TIMEOUT = 3
_reported: dict[Path, tuple[float, str]] = {}


def report_line(credentials_path: Path, *, max_age: float = 0.0) -> str:
    """What `config check` and `status` print about the index: its state, or why it was not
    looked at. `max_age`: reuse an answer this recent (seconds)."""
    from embuffer.leginon.credentials import read_credentials

    cached = _reported.get(credentials_path)
    if cached is not None and time.monotonic() - cached[0] < max_age:
        return cached[1]
    try:
        credentials = read_credentials(credentials_path)
        credentials = dataclasses.replace(
            credentials, connect_timeout=min(credentials.connect_timeout, REPORT_CONNECT_TIMEOUT)
        )
        db = LeginonDB(credentials)
        try:
            found = inspect(db)
        finally:
            db.close()
        line = "leginondb has no CameraEMData table yet" if found is None else found.describe()
    except Exception as error:  # noqa: BLE001 - a report says what it could not see
        line = f"frames-name index not checked: {error}"
    _reported[credentials_path] = (time.monotonic(), line)
    return line
