"""`embuffer status` for the person at the console: one screen of rich tables.

The numbers are the ones status.collect computes (the same ones `--json` prints). On a
terminal they are drawn as tables (and `--watch` redraws in place); piped or captured, the
plain text of status.render is printed instead, so logs and greps keep their lines.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from embuffer.config import Config
from embuffer.journal import Journal, events
from embuffer.journal.escape import one_line
from embuffer.report.space import is_alarm, space_lines
from embuffer.report.status import Status, ago, collect, render, size

ERROR_ACTIONS = (
    "error",
    "db_error",
    "verify_failed",
    "archive_error",
    "reference_error",
    "unexpected_error",
    "placement_refused",
    "held",
)
RECENT_ERRORS = 5
HOURS_TO_FULL_WARNING = 12.0


@dataclass(frozen=True)
class RecentError:
    at: float
    camera: str
    action: str
    detail: str


def recent_errors(journal: Journal, limit: int = RECENT_ERRORS) -> list[RecentError]:
    """The newest error events (each action read through the events_action_at index)."""
    found: list[RecentError] = []
    for action in ERROR_ACTIONS:
        for at, camera, detail in events.recent_events(journal.db, action, limit):
            found.append(RecentError(at, camera, action, detail))
    found.sort(key=lambda error: error.at, reverse=True)
    return found[:limit]


def _clock(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at or 0))


def camera_table(status: Status, now: float) -> Table:
    table = Table(title="Cameras -> buffer", title_justify="left", expand=True)
    for column in ("camera", "state", "last file", "rate", "in flight", "moved", "quarantined"):
        table.add_column(
            column,
            justify="right" if column in ("rate", "in flight", "moved", "quarantined") else "left",
        )
    for camera in status.cameras:
        if camera.held:
            state = Text(f"{len(camera.held)} held", style="bold red")
        elif camera.last_error and (camera.last_error_at or 0) >= (camera.last_file_at or 0):
            state = Text("failing", style="bold red")
        elif camera.in_flight:
            state = Text("copying", style="green")
        else:
            state = Text("idle", style="dim")
        table.add_row(
            f"{camera.host}\n[dim]{camera.folder}[/dim]",
            state,
            # the Leginon name is what a person looks for; the folder is the session's
            # a name is never read as markup (Text, not a markup string) nor as control codes
            Text.assemble(
                one_line(os.path.basename(camera.last_file or "-")),
                "\n",
                (ago(camera.last_file_at, now), "dim"),
            ),
            f"{size(camera.bytes_per_second)}/s",
            str(camera.in_flight),
            str(camera.moved),
            Text(str(camera.quarantined), style="yellow" if camera.quarantined else ""),
        )
    return table


def archive_table(status: Status, now: float) -> Table:
    table = Table(title="Buffer -> primary", title_justify="left", expand=True)
    for column in ("primary", "state", "backlog", "oldest", "archived", "last archived"):
        table.add_column(column)
    archive = status.archive
    if archive is None:
        return table
    if archive.paused:
        state = Text(
            one_line(
                f"archive paused: {archive.paused_reason} since {_clock(archive.paused_since)}"
            ),
            style="bold yellow",
        )
    elif archive.last_error:
        state = Text(one_line(f"retrying: {archive.last_error}"), style="red")
    else:
        state = Text("running", style="green")
    oldest = archive.oldest_backlog_age_seconds
    table.add_row(
        archive.primary or "(no primary configured)",
        state,
        f"{archive.backlog_files} files, {size(archive.backlog_bytes)}",
        "-" if oldest is None else f"{oldest / 3600:.1f} h",
        str(archive.archived),
        ago(archive.last_archived_at, now),
    )
    return table


def buffer_table(status: Status) -> Table:
    table = Table(title="Buffer filesystem", title_justify="left", expand=True)
    for column in ("root", "used", "intake", "forecast", "outage"):
        table.add_column(column)
    buffer = status.buffer
    if buffer is None:
        return table
    if buffer.hours_until_full is None:
        forecast = Text("no intake", style="dim")
    else:
        warn = buffer.hours_until_full < HOURS_TO_FULL_WARNING
        forecast = Text(
            f"{buffer.hours_until_full:.1f} h until full", style="bold red" if warn else ""
        )
    outage = Text("-")
    if buffer.outage:
        outage = Text(
            one_line(
                f"outage since {_clock(buffer.outage.get('start'))}: "
                f"{buffer.outage.get('reason')} ({buffer.outage.get('by')})"
            ),
            style="bold yellow",
        )
    table.add_row(
        buffer.root,
        f"{buffer.used_percent:.1f} % of {size(buffer.total_bytes)}",
        f"{size(buffer.intake_bytes_per_hour)}/h",
        forecast,
        outage,
    )
    return table


def errors_table(errors: list[RecentError], now: float) -> Table:
    table = Table(title="Recent errors", title_justify="left", expand=True)
    for column in ("when", "camera", "what", "detail"):
        table.add_column(column, overflow="fold")
    for error in errors:
        table.add_row(
            ago(error.at, now), error.camera or "-", error.action, Text(one_line(error.detail))
        )
    if not errors:
        table.add_row("-", "-", "none", "")
    return table


def held_table(status: Status, now: float) -> Table:
    table = Table(title="Held on the camera share", title_justify="left", expand=True)
    for column in ("camera", "file", "failures", "held", "last error"):
        table.add_column(column, overflow="fold")
    for camera in status.cameras:
        for held in camera.held:
            table.add_row(
                camera.host,
                Text(one_line(held["file"])),
                str(held["failures"]),
                ago(held["since"], now),
                Text(one_line(held["error"]), style="red"),
            )
    return table


def screen(status: Status, errors: list[RecentError], now: float) -> RenderableType:
    held = [held_table(status, now)] if any(camera.held for camera in status.cameras) else []
    # whether leginondb can find a frames name without reading a whole time window
    index_note = (
        [Text(f"leginondb: {status.frames_name_index}", style="dim")]
        if status.frames_name_index
        else []
    )
    # quarantine and the reserve: a stopped quarantine or a full buffer is shown in bold
    space = [
        Text(one_line(line), style="bold red" if is_alarm(line) else "")
        for line in (space_lines(status.space, size) if status.space else [])
    ]
    return Group(
        camera_table(status, now),
        *held,
        archive_table(status, now),
        buffer_table(status),
        *space,
        errors_table(errors, now),
        *index_note,
        Text(f"as of {_clock(now)}", style="dim"),
    )


def show_status(
    config: Config,
    journal: Journal,
    *,
    as_json: bool,
    watch: float,
    stop: threading.Event | None = None,
    stream: TextIO | None = None,
) -> int:
    """Print the status once, or every `watch` seconds until `stop` is set (or Ctrl-C)."""
    out = stream if stream is not None else sys.stdout
    stop = stop if stop is not None else threading.Event()
    console = Console(file=out)
    fancy = console.is_terminal and not as_json

    def once() -> None:
        status = collect(config, journal)
        if as_json:
            print(json.dumps(status.as_dict(), indent=2, default=str), file=out, flush=True)
        elif fancy:
            console.print(screen(status, recent_errors(journal), time.time()))
        else:
            print(render(status), file=out, flush=True)

    if not watch:
        once()
        return 0
    try:
        if fancy:
            # the alternate screen, like top: refreshes in place and leaves no scrollback behind
            with Live(console=console, auto_refresh=False, screen=True) as live:
                while True:
                    status = collect(config, journal)
                    live.update(screen(status, recent_errors(journal), time.time()), refresh=True)
                    if stop.wait(watch):
                        return 0
        while True:
            once()
            if stop.wait(watch):
                return 0
    except KeyboardInterrupt:
        return 0
