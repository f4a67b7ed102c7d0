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

from embuffer.leginon.db import LeginonDB
from embuffer.leginon.image_query import first_movie, image_rows
from embuffer.safecopy.formats import format_of, movie_suffix


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


# explain_miss looks this many times further back than check_days, at most a year: far
# enough to tell "too old" from "unknown" for any file still on a camera share, and bounded,
# because a lookup over all of a facility's years reads millions of rows.
EXPLAIN_FACTOR = 10
EXPLAIN_DAYS_CAP = 365


def explain_days(check_days: int) -> int:
    """How far back explain_miss looks for a frames name, in days."""
    return max(check_days, min(check_days * EXPLAIN_FACTOR, EXPLAIN_DAYS_CAP))


def find_image(db: LeginonDB, key: str, camera_host: str, check_days: int) -> ImageMatch | None:
    row = first_movie(db, key, camera_host, check_days)
    if row is None:
        return None
    return ImageMatch(
        table=row["table"],
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


def explain_miss(db: LeginonDB, key: str, camera_host: str, check_days: int) -> Miss:
    """Classify a failed match: another camera host, too old, only aligned sums, or unknown,
    from the images of the last explain_days(check_days) days."""
    days = explain_days(check_days)
    rows = image_rows(db, key, None, days)
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
    return Miss(
        f"no Leginon image has frames name '{key}' for camera host {camera_host} "
        f"(nor for any other) within the last {days} days"
    )


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
