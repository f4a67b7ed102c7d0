"""What `embuffer status` reports, computed from the journal with indexed queries only.

Kept cheap on purpose (a journal of a million movies answers in well under a second): counts
come from the state index, rates from the events index over a recent window. The one line
about leginondb (its `frames name` index, frames_index.py) is asked at most every ten minutes.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from embuffer import journal as j
from embuffer.config import Config
from embuffer.ingest.holds import failing_files
from embuffer.journal import Journal, events
from embuffer.journal import queries as q
from embuffer.journal.escape import one_line
from embuffer.leginon.frames_index import STATUS_RECHECK_SECONDS, report_line
from embuffer.report.space import SpaceStatus, space_lines, space_status

RATE_WINDOW_SECONDS = 600.0


@dataclass
class CameraStatus:
    host: str
    folder: str
    seen: int = 0
    in_flight: int = 0
    moved: int = 0
    quarantined: int = 0
    last_file: str | None = None
    last_file_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    bytes_per_second: float = 0.0
    # files kept on the camera share after repeated unexpected failures (holds.py)
    held: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ArchiveStatus:
    primary: str | None
    paused: bool = False
    paused_reason: str | None = None
    paused_since: float | None = None
    backlog_files: int = 0
    backlog_bytes: int = 0
    oldest_backlog_age_seconds: float | None = None
    archived: int = 0
    last_archived_at: float | None = None
    last_error: str | None = None


@dataclass
class BufferStatus:
    root: str
    total_bytes: int = 0
    used_bytes: int = 0
    used_percent: float = 0.0
    intake_bytes_per_hour: float = 0.0
    hours_until_full: float | None = None
    outage: dict[str, Any] | None = None


@dataclass
class Status:
    cameras: list[CameraStatus] = field(default_factory=list)
    archive: ArchiveStatus | None = None
    buffer: BufferStatus | None = None
    # whether leginondb's CameraEMData has a `frames name` index (and, if not, how to add it)
    frames_name_index: str | None = None
    # quarantine and the reserve kept for placed movies (report/space.py)
    space: SpaceStatus | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def camera_status(journal: Journal, host: str, folder: str, now: float) -> CameraStatus:
    status = CameraStatus(host=host, folder=folder)
    for state, count in q.state_counts(journal.db, host).items():
        status.seen += count
        if state in j.ACTIVE_INGEST_STATES:
            status.in_flight += count
        elif state in (j.DONE, j.PURGED):
            status.moved += count
        elif state == j.QUARANTINED:
            status.quarantined += count
    last = events.latest_event(journal.db, "ingested", host)
    if last:
        status.last_file_at, status.last_file = last[0], last[1]
    # one indexed lookup per error kind: an IN list would make SQLite scan every event
    errors = [
        events.latest_event(journal.db, action, host)
        for action in (
            "error",
            "db_error",
            "verify_failed",
            "unexpected_error",
            "placement_refused",
            "source_busy",
            "unsafe_name",
        )
    ]
    latest = max((row for row in errors if row), key=lambda row: row[0], default=None)
    if latest:
        status.last_error_at, status.last_error = latest[0], latest[1]
    recent = events.bytes_since(journal.db, "ingested", host, now - RATE_WINDOW_SECONDS)
    status.bytes_per_second = recent / RATE_WINDOW_SECONDS
    status.held = [
        {
            "file": held.source_path,
            "failures": held.failures,
            "since": held.held_since,
            "error": held.last_error,
        }
        for held in failing_files(journal, host)
        if held.held_since is not None
    ]
    return status


def archive_status(config: Config, journal: Journal, now: float) -> ArchiveStatus:
    status = ArchiveStatus(primary=str(config.archive.primary) if config.archive.primary else None)
    pause = journal.get_setting(q.ARCHIVE_PAUSE_KEY)
    if pause:
        status.paused = True
        status.paused_reason = pause.get("reason")
        status.paused_since = pause.get("since")
    backlog = q.archive_backlog(journal.db)
    status.backlog_files, status.backlog_bytes = backlog.files, backlog.bytes
    if backlog.oldest_verified_at is not None:
        status.oldest_backlog_age_seconds = now - backlog.oldest_verified_at
    status.archived = q.archived_count(journal.db)
    archived = events.latest_event(journal.db, "archived")
    status.last_archived_at = archived[0] if archived else None
    error = events.latest_event(journal.db, "archive_error")
    status.last_error = error[1] if error else None
    return status


def buffer_status(config: Config, journal: Journal, now: float) -> BufferStatus:
    status = BufferStatus(root=str(config.buffer_root))
    try:
        usage = shutil.disk_usage(config.buffer_root)
    except OSError:
        return status
    status.total_bytes, status.used_bytes = usage.total, usage.used
    status.used_percent = 100.0 * usage.used / usage.total if usage.total else 0.0
    status.intake_bytes_per_hour = events.intake_bytes_per_hour(journal.db, now)
    if status.intake_bytes_per_hour > 0:
        status.hours_until_full = usage.free / status.intake_bytes_per_hour
    status.outage = journal.get_setting(q.OUTAGE_KEY)
    return status


def collect(config: Config, journal: Journal) -> Status:
    now = time.time()
    return Status(
        cameras=[camera_status(journal, c.host, str(c.path), now) for c in config.cameras],
        archive=archive_status(config, journal, now),
        buffer=buffer_status(config, journal, now),
        frames_name_index=report_line(config.db_credentials, max_age=STATUS_RECHECK_SECONDS),
        space=space_status(config, journal, now),
    )


def ago(at: float | None, now: float) -> str:
    """'12 s ago', '5 min ago', '3.2 h ago' or 'never'."""
    if at is None:
        return "never"
    seconds = max(0.0, now - at)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def size(nbytes: float) -> str:
    """Bytes in binary units: '512 B', '1.5 GiB'."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    value, index = float(nbytes), 0
    while abs(value) >= 1024 and index < len(units) - 1:
        value /= 1024
        index += 1
    return f"{int(value)} B" if index == 0 else f"{value:.1f} {units[index]}"


def held_lines(camera: CameraStatus, now: float) -> list[str]:
    """One line per held file: a person has to look at these."""
    return [
        f"  HELD on the camera share: {held['file']} ({held['failures']} failures, held "
        f"{ago(held['since'], now)}): {held['error']}"
        for held in camera.held
    ]


def render(status: Status) -> str:
    now = time.time()
    lines = []
    for camera in status.cameras:
        lines.append(f"camera {camera.host} ({camera.folder})")
        lines.append(
            f"  seen {camera.seen}, in flight {camera.in_flight}, moved {camera.moved}, "
            f"quarantined {camera.quarantined}, {size(camera.bytes_per_second)}/s"
        )
        lines.append(f"  last file: {camera.last_file or '-'} ({ago(camera.last_file_at, now)})")
        if camera.last_error:
            lines.append(f"  last error: {camera.last_error} ({ago(camera.last_error_at, now)})")
        lines.extend(held_lines(camera, now))
    if status.archive is not None:
        archive = status.archive
        state = "running"
        if archive.paused:
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(archive.paused_since or 0))
            state = f"archive paused: {archive.paused_reason} since {since}"
        lines.append(f"archive to {archive.primary or '(no primary configured)'}: {state}")
        oldest = (
            "-"
            if archive.oldest_backlog_age_seconds is None
            else f"{archive.oldest_backlog_age_seconds / 3600:.1f} h"
        )
        lines.append(
            f"  backlog {archive.backlog_files} files, {size(archive.backlog_bytes)}, "
            f"oldest {oldest}; archived {archive.archived}"
        )
        if archive.last_error:
            lines.append(f"  last error: {archive.last_error}")
    if status.buffer is not None:
        buffer = status.buffer
        forecast = (
            "no intake"
            if buffer.hours_until_full is None
            else f"{buffer.hours_until_full:.1f} h until full"
        )
        lines.append(
            f"buffer {buffer.root}: {buffer.used_percent:.1f} % used, "
            f"intake {size(buffer.intake_bytes_per_hour)}/h, {forecast}"
        )
        if buffer.outage:
            lines.append(
                f"  outage since {buffer.outage.get('start')}: "
                f"{buffer.outage.get('reason')} ({buffer.outage.get('by')})"
            )
    if status.space is not None:
        lines.extend(space_lines(status.space, size))
    if status.frames_name_index:
        lines.append(f"leginondb: {status.frames_name_index}")
    # file names, reasons and errors come from camera shares and leginondb: one line each
    return "\n".join(one_line(line) for line in lines)
