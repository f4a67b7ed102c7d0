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

from embuffer.leginondb import LeginonDB

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


_MATCH_COLUMNS = (
    "i.`DEF_id` AS image_id, i.`filename` AS filename, "
    "i.`REF|SessionData|session` AS session_id, c.`DEF_id` AS camera_em_id, "
    "c.`REF|InstrumentData|ccdcamera` AS instrument_id, c.`align frames` AS align_frames, "
    "c.`frame flip` AS frame_flip, c.`frame rotate` AS frame_rotate, c.`nframes` AS nframes"
)
_ACQUISITION_REFS = ", i.`REF|NormImageData|norm` AS norm_id, i.`REF|DarkImageData|dark` AS dark_id"


def _candidates(
    db: LeginonDB, table: str, key: str, camera_host: str | None, check_days: int | None
) -> list[dict[str, Any]]:
    columns = _MATCH_COLUMNS
    if table == "AcquisitionImageData":
        columns += _ACQUISITION_REFS
        if "REF|CorrectorPlanData|corrector plan" in db.columns(table):
            columns += ", i.`REF|CorrectorPlanData|corrector plan` AS plan_id"
    sql = (
        f"SELECT {columns}, inst.`hostname` AS camera_host FROM `{table}` i "
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
    return db.rows(sql, args)


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
                nframes=row["nframes"],
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
    rows = db.rows(
        "SELECT `DEF_id` AS id, `name`, `image path` AS image_path, `frame path` AS frame_path, "
        "`uid`, `gid` FROM `SessionData` WHERE `DEF_id` = %s",
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
    has_flag = "append full head" in db.columns("BufferHostData")
    flag = ", `append full head` AS append_full_head" if has_flag else ""
    rows = db.rows(
        f"SELECT `DEF_id` AS id, `buffer hostname` AS hostname, `buffer base path` AS base_path, "
        f"`disabled`{flag} FROM `BufferHostData` WHERE `REF|InstrumentData|ccdcamera` = %s "
        "ORDER BY `DEF_id` DESC LIMIT 1",
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
    registered: bool  # True when Appion will look here (BufferHostData enabled)
    note: str


def session_buffer_folder(
    db: LeginonDB, session: Session, instrument_id: int, buffer_root: str
) -> Placement | None:
    """Where this session's frames live on the buffer.

    While the camera's newest BufferHostData row is enabled this is the registered buffer
    frame path (the BufferFramePathData row, inserted on first use like Leginon does). When
    it is disabled (outage mode) or missing, frames still land on the buffer, in the same
    layout under the configured root, but nothing is registered for Appion.
    """
    host = newest_buffer_host(db, instrument_id)
    if host is not None and not host.disabled:
        existing = db.rows(
            "SELECT `buffer frame path` AS path FROM `BufferFramePathData` "
            "WHERE `REF|SessionData|session` = %s AND `REF|BufferHostData|host` = %s "
            "ORDER BY `DEF_id` DESC LIMIT 1",
            (session.session_id, host.row_id),
        )
        if existing and existing[0]["path"]:
            return Placement(str(existing[0]["path"]), True, "BufferFramePathData")
        folder = derive_buffer_frame_path(session.image_path, host.base_path, host.append_full_head)
        if folder is None:
            return None
        db.insert(
            "INSERT INTO `BufferFramePathData` "
            "(`REF|SessionData|session`, `REF|BufferHostData|host`, `buffer frame path`) "
            "VALUES (%s, %s, %s)",
            (session.session_id, host.row_id, folder),
        )
        return Placement(folder, True, "new BufferFramePathData row")
    append = host.append_full_head if host is not None else False
    folder = derive_buffer_frame_path(session.image_path, buffer_root, append)
    if folder is None:
        return None
    why = "BufferHostData disabled" if host is not None else "no BufferHostData row"
    return Placement(folder, False, f"{why}: buffer layout, not registered")


def session_owner(session: Session) -> tuple[int | None, int | None]:
    """SessionData uid/gid when both are set; else the owner of the session image path."""
    if session.uid is not None and session.gid is not None:
        return int(session.uid), int(session.gid)
    try:
        info = Path(session.image_path).stat()
    except OSError:
        return None, None
    return info.st_uid, info.st_gid
