"""The one statement that finds the image rows of a frames name, reading only a time window.

A camera file is looked up at every poll while it waits, in a leginondb that holds years of
a facility's images (millions of rows, MyISAM, no index on `frames name` as sinedon leaves
it). Each of the four image tables is asked for the rows of the last `days` whose camera
saved frames under the name, in one UNION ALL (one round trip, where a table per statement
took four for every unmatched file):

- AcquisitionImageData: every exposure has a CameraEMData row, so the camera rows of the
  window are read by CameraEMData's own DEF_timestamp index (or by `frames name` where the
  facility added that index) and the image is found by `REF|CameraEMData|camera`.
- Dark, Bright and NormImageData hold a few hundred rows in all: their own window is read,
  then the camera row by its primary key.

STRAIGHT_JOIN holds that order and FORCE INDEX (indexes.py) the window, so the plan does not
change with the table's size. No ORDER BY names a primary key: `ORDER BY i.DEF_id DESC
LIMIT 20` made MariaDB walk AcquisitionImageData's primary key backwards, through the whole
table when nothing matched. At most a few rows match; they are ordered here.
"""

from __future__ import annotations

from typing import Any

from embuffer.leginon.db import LeginonDB, NotInCharacterSet, SchemaMissing
from embuffer.leginon.indexes import FRAMES_NAME, leading, window_hint

IMAGE_TABLES = ("AcquisitionImageData", "DarkImageData", "BrightImageData", "NormImageData")
# sinedon inserts what an image refers to first: its CameraEMData row is written seconds
# (an exposure and a read-out) before the image row. An hour of slack on the camera's own
# timestamp keeps every image of the window.
CAMERA_SLACK_HOURS = 1

# What each optional column means when a database is older than it.
_CAMERA_COLUMNS = (
    ("align frames", "align_frames", "no row is taken for an aligned-frame sum"),
    ("frame flip", "frame_flip", "references are not flipped"),
    ("frame rotate", "frame_rotate", "references are not rotated"),
    ("nframes", "nframes", "the frame count is unknown: completeness by timing alone"),
)
_ACQUISITION_REFS = (
    ("REF|NormImageData|norm", "norm_id", "no norm reference is written"),
    ("REF|DarkImageData|dark", "dark_id", "no dark reference is written"),
    ("REF|CorrectorPlanData|corrector plan", "plan_id", "no defect plan is written"),
)


def _select_list(db: LeginonDB, order: int, table: str) -> list[str]:
    columns = [
        f"{order} AS table_order",
        "i.`DEF_id` AS image_id",
        "i.`filename` AS filename",
        "i.`REF|SessionData|session` AS session_id",
        "c.`DEF_id` AS camera_em_id",
        "c.`REF|InstrumentData|ccdcamera` AS instrument_id",
        "inst.`hostname` AS camera_host",
    ]
    for column, alias, assumed in _CAMERA_COLUMNS:
        columns.append(
            f"{db.column_or_null('CameraEMData', 'c', column, assumed=assumed)} AS {alias}"
        )
    for column, alias, assumed in _ACQUISITION_REFS:
        value = "NULL"
        if table == "AcquisitionImageData":
            value = db.column_or_null(table, "i", column, assumed=assumed)
        columns.append(f"{value} AS {alias}")
    return columns


def _joins(db: LeginonDB, table: str) -> str:
    """The tables in the order the server must read them, each by an index of its window."""
    instrument = "`InstrumentData` inst ON inst.`DEF_id` = c.`REF|InstrumentData|ccdcamera`"
    if table == "AcquisitionImageData":
        return (
            f"`CameraEMData` c {window_hint(db, 'CameraEMData', by_frames_name=True)} "
            f"STRAIGHT_JOIN {instrument} "
            f"STRAIGHT_JOIN `{table}` i ON i.`REF|CameraEMData|camera` = c.`DEF_id`"
        )
    return (
        f"`{table}` i {window_hint(db, table)} "
        "STRAIGHT_JOIN `CameraEMData` c ON c.`DEF_id` = i.`REF|CameraEMData|camera` "
        f"STRAIGHT_JOIN {instrument}"
    )


def _newest_movie_first(db: LeginonDB) -> str:
    """Without a `frames name` index, the camera rows of the window are read newest first and
    the reading stops at the first movie (an aligned sum is not one): a movie looked up just
    after Leginon wrote its row is found among the last rows, at any database size. An
    unmatched name still reads its whole window, no more. With the index the server reads
    the name's one or two rows instead, so no order is asked for."""
    if leading(db, "CameraEMData", FRAMES_NAME):
        return ""
    align = db.column_or_null("CameraEMData", "c", "align frames", assumed=_CAMERA_COLUMNS[0][2])
    return f" AND COALESCE({align}, 0) = 0 ORDER BY c.`DEF_timestamp` DESC LIMIT 1"


def image_rows(
    db: LeginonDB, key: str, camera_host: str | None, days: int, *, movie_only: bool = False
) -> list[dict[str, Any]]:
    """Image rows of the last `days` whose camera saved frames under `key` (of `camera_host`
    only, unless None): Acquisition, Dark, Bright and NormImageData in that order, each
    newest first, with the table's name under "table". `movie_only`: of
    AcquisitionImageData, the newest movie alone (what find_image takes from it). A table
    this leginondb does not have yet (no image of that kind was ever taken) holds none."""
    if not db.has_table("CameraEMData", assumed="no camera file can match any image"):
        return []
    parts: list[str] = []
    args: list[Any] = []
    for order, table in enumerate(IMAGE_TABLES):
        if not db.has_table(table, assumed="no images of that kind can match"):
            continue
        part = (
            f"SELECT {', '.join(_select_list(db, order, table))} FROM {_joins(db, table)} "
            "WHERE c.`frames name` = %s AND c.`DEF_timestamp` >= NOW() - INTERVAL %s HOUR "
            "AND i.`DEF_timestamp` >= NOW() - INTERVAL %s DAY"
        )
        args += [key, days * 24 + CAMERA_SLACK_HOURS, days]
        if camera_host is not None:
            part += " AND inst.`hostname` = %s"
            args.append(camera_host)
        if movie_only and table == "AcquisitionImageData":
            part += _newest_movie_first(db)
        parts.append(f"({part})")
    if not parts:
        return []
    try:
        rows = db.rows(" UNION ALL ".join(parts), args)
    except SchemaMissing as missing:  # dropped or altered since the columns were read
        db.note_missing(f"part of the image tables ({missing})", "no images this time")
        return []
    except NotInCharacterSet:
        # a camera file name with characters leginondb's frames names cannot hold (a latin1
        # site): no image has it, so it waits out its grace period and goes to quarantine,
        # rather than being taken for a database outage that would stall the whole camera
        return []
    for row in rows:
        row["table"] = IMAGE_TABLES[int(row["table_order"])]
    return sorted(rows, key=lambda row: (int(row["table_order"]), -int(row["image_id"])))
