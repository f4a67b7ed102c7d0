"""Room on a filesystem, asked before a copy starts.

A copy that cannot fit is never started: half a movie would only take the room of the next
one and end in ENOSPC, again at every poll. Two kinds of write are told apart:

- a *placed* movie (its Leginon image found, its session folder decided) and what belongs
  to it (its sidecar, its session's references) may use the filesystem to the last bytes
  (its size and a small slack for the filesystem's own metadata);
- every other write (quarantine, the sidecar of a quarantined file) stops while the
  filesystem it goes to would fall below the reserve, `[buffer] reserve_percent` of its
  size, which is kept for placed movies. The file then simply stays on the camera share.

The filesystem is the one the write goes to (quarantine may have one of its own), asked
through the nearest folder that exists: a session folder may not be made yet.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from embuffer.safecopy import nofollow
from embuffer.safecopy.hashing import tree_size

# Journal `reason` of a row whose file waits on the camera share for room (status, metrics).
NO_ROOM_PREFIX = "no room: "
# Blocks, inodes and folders a copy needs besides its bytes.
SLACK_BYTES = 1 << 20
SLACK_FRACTION = 0.01


@dataclass(frozen=True)
class Usage:
    """One filesystem as an unprivileged writer sees it (root's own reserve left out)."""

    folder: Path  # the folder that was asked
    device: int
    total: int
    free: int

    def reserve(self, percent: float) -> int:
        return int(self.total * percent / 100.0)


class NoRoom(Exception):
    """A write that would not fit, or would eat into the reserve; nothing was written."""


def usage(folder: Path) -> Usage:
    """The filesystem of `folder`, or of its nearest existing ancestor."""
    here = Path(os.path.abspath(folder))
    while True:
        try:
            stats = os.statvfs(here)
            device = os.stat(here).st_dev
        except (FileNotFoundError, NotADirectoryError):
            if here.parent == here:
                raise
            here = here.parent
            continue
        return Usage(here, device, stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize)


def needed_bytes(nbytes: int) -> int:
    return nbytes + int(nbytes * SLACK_FRACTION) + SLACK_BYTES


def size_of(path: Path) -> int:
    """The bytes a copy of `path` (a file, or a folder of frames) will write."""
    if nofollow.is_folder(path):
        return tree_size(path)
    return nofollow.lstat(path).st_size


def room_problem(folder: Path, nbytes: int, reserve_percent: float, *, placed: bool) -> str | None:
    """None when `nbytes` may be written below `folder` now; else why not, for a person."""
    fs = usage(folder)
    needed = needed_bytes(nbytes)
    reserve = 0 if placed else fs.reserve(reserve_percent)
    if fs.free - needed >= reserve:
        return None
    if placed:
        return (
            f"{nbytes} bytes do not fit on the filesystem of {fs.folder} "
            f"({fs.free} bytes free); the file waits on the camera share"
        )
    return (
        f"{nbytes} bytes would leave the filesystem of {fs.folder} below its reserve for "
        f"placed movies ({fs.free} bytes free, {reserve} kept: reserve_percent "
        f"{reserve_percent:g}); the file waits on the camera share"
    )


def ensure_room(folder: Path, nbytes: int, reserve_percent: float, *, placed: bool) -> None:
    problem = room_problem(folder, nbytes, reserve_percent, placed=placed)
    if problem is not None:
        raise NoRoom(problem)
