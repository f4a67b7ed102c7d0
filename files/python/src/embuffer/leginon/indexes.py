"""The indexes a leginondb table has, and the index hint that keeps a lookup in its window.

sinedon indexes DEF_timestamp and every `REF|` column, nothing else; a facility may add one on
CameraEMData's `frames name` (frames_index.py). At a few million rows MariaDB's cost model can
prefer scanning a whole table to a wide DEF_timestamp range, so each per-file lookup names the
indexes it may use (FORCE INDEX): its time range, or the frames-name index where one exists.
The names are read from information_schema, never assumed: a hint naming an index that is not
there is an error, and an older or hand-made schema may name them otherwise.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

from embuffer.leginon.db import SCHEMA_CACHE_SECONDS, LeginonDB

FRAMES_NAME = "frames name"


@dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str, ...]  # in key order
    prefix: int | None  # characters of the first column in the key (None: all of it)


_cache: weakref.WeakKeyDictionary[LeginonDB, dict[str, tuple[float, list[Index]]]] = (
    weakref.WeakKeyDictionary()
)


def indexes_of(db: LeginonDB, table: str) -> list[Index]:
    """The table's indexes (none when it does not exist), cached like its columns."""
    tables = _cache.setdefault(db, {})
    cached = tables.get(table)
    if cached is not None and time.monotonic() - cached[0] <= SCHEMA_CACHE_SECONDS:
        return cached[1]
    rows = db.rows(
        "SELECT INDEX_NAME AS name, COLUMN_NAME AS col, SUB_PART AS prefix "
        "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = %s ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        (table,),
    )
    columns: dict[str, list[str]] = {}
    prefixes: dict[str, int | None] = {}
    for row in rows:
        name = str(row["name"])
        columns.setdefault(name, []).append(str(row["col"]))
        prefixes.setdefault(name, int(row["prefix"]) if row["prefix"] is not None else None)
    found = [Index(name, tuple(cols), prefixes[name]) for name, cols in columns.items()]
    tables[table] = (time.monotonic(), found)
    return found


def leading(db: LeginonDB, table: str, column: str) -> list[str]:
    """Names of the table's indexes whose first column is `column`."""
    return [index.name for index in indexes_of(db, table) if index.columns[0] == column]


def window_hint(db: LeginonDB, table: str, *, by_frames_name: bool = False) -> str:
    """`FORCE INDEX (...)` limiting the table to its DEF_timestamp index (and, with
    `by_frames_name`, a `frames name` index if the facility added one); empty when the table
    has no DEF_timestamp index, so the query still runs, planned by the server."""
    names = leading(db, table, "DEF_timestamp")
    if not names:
        return ""
    if by_frames_name:
        names += leading(db, table, FRAMES_NAME)
    quoted = (name.replace("`", "``") for name in names)
    return "FORCE INDEX (" + ", ".join(f"`{name}`" for name in quoted) + ")"
