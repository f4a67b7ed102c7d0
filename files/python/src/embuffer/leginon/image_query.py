"""Finding the image of a frames name in leginondb, reading only a time window.

A camera file is looked up at every poll while it waits, in a leginondb that holds years of
a facility's images (millions of rows, MyISAM, no index on `frames name` as sinedon leaves
it). Every image, whichever of the four tables holds it, has a CameraEMData row: so the
camera rows of the last `days` are read once, by CameraEMData's own DEF_timestamp index (or
by `frames name` where the facility added that index), and only the one or two rows of the
name look for their images in Acquisition, Dark, Bright and NormImageData, each by its
`REF|CameraEMData|camera` key. The image tables' own windows are never scanned: a UNION of
one part per table did, and at 100k images its three reference parts cost a third of an
unmatched name's lookup, the lookup repeated while a file waits.

STRAIGHT_JOIN holds that order and FORCE INDEX (indexes.py) the window, so the plan does not
change with the table's size; the image tables are held to their camera key, so the server
does not read their DEF_timestamp range to build a row filter for a single lookup. No ORDER
BY names a primary key: `ORDER BY i.DEF_id DESC LIMIT 20` made MariaDB walk
AcquisitionImageData's primary key backwards, through the whole table when nothing matched.

Of a camera row's images, the one Leginon's rule takes first (Acquisition, Dark, Bright,
Norm) is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from embuffer.leginon.db import LeginonDB, NotInCharacterSet, SchemaMissing
from embuffer.leginon.indexes import FRAMES_NAME, leading, window_hint

IMAGE_TABLES = ("AcquisitionImageData", "DarkImageData", "BrightImageData", "NormImageData")
ACQUISITION = IMAGE_TABLES[0]
_ALIASES = dict(zip(IMAGE_TABLES, ("acq", "dark", "bright", "norm"), strict=True))
CAMERA_REF = "REF|CameraEMData|camera"
# sinedon inserts what an image refers to first: its CameraEMData row is written seconds
# (an exposure and a read-out) before the image row. An hour of slack on the camera's own
# timestamp keeps every image of the window.
CAMERA_SLACK_HOURS = 1

# What each optional column means when a database is older than it.
_ALIGN_FRAMES = ("align frames", "align_frames", "no row is taken for an aligned-frame sum")
_CAMERA_COLUMNS = (
    ("frame flip", "frame_flip", "references are not flipped"),
    ("frame rotate", "frame_rotate", "references are not rotated"),
    ("nframes", "nframes", "the frame count is unknown: completeness by timing alone"),
)
_ACQUISITION_REFS = (
    ("REF|NormImageData|norm", "norm_id", "no norm reference is written"),
    ("REF|DarkImageData|dark", "dark_id", "no dark reference is written"),
    ("REF|CorrectorPlanData|corrector plan", "plan_id", "no defect plan is written"),
)


@dataclass(frozen=True)
class CameraWindow:
    """The CameraEMData rows of a frames name in a time window: the index hint, the
    conditions on `c` and `inst` (InstrumentData), and their arguments."""

    hint: str
    where: str
    args: tuple[Any, ...]


def _window(
    db: LeginonDB, key: str, days: int, camera_host: str | None, *, movies: bool
) -> CameraWindow:
    """The camera rows of `key` in the last `days` (of `camera_host` unless None; with
    `movies`, no aligned-frame sum, which is never the movie though it shares the name)."""
    where = "c.`frames name` = %s AND c.`DEF_timestamp` >= NOW() - INTERVAL %s HOUR"
    args: tuple[Any, ...] = (key, days * 24 + CAMERA_SLACK_HOURS)
    if camera_host is not None:
        where += " AND inst.`hostname` = %s"
        args += (camera_host,)
    if movies:
        where += f" AND COALESCE({_align(db)}, 0) = 0"
    return CameraWindow(_camera_hint(db), where, args)


def _camera_hint(db: LeginonDB) -> str:
    """The index CameraEMData is read by: the facility's `frames name` index where there is
    one (the name's few rows, whatever the window), else the DEF_timestamp window. Never
    both: offered both, the server may take the window for an ORDER BY and read it all."""
    by_name = leading(db, "CameraEMData", FRAMES_NAME)
    return _force_index(by_name) if by_name else window_hint(db, "CameraEMData")


def _force_index(names: list[str]) -> str:
    """A hint limiting the table to these indexes (none named: no hint)."""
    if not names:
        return ""
    return "FORCE INDEX (" + ", ".join(f"`{name.replace('`', '``')}`" for name in names) + ")"


def _align(db: LeginonDB) -> str:
    column, _alias, assumed = _ALIGN_FRAMES
    return db.column_or_null("CameraEMData", "c", column, assumed=assumed)


def _from(window: CameraWindow) -> str:
    return (
        f"FROM `CameraEMData` c {window.hint} STRAIGHT_JOIN `InstrumentData` inst "
        "ON inst.`DEF_id` = c.`REF|InstrumentData|ccdcamera`"
    )


def _present(db: LeginonDB) -> list[str]:
    """The image tables this leginondb has: one Leginon never wrote to holds no image."""
    if not db.has_table("CameraEMData", assumed="no camera file can match any image"):
        return []
    return [
        table
        for table in IMAGE_TABLES
        if db.has_table(table, assumed="no images of that kind can match")
    ]


def _first_of(tables: list[str], column: str) -> str:
    """`column` of the camera row's image that Leginon's table order takes first."""
    cases = " ".join(
        f"WHEN {_ALIASES[t]}.`DEF_id` IS NOT NULL THEN {_ALIASES[t]}.`{column}`" for t in tables
    )
    return f"CASE {cases} END"


def _camera_columns(db: LeginonDB) -> list[str]:
    columns = ["c.`DEF_id` AS camera_em_id", "c.`REF|InstrumentData|ccdcamera` AS instrument_id"]
    for column, alias, assumed in _CAMERA_COLUMNS:
        value = db.column_or_null("CameraEMData", "c", column, assumed=assumed)
        columns.append(f"{value} AS {alias}")
    return columns


def _acquisition_refs(db: LeginonDB, alias: str) -> list[str]:
    return [
        f"{db.column_or_null(ACQUISITION, alias, column, assumed=assumed)} AS {name}"
        for column, name, assumed in _ACQUISITION_REFS
    ]


def _select_list(db: LeginonDB, tables: list[str], *, movies: bool) -> list[str]:
    """A camera row and its first image. With `movies` the host and the aligned-sum flag
    are left out: the statement has already held the rows to them."""
    order = " ".join(
        f"WHEN {_ALIASES[t]}.`DEF_id` IS NOT NULL THEN {IMAGE_TABLES.index(t)}" for t in tables
    )
    columns = [
        f"CASE {order} END AS table_order",
        f"{_first_of(tables, 'DEF_id')} AS image_id",
        f"{_first_of(tables, 'filename')} AS filename",
        f"{_first_of(tables, 'REF|SessionData|session')} AS session_id",
        *_camera_columns(db),
    ]
    if not movies:
        columns += ["inst.`hostname` AS camera_host", f"{_align(db)} AS {_ALIGN_FRAMES[1]}"]
    if ACQUISITION in tables:  # an acquisition's references, NULL for a reference image
        return columns + _acquisition_refs(db, _ALIASES[ACQUISITION])
    return columns + [f"NULL AS {name}" for _column, name, _assumed in _ACQUISITION_REFS]


def _by_camera_key(db: LeginonDB, table: str) -> str:
    """The hint that holds `table` to its camera key: a single row's images are read by
    it, never by a DEF_timestamp range the server might otherwise build a row filter from."""
    return _force_index(leading(db, table, CAMERA_REF))


def _image_join(db: LeginonDB, table: str) -> str:
    """The camera row's images in `table` within the window, by the camera key alone."""
    alias = _ALIASES[table]
    return (
        f" LEFT JOIN `{table}` {alias} {_by_camera_key(db, table)} "
        f"ON {alias}.`{CAMERA_REF}` = c.`DEF_id` "
        f"AND {alias}.`DEF_timestamp` >= NOW() - INTERVAL %s DAY"
    )


def _images(
    db: LeginonDB, tables: list[str], window: CameraWindow, days: int, *, movies: bool
) -> list[dict[str, Any]]:
    """The `window`'s camera rows that have an image in `tables` within `days`, each with
    its first image (a row per image where it has several) and under "table" that image's
    table; in Leginon's table order, newest first."""
    has_one = " OR ".join(f"{_ALIASES[t]}.`DEF_id` IS NOT NULL" for t in tables)
    sql = (
        f"SELECT {', '.join(_select_list(db, tables, movies=movies))} {_from(window)}"
        + "".join(_image_join(db, table) for table in tables)
        + f" WHERE {window.where} AND ({has_one})"
    )
    rows = _rows(db, sql, (*[days] * len(tables), *window.args))
    for row in rows:
        row["table"] = IMAGE_TABLES[int(row["table_order"])]
    return sorted(rows, key=lambda row: (int(row["table_order"]), -int(row["image_id"])))


def _rows(db: LeginonDB, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    try:
        return db.rows(sql, args)
    except SchemaMissing as missing:  # dropped or altered since the columns were read
        db.note_missing(f"part of the image tables ({missing})", "no images this time")
    except NotInCharacterSet:
        # a camera file name with characters leginondb's frames names cannot hold (a latin1
        # site): no image has it, so it waits out its grace period and goes to quarantine,
        # rather than being taken for a database outage that would stall the whole camera
        pass
    return []


def image_rows(db: LeginonDB, key: str, camera_host: str | None, days: int) -> list[dict[str, Any]]:
    """Images of the last `days` whose camera saved frames under `key` (of `camera_host`
    only, unless None), aligned sums included: of each camera row the image Leginon's table
    order takes first, with the table's name under "table", in that order and newest first."""
    tables = _present(db)
    if not tables:
        return []
    window = _window(db, key, days, camera_host, movies=False)
    return _images(db, tables, window, days, movies=False)


def first_movie(db: LeginonDB, key: str, camera_host: str, days: int) -> dict[str, Any] | None:
    """The image Leginon's rule takes for `key` of `camera_host` within `days` (aligned sums
    skipped): in the first of Acquisition, Dark, Bright and NormImageData that has one, the
    newest; None when none has.

    The first statement reads CameraEMData alone and takes the newest row of the name: a name
    no camera row has (the lookup repeated while a file waits) costs that one statement and
    opens no image table. Without a `frames name` index it reads the window newest first and
    stops at that row, so a movie looked up just after Leginon wrote it is found among the
    last rows at any database size. That row's acquisition is then read by its key. Only a
    camera row without one (a reference, or an image Leginon is still writing) asks all four
    tables about every camera row of the name in the window.
    """
    tables = _present(db)
    if not tables:
        return None
    window = _window(db, key, days, camera_host, movies=True)
    if ACQUISITION in tables:
        newest = _rows(
            db,
            f"SELECT {', '.join(_camera_columns(db))} {_from(window)} WHERE {window.where} "
            "ORDER BY c.`DEF_timestamp` DESC LIMIT 1",
            window.args,
        )
        if not newest:
            return None  # every image has a camera row in the window
        movie = _acquisition_of(db, newest[0], days)
        if movie is not None:
            return movie  # the newest movie's acquisition: nothing comes before it
    found = _images(db, tables, window, days, movies=True)
    return found[0] if found else None


def _acquisition_of(db: LeginonDB, camera: dict[str, Any], days: int) -> dict[str, Any] | None:
    """The newest acquisition of the `camera` row within `days`, with the row's columns."""
    images = _rows(
        db,
        "SELECT acq.`DEF_id` AS image_id, acq.`filename` AS filename, "
        f"acq.`REF|SessionData|session` AS session_id, {', '.join(_acquisition_refs(db, 'acq'))} "
        f"FROM `{ACQUISITION}` acq {_by_camera_key(db, ACQUISITION)} "
        f"WHERE acq.`{CAMERA_REF}` = %s AND acq.`DEF_timestamp` >= NOW() - INTERVAL %s DAY",
        (camera["camera_em_id"], days),
    )
    if not images:
        return None
    newest = max(images, key=lambda image: int(image["image_id"]))
    return {**camera, **newest, "table": ACQUISITION}
