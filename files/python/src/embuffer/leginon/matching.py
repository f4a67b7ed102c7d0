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
from pathlib import Path
from typing import Any

from embuffer.leginon.db import LeginonDB, SchemaMissing
from embuffer.leginon.names import contained

IMAGE_TABLES = ("AcquisitionImageData", "DarkImageData", "BrightImageData", "NormImageData")
FRAME_SUFFIXES = (".mrc", ".tif", ".eer")


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
    for suffix in (".mrc", ".tif", ".eer", ".tiff", ".mrcs"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name.split(".", 1)[0]


def destination_name(image_filename: str, source_name: str, is_dir: bool) -> str:
    if is_dir:
        return f"{image_filename}.frames"
    lower = source_name.lower()
    extension = ".tif" if lower.endswith((".tif", ".tiff")) else os.path.splitext(lower)[1]
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


def derive_buffer_frame_path(image_path: str, base_path: str, append_full_head: bool) -> str | None:
    """The buffer path rule on strings, exactly as Appion applies it."""
    if "leginon" not in image_path:
        return None
    head, _, tail = image_path.rpartition("leginon")
    if append_full_head:
        return base_path.rstrip("/") + head.rstrip("/") + tail
    return base_path.rstrip("/") + tail


@dataclass(frozen=True)
class BufferHost:
    row_id: int
    hostname: str
    base_path: str
    disabled: bool
    append_full_head: bool


def newest_buffer_host(db: LeginonDB, instrument_id: int) -> BufferHost | None:
    """The camera's newest BufferHostData row (any buffer host), as Leginon and Appion read
    it; None when there is none (or no BufferHostData table: the site never had a buffer)."""
    if not db.has_table("BufferHostData", assumed="no camera uses a buffer server"):
        return None
    flag = db.column_or_null(
        "BufferHostData", "b", "append full head", assumed="default (not append full head) mode"
    )
    rows = db.rows(
        "SELECT b.`DEF_id` AS id, b.`buffer hostname` AS hostname, "
        f"b.`buffer base path` AS base_path, b.`disabled`, {flag} AS append_full_head "
        "FROM `BufferHostData` b WHERE b.`REF|InstrumentData|ccdcamera` = %s "
        "ORDER BY b.`DEF_id` DESC LIMIT 1",
        (instrument_id,),
    )
    if not rows:
        return None
    row = rows[0]
    return BufferHost(
        row_id=int(row["id"]),
        hostname=str(row["hostname"] or ""),
        base_path=str(row["base_path"] or ""),
        disabled=bool(row["disabled"]),
        append_full_head=bool(row.get("append_full_head") or False),
    )


@dataclass(frozen=True)
class Placement:
    folder: str  # the session frame path on the buffer
    registered: bool  # True when Appion's lookup finds this folder now
    note: str
    host_row: int | None = None  # the BufferHostData row the folder belongs to


@dataclass(frozen=True)
class Refusal:
    """No folder on this buffer is right for the session's frames: they stay on the camera
    share, and `reason` says what a person must fix."""

    reason: str


def recorded_frame_path(db: LeginonDB, session_id: int, host_row: int) -> str | None:
    """The BufferFramePathData row for (session, buffer host row), if any."""
    if not db.has_table(
        "BufferFramePathData", assumed="no session has a recorded buffer frame path yet"
    ):
        return None
    rows = db.rows(
        "SELECT `buffer frame path` AS path FROM `BufferFramePathData` "
        "WHERE `REF|SessionData|session` = %s AND `REF|BufferHostData|host` = %s "
        "ORDER BY `DEF_id` DESC LIMIT 1",
        (session_id, host_row),
    )
    return str(rows[0]["path"]) if rows and rows[0]["path"] else None


def record_frame_path(db: LeginonDB, session_id: int, host_row: int, folder: str) -> bool:
    """Insert the BufferFramePathData row as Leginon does; False when the table does not
    exist (the registration role creates it; Appion then derives the same path)."""
    try:
        db.insert(
            "INSERT INTO `BufferFramePathData` "
            "(`REF|SessionData|session`, `REF|BufferHostData|host`, `buffer frame path`) "
            "VALUES (%s, %s, %s)",
            (session_id, host_row, folder),
        )
    except SchemaMissing:
        db.note_missing(
            "table BufferFramePathData",
            "buffer frame paths are not recorded; Appion derives the same path",
        )
        return False
    return True


def session_buffer_folder(
    db: LeginonDB, session: Session, instrument_id: int, buffer_root: str
) -> Placement | Refusal:
    """Where this session's frames go on the buffer, by Leginon's own rule.

    Leginon sends a camera's frames to a buffer server only while the camera's newest
    BufferHostData row is enabled; without any row it writes them to the session frame path,
    which is not on this buffer. A camera configured on this buffer with no row at all is
    therefore the facility's mistake (`embuffer config check` says so): its frames stay on the
    camera share, never in a folder where neither Leginon nor Appion would look.

    Enabled row: the registered buffer frame path (the BufferFramePathData row, inserted on
    first use like Leginon does, after the folder is known to lie under the buffer root).
    Disabled row (outage mode): the same layout under that row's base path, not registered;
    `register_outage_sessions` records it once the row is enabled again, so Appion's lookup
    (buffer frame path first while enabled) finds these frames after the outage.
    """
    host = newest_buffer_host(db, instrument_id)
    if host is None:
        return Refusal(
            f"camera (InstrumentData {instrument_id}) has no BufferHostData row, so Leginon "
            "sends its frames to the session frame path, not to a buffer: register this "
            "buffer for it (site.yml, embuffer_registration) or take it out of [[camera]]"
        )
    base = host.base_path or buffer_root
    if not host.disabled:
        existing = recorded_frame_path(db, session.session_id, host.row_id)
        if existing is not None:
            if not contained(existing, buffer_root):
                return Refusal(
                    f"recorded buffer frame path {existing} is outside the buffer root "
                    f"{buffer_root}"
                )
            return Placement(existing, True, "BufferFramePathData", host.row_id)
    folder = derive_buffer_frame_path(session.image_path, base, host.append_full_head)
    if folder is None:
        return Refusal(
            f"image path {session.image_path!r} has no 'leginon' part, so no buffer frame "
            "path exists"
        )
    if not contained(folder, buffer_root):
        return Refusal(
            f"buffer frame path {folder} (base path {base}) is outside the buffer root "
            f"{buffer_root}"
        )
    if host.disabled:
        return Placement(
            folder, False, "BufferHostData disabled: buffer layout, registered later", host.row_id
        )
    recorded = record_frame_path(db, session.session_id, host.row_id, folder)
    note = "new BufferFramePathData row" if recorded else "derived (no BufferFramePathData table)"
    return Placement(folder, True, note, host.row_id)


def session_owner(session: Session) -> tuple[int | None, int | None]:
    """SessionData uid/gid when both are set; else the owner of the session image path."""
    if session.uid is not None and session.gid is not None:
        return int(session.uid), int(session.gid)
    try:
        info = Path(session.image_path).stat()
    except OSError:
        return None, None
    return info.st_uid, info.st_gid
