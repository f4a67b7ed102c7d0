"""What a buffer copy was when its bytes went to primary, and whether it is still that.

Size and mtime are not enough: a session owner can rewrite bytes in place and put the mtime
back (`touch -r`, `cp -p`, `rsync -t`). The ctime is set by the kernel on every change of
bytes, owner, mode, links or extended attributes, and no user can set it; with the device
and inode (a file renamed over the name is another inode) it tells purge whether the copy it
is about to remove is the one the archive read. For a DE folder the newest ctime of the
folder and its members stands for them all: a member written, added, renamed or removed
changes one of those ctimes to "now", newer than any recorded.

The kernel stamps ctimes from a clock that ticks every 1 to 10 ms, so a change in the same
tick as the archive's look would leave the ctime as recorded. A ctime younger than
RECENT_CTIME_NS at that look is therefore not recorded (NULL): purge re-hashes such a copy
first, as it does for rows archived before these columns existed. (The window is short so
that a movie archived right after its ingest still gets one: the ingest's last change of it,
its publication, is usually older than that by then.)
"""

from __future__ import annotations

import stat
import time
from dataclasses import dataclass
from pathlib import Path

from embuffer.journal import Movie
from embuffer.safecopy import nofollow

# A ctime this close to the moment it was read could still be shared by a change right after:
# ten ticks of the slowest kernel clock (HZ=100).
RECENT_CTIME_NS = 100_000_000


@dataclass(frozen=True)
class BufferIdentity:
    device: int
    inode: int
    ctime_ns: int
    mtime_ns: int
    size: int  # bytes of the file, or of the folder's members
    ctime_trusted: bool = True  # False: too recent to vouch for the bytes (module notes)

    def columns(self) -> dict[str, int | None]:
        """The journal columns that record it (an untrusted ctime is recorded as none)."""
        return {
            "buffer_device": self.device,
            "buffer_inode": self.inode,
            "buffer_ctime_ns": self.ctime_ns if self.ctime_trusted else None,
            "buffer_mtime_ns": self.mtime_ns,
        }

    def differences(self, recorded: BufferIdentity) -> list[str]:
        """What changed since `recorded`, in words (empty when nothing did)."""
        changed = []
        if (self.device, self.inode) != (recorded.device, recorded.inode):
            changed.append("another file under its name")
        if self.size != recorded.size:
            changed.append(f"{self.size} bytes, archived with {recorded.size}")
        if self.mtime_ns != recorded.mtime_ns:
            changed.append("mtime")
        if not self.ctime_trusted or self.ctime_ns != recorded.ctime_ns:
            changed.append("ctime")
        return changed


class NotAMovie(OSError):
    """The name holds neither a regular file nor a folder (a link, a FIFO)."""


def current(path: Path) -> BufferIdentity:
    """The identity of the buffer copy at `path` now, read without following any link."""
    now = time.time_ns()
    info = nofollow.lstat(path)
    newest_ctime, size = info.st_ctime_ns, info.st_size
    if stat.S_ISDIR(info.st_mode):
        size = 0
        for member in nofollow.regular_files(path):
            member_info = nofollow.lstat(path / member)
            newest_ctime = max(newest_ctime, member_info.st_ctime_ns)
            size += member_info.st_size
    elif not stat.S_ISREG(info.st_mode):
        raise NotAMovie(f"buffer copy {path} is not a regular file or folder")
    trusted = now - newest_ctime >= RECENT_CTIME_NS
    return BufferIdentity(info.st_dev, info.st_ino, newest_ctime, info.st_mtime_ns, size, trusted)


def recorded(movie: Movie) -> BufferIdentity | None:
    """The identity the archive recorded, or None when the row has none to compare with (an
    earlier release archived it, or the archive did not read the copy it compared)."""
    if None in (movie.buffer_device, movie.buffer_inode, movie.buffer_ctime_ns, movie.size):
        return None
    return BufferIdentity(
        int(movie.buffer_device or 0),
        int(movie.buffer_inode or 0),
        int(movie.buffer_ctime_ns or 0),
        int(movie.buffer_mtime_ns or 0),
        int(movie.size or 0),
    )


def unrecorded() -> dict[str, int | None]:
    """The columns that say "no identity recorded": purge re-hashes before it removes."""
    return {"buffer_device": None, "buffer_inode": None, "buffer_ctime_ns": None}


def superseded_name(name: str, at: float) -> str:
    """The name an earlier primary copy keeps beside the new one (its suffix changes, so
    nothing that looks for movies by suffix takes it for a second movie)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at))
    return f"{name}.superseded-{stamp}"
