"""The space budget in `embuffer status`: quarantine's size and oldest file, each filesystem's
free bytes against its reserve, and the camera files that wait on the share for room, with
the cause named (safecopy/space.py, ingest/room.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from embuffer.config import Config
from embuffer.journal import Journal, room_waits
from embuffer.journal import queries as q
from embuffer.safecopy.space import usage


@dataclass
class SpaceStatus:
    quarantine: str
    reserve_percent: float
    quarantine_files: int = 0
    quarantine_bytes: int = 0
    oldest_quarantined_age_seconds: float | None = None
    # one entry per filesystem: what lives there, its free bytes and its reserve
    filesystems: list[dict[str, Any]] = field(default_factory=list)
    # camera -> {"quarantine": files stopped at the reserve, "buffer": movies that do not fit}
    waiting: dict[str, dict[str, int]] = field(default_factory=dict)


def filesystems(config: Config) -> list[dict[str, Any]]:
    """The buffer's filesystem and quarantine's, once each when they are the same."""
    found: dict[int, dict[str, Any]] = {}
    for what, folder in (("buffer", config.buffer_root), ("quarantine", config.quarantine)):
        try:
            fs = usage(folder)
        except OSError:
            continue
        entry = found.setdefault(
            fs.device,
            {
                "holds": [],
                "folder": str(folder),
                "free_bytes": fs.free,
                "reserve_bytes": fs.reserve(config.reserve_percent),
            },
        )
        entry["holds"].append(what)
        entry["below_reserve"] = entry["free_bytes"] < entry["reserve_bytes"]
    return list(found.values())


def space_status(config: Config, journal: Journal, now: float) -> SpaceStatus:
    status = SpaceStatus(quarantine=str(config.quarantine), reserve_percent=config.reserve_percent)
    for count, nbytes in q.quarantine_totals(journal.db).values():
        status.quarantine_files += count
        status.quarantine_bytes += nbytes
    oldest = room_waits.oldest_quarantined_at(journal.db)
    if oldest is not None:
        status.oldest_quarantined_age_seconds = max(0.0, now - oldest)
    status.filesystems = filesystems(config)
    for (camera, kind), count in room_waits.waiting_for_room(journal.db).items():
        status.waiting.setdefault(camera, {})[kind] = count
    return status


# the words that mark a line a person must act on (the console shows it in red)
ALARMS = ("QUARANTINE STOPPED", "BUFFER FULL", "BELOW THE RESERVE")


def is_alarm(line: str) -> bool:
    return any(alarm in line for alarm in ALARMS)


def _waiting(space: SpaceStatus, kind: str) -> tuple[int, str]:
    counts = {camera: kinds.get(kind, 0) for camera, kinds in space.waiting.items()}
    cameras = ", ".join(f"{camera} {count}" for camera, count in sorted(counts.items()) if count)
    return sum(counts.values()), cameras


def space_lines(space: SpaceStatus, size: Any) -> list[str]:
    """Lines for the plain status; `size` formats bytes (status.size)."""
    oldest = space.oldest_quarantined_age_seconds
    age = "-" if oldest is None else f"{oldest / 86400:.1f} days"
    lines = [
        f"quarantine {space.quarantine}: {space.quarantine_files} files, "
        f"{size(space.quarantine_bytes)}, oldest {age}"
    ]
    for fs in space.filesystems:
        lines.append(
            f"  filesystem of {' and '.join(fs['holds'])}: {size(fs['free_bytes'])} free, "
            f"{size(fs['reserve_bytes'])} reserved for placed movies "
            f"(reserve_percent {space.reserve_percent:g})"
            + (": BELOW THE RESERVE" if fs["below_reserve"] else "")
        )
    stopped, cameras = _waiting(space, "quarantine")
    if stopped:
        lines.append(
            f"  QUARANTINE STOPPED at the reserve: {stopped} unmatched file(s) wait on the "
            f"camera share ({cameras}); free room (purge, `embuffer quarantine release/remove`) "
            "or fix what sends them to quarantine"
        )
    full, cameras = _waiting(space, "buffer")
    if full:
        lines.append(
            f"  BUFFER FULL: {full} placed movie(s) do not fit and wait on the camera share "
            f"({cameras}); see the archive backlog and purge"
        )
    return lines
