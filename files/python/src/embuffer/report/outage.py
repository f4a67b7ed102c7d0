"""Outage bookkeeping on the buffer server: when primary storage is down.

`embuffer outage start` records who declared the outage, why, when, and where Leginon writes
new sessions meanwhile; `embuffer outage end` closes it; `embuffer outage report` says what
happened during it: movies ingested, sessions created whose images live in the outage
location (they stay where Leginon recorded them), the sessions whose frames Appion would not
find now (with the folder it looks in), and the backlog still to reach primary.
Every command says whether it changed anything, so the outage playbooks stay idempotent.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from embuffer.journal import Journal, events
from embuffer.journal import queries as q
from embuffer.leginon.db import LeginonDB
from embuffer.leginon.lookups import sessions_created_in
from embuffer.report.frame_lookup import sessions_appion_cannot_find


def start(journal: Journal, reason: str, by: str, location: str) -> bool:
    """Record an outage; False when this very outage is already recorded."""
    current = journal.get_setting(q.OUTAGE_KEY)
    if current and current.get("reason") == reason and current.get("location") == location:
        return False
    record = {
        "start": current["start"] if current else time.time(),
        "reason": reason,
        "by": by,
        "location": location,
    }
    journal.set_setting(q.OUTAGE_KEY, record)
    journal.event("outage_started", detail=f"{reason} (by {by}; new sessions in {location})")
    return True


def end(journal: Journal) -> dict[str, Any] | None:
    """Close the current outage and keep it in the history; None when there is none."""
    current = journal.get_setting(q.OUTAGE_KEY)
    if not current:
        return None
    current["end"] = time.time()
    history = journal.get_setting(q.OUTAGE_HISTORY_KEY) or []
    history.append(current)
    with journal.transaction():
        journal.set_setting(q.OUTAGE_HISTORY_KEY, history)
        journal.delete_setting(q.OUTAGE_KEY)
        journal.event("outage_ended", detail=current.get("reason", ""))
    return dict(current)


def last_outage(journal: Journal) -> dict[str, Any] | None:
    current = journal.get_setting(q.OUTAGE_KEY)
    if current:
        return dict(current)
    history = journal.get_setting(q.OUTAGE_HISTORY_KEY) or []
    return dict(history[-1]) if history else None


@dataclass
class OutageReport:
    active: bool
    start: float | None = None
    end: float | None = None
    reason: str | None = None
    by: str | None = None
    location: str | None = None
    movies_ingested: int = 0
    bytes_ingested: int = 0
    movies: list[str] = field(default_factory=list)
    sessions_in_outage_location: list[dict[str, Any]] = field(default_factory=list)
    sessions_appion_cannot_find: list[dict[str, Any]] = field(default_factory=list)
    backlog_files: int = 0
    backlog_bytes: int = 0
    database_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _render_unfound(self) -> list[str]:
        lines = [
            "  sessions whose frames Appion would not find now: "
            f"{len(self.sessions_appion_cannot_find)}"
            + (
                " (during the outage Appion reads the session frame path; outage-off.yml "
                "sends it back to the buffer)"
                if self.active and self.sessions_appion_cannot_find
                else ""
            )
        ]
        for entry in self.sessions_appion_cannot_find:
            lines.append(
                f"    {entry['session']}: Appion looks in {entry['appion_path']} "
                f"({entry['appion_source']}); {entry['missing']} movie(s) are in "
                f"{', '.join(entry['frames_in'])}"
            )
        return lines

    def render(self) -> str:
        def when(at: float | None) -> str:
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "-"

        state = "in progress" if self.active else "ended"
        lines = [
            f"outage ({state}): {self.reason} declared by {self.by}",
            f"  start {when(self.start)}, end {when(self.end)}",
            f"  movies ingested meanwhile: {self.movies_ingested} ({self.bytes_ingested} bytes)",
            f"  sessions whose images live in {self.location}: "
            f"{len(self.sessions_in_outage_location)}",
        ]
        lines += [f"    {s['name']}: {s['image_path']}" for s in self.sessions_in_outage_location]
        lines += self._render_unfound()
        if self.database_error:
            lines.append(f"  (sessions unknown: {self.database_error})")
        lines.append(
            f"  backlog to primary: {self.backlog_files} files, {self.backlog_bytes} bytes"
        )
        return "\n".join(lines)


def report(journal: Journal, db: LeginonDB | None) -> OutageReport | None:
    outage = last_outage(journal)
    if outage is None:
        return None
    finish = outage.get("end") or time.time()
    result = OutageReport(
        active="end" not in outage,
        start=outage["start"],
        end=outage.get("end"),
        reason=outage.get("reason"),
        by=outage.get("by"),
        location=outage.get("location"),
    )
    rows = events.ingested_between(journal.db, outage["start"], finish)
    result.movies = [dest for dest, _ in rows]
    result.movies_ingested = len(rows)
    result.bytes_ingested = sum(nbytes for _, nbytes in rows)
    backlog = q.archive_backlog(journal.db)
    result.backlog_files, result.backlog_bytes = backlog.files, backlog.bytes
    if db is not None:
        try:
            _add_leginondb_findings(result, journal, db, outage["start"], finish)
        except Exception as error:  # noqa: BLE001 - the report still stands without sessions
            result.database_error = str(error)
    return result


def _add_leginondb_findings(
    result: OutageReport, journal: Journal, db: LeginonDB, start: float, finish: float
) -> None:
    """The sessions created in the outage location, and those Appion would not find."""
    if result.location:
        result.sessions_in_outage_location = [
            {
                "name": str(row["name"]),
                "image_path": str(row["image_path"]),
                "created": str(row["created"]),
            }
            for row in sessions_created_in(db, start, finish, result.location)
        ]
    result.sessions_appion_cannot_find = sessions_appion_cannot_find(journal.db, db, start, finish)
