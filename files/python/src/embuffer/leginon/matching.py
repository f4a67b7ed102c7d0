"""Find the Leginon image a camera file belongs to, and where its frames must go.

The rules are Leginon's and Appion's (see the project README): a camera file stem is the
CameraEMData `frames name`; the image is looked up in Acquisition, Dark, Bright and
NormImageData in that order, for the camera host, within check_days, newest first, skipping
rows whose camera aligned the frames (the aligned sum shares the frames name). The folder is
the session's buffer frame path, computed exactly as Appion computes it, so processing finds
`<folder>/<image filename>.frames.<ext>` where it looks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from embuffer.leginon.db import LeginonDB, SchemaMissing
from embuffer.safecopy.formats import format_of, movie_suffix

IMAGE_TABLES = ("AcquisitionImageData", "DarkImageData", "BrightImageData", "NormImageData")


@dataclass(frozen=True)
class ImageMatch:
    table: str
    image_id: int
    filename: str
    session_id: int
    camera_em_id: int
    instrument_id: int
    frame_flip: bool
    frame_rotate: int
    nframes: int | None
    norm_id: int | None = None
    dark_id: int | None = None
    plan_id: int | None = None


@dataclass(frozen=True)
class Session:
    session_id: int
    name: str
    image_path: str
    frame_path: str | None
    uid: int | None
    gid: int | None


@dataclass(frozen=True)
class Miss:
    """Why no image matched: quarantine needs a reason a person can act on."""

    reason: str


def frames_key(name: str, is_dir: bool) -> str:
    """The `frames name` to look up: the stem for a file, the full name for a folder."""
    if is_dir:
        return name
    suffix = movie_suffix(name)
    if suffix:
        return name[: -len(suffix)]
    return name.split(".", 1)[0]


def destination_name(image_filename: str, source_name: str, is_dir: bool) -> str:
    """The name a camera file takes on the buffer, where Appion looks for it: the image's
    filename + `.frames` + the file's own extension. A movie's sidecar is named by the same
    rule, so it lands beside its movie (`<image>.frames.xml`)."""
    if is_dir:
        return f"{image_filename}.frames"
    # Appion looks for .frames.tif, whichever of the two TIFF suffixes the camera wrote.
    is_tiff = format_of(source_name) == "tiff"
    extension = ".tif" if is_tiff else os.path.splitext(source_name.lower())[1]
    return f"{image_filename}.frames{extension}"


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


def _candidates(
    db: LeginonDB, table: str, key: str, camera_host: str | None, check_days: int | None
) -> list[dict[str, Any]]:
    """Image rows of one table whose camera saved frames under `key`; a table this
    leginondb does not have yet (no image of that kind was ever taken) holds none."""
    if not db.has_table(table, assumed="no images of that kind can match"):
        return []
    if not db.has_table("CameraEMData", assumed="no camera file can match any image"):
        return []
    columns = [
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
    if table == "AcquisitionImageData":
        for column, alias, assumed in _ACQUISITION_REFS:
            columns.append(f"{db.column_or_null(table, 'i', column, assumed=assumed)} AS {alias}")
    sql = (
        f"SELECT {', '.join(columns)} FROM `{table}` i "
        "JOIN `CameraEMData` c ON c.`DEF_id` = i.`REF|CameraEMData|camera` "
        "JOIN `InstrumentData` inst ON inst.`DEF_id` = c.`REF|InstrumentData|ccdcamera` "
        "WHERE c.`frames name` = %s"
    )
    args: list[Any] = [key]
    if camera_host is not None:
        sql += " AND inst.`hostname` = %s"
        args.append(camera_host)
    if check_days is not None:
        sql += " AND i.`DEF_timestamp` >= NOW() - INTERVAL %s DAY"
        args.append(check_days)
    sql += " ORDER BY i.`DEF_id` DESC LIMIT 20"
    try:
        return db.rows(sql, args)
    except SchemaMissing as missing:  # dropped or altered since the columns were read
        db.note_missing(f"part of {table} ({missing})", "no images from there this time")
        return []


def find_image(db: LeginonDB, key: str, camera_host: str, check_days: int) -> ImageMatch | None:
    for table in IMAGE_TABLES:
        for row in _candidates(db, table, key, camera_host, check_days):
            if row["align_frames"]:
                continue  # an aligned sum saved under the same frames name: not the movie
            return ImageMatch(
                table=table,
                image_id=int(row["image_id"]),
                filename=str(row["filename"]),
                session_id=int(row["session_id"]),
                camera_em_id=int(row["camera_em_id"]),
                instrument_id=int(row["instrument_id"]),
                frame_flip=bool(row["frame_flip"]),
                frame_rotate=int(row["frame_rotate"] or 0),
                nframes=int(row["nframes"]) if row["nframes"] is not None else None,
                norm_id=row.get("norm_id"),
                dark_id=row.get("dark_id"),
                plan_id=row.get("plan_id"),
            )
    return None


def explain_miss(db: LeginonDB, key: str, camera_host: str, check_days: int) -> Miss:
    """Classify a failed match: another camera host, too old, only aligned sums, or unknown."""
    rows = [row for table in IMAGE_TABLES for row in _candidates(db, table, key, None, None)]
    hosts = sorted({str(row["camera_host"]) for row in rows if not row["align_frames"]})
    if camera_host in hosts:
        return Miss(
            f"frames name '{key}' matches an image older than check_days ({check_days} days)"
        )
    if hosts:
        return Miss(
            f"frames name '{key}' belongs to camera host(s) {', '.join(hosts)}, not {camera_host}"
        )
    if rows:
        return Miss(f"frames name '{key}' matches only aligned-frame sums")
    return Miss(f"no Leginon image has frames name '{key}' for camera host {camera_host}")


def load_session(db: LeginonDB, session_id: int) -> Session:
    frame_path = db.column_or_null(
        "SessionData", "s", "frame path", assumed="frame paths derive from image paths"
    )
    uid = db.column_or_null("SessionData", "s", "uid", assumed="owner of the image path")
    gid = db.column_or_null("SessionData", "s", "gid", assumed="group of the image path")
    rows = db.rows(
        f"SELECT s.`DEF_id` AS id, s.`name`, s.`image path` AS image_path, "
        f"{frame_path} AS frame_path, {uid} AS uid, {gid} AS gid "
        "FROM `SessionData` s WHERE s.`DEF_id` = %s",
        (session_id,),
    )
    if not rows:
        raise LookupError(f"SessionData row {session_id} does not exist")
    row = rows[0]
    return Session(
        session_id=session_id,
        name=str(row["name"]),
        image_path=str(row["image_path"] or ""),
        frame_path=row["frame_path"],
        uid=row["uid"],
        gid=row["gid"],
    )
