"""Where a session's frames go on this buffer, and what Leginon and Appion are told.

The folder is the session's buffer frame path, computed exactly as Appion computes it from
the camera's newest BufferHostData row, or the BufferFramePathData row already recorded for
the session; a folder outside the buffer root is refused, never followed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embuffer.leginon.db import LeginonDB, SchemaMissing
from embuffer.leginon.matching import Session
from embuffer.leginon.names import contained


def derive_buffer_frame_path(image_path: str, base_path: str, append_full_head: bool) -> str | None:
    """The buffer path rule on strings, exactly as Appion applies it."""
    if "leginon" not in image_path:
        return None
    head, _, tail = image_path.rpartition("leginon")
    if append_full_head:
        return base_path.rstrip("/") + head.rstrip("/") + tail
    return base_path.rstrip("/") + tail


def newest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row with the highest DEF_id. Picked here rather than by `ORDER BY DEF_id DESC
    LIMIT 1`, which lets MariaDB walk the primary key backwards through a whole table when no
    row matches; the rows of one camera or one session are a handful."""
    return max(rows, key=lambda row: int(row["id"]), default=None)


@dataclass(frozen=True)
class BufferHost:
    row_id: int
    hostname: str
    base_path: str
    disabled: bool
    append_full_head: bool


def newest_buffer_host(
    db: LeginonDB, instrument_id: int, *, enabled_only: bool = False
) -> BufferHost | None:
    """The camera's newest BufferHostData row (any buffer host), as Leginon's transfer reads
    it; with `enabled_only`, its newest enabled row, as Appion reads it (a NULL `disabled` is
    not enabled there). None when there is none (or no BufferHostData table: the site never
    had a buffer)."""
    if not db.has_table("BufferHostData", assumed="no camera uses a buffer server"):
        return None
    flag = db.column_or_null(
        "BufferHostData", "b", "append full head", assumed="default (not append full head) mode"
    )
    rows = db.rows(
        "SELECT b.`DEF_id` AS id, b.`buffer hostname` AS hostname, "
        f"b.`buffer base path` AS base_path, b.`disabled`, {flag} AS append_full_head "
        "FROM `BufferHostData` b WHERE b.`REF|InstrumentData|ccdcamera` = %s"
        + (" AND b.`disabled` = 0" if enabled_only else ""),
        (instrument_id,),
    )
    row = newest(rows)
    if row is None:
        return None
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


def recorded_frame_path_row(
    db: LeginonDB, session_id: int, host_row: int
) -> tuple[int, str] | None:
    """The newest BufferFramePathData row for (session, buffer host row): its id and path."""
    if not db.has_table(
        "BufferFramePathData", assumed="no session has a recorded buffer frame path yet"
    ):
        return None
    rows = db.rows(
        "SELECT `DEF_id` AS id, `buffer frame path` AS path FROM `BufferFramePathData` "
        "WHERE `REF|SessionData|session` = %s AND `REF|BufferHostData|host` = %s",
        (session_id, host_row),
    )
    row = newest(rows)
    return (int(row["id"]), str(row["path"])) if row is not None and row["path"] else None


def recorded_frame_path(db: LeginonDB, session_id: int, host_row: int) -> str | None:
    """The BufferFramePathData path for (session, buffer host row), if any."""
    row = recorded_frame_path_row(db, session_id, host_row)
    return row[1] if row is not None else None


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
    Disabled row (outage mode): the session's BufferFramePathData row for that host row when
    it has one (a session moved by change_buffer_frame_path.py stays where it was moved), else
    the same layout under that row's base path, not registered; `register_outage_sessions`
    records it once the row is enabled again, so Appion's lookup (buffer frame path first
    while enabled) finds these frames after the outage.
    """
    host = newest_buffer_host(db, instrument_id)
    if host is None:
        return Refusal(
            f"camera (InstrumentData {instrument_id}) has no BufferHostData row, so Leginon "
            "sends its frames to the session frame path, not to a buffer: register this "
            "buffer for it (site.yml, embuffer_registration) or take it out of [[camera]]"
        )
    base = host.base_path or buffer_root
    # The session's row for this host row is where Appion looks while the row is enabled,
    # and again once an outage enables it: frames taken during an outage go there too, so a
    # session moved by change_buffer_frame_path.py keeps all its frames in one folder.
    existing = recorded_frame_path(db, session.session_id, host.row_id)
    if existing is not None:
        if not contained(existing, buffer_root):
            return Refusal(
                f"recorded buffer frame path {existing} is outside the buffer root {buffer_root}"
            )
        if host.disabled:
            return Placement(
                existing,
                False,
                "BufferHostData disabled: its BufferFramePathData row",
                host.row_id,
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
