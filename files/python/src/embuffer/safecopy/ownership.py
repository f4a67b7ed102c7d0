"""Who owns what the copy engine creates: the session's owner, group and modes, set through
the new file's or folder's own descriptor (umask-proof, and no planted link redirects it)."""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from embuffer.safecopy import nofollow


@dataclass(frozen=True)
class Ownership:
    uid: int | None = None
    gid: int | None = None
    file_mode: int = 0o664
    dir_mode: int = 0o2775


def apply_ownership(fd: int, ownership: Ownership, mode: int) -> None:
    # chmod before chown: once the file belongs to the session owner, changing its mode
    # would need CAP_FOWNER, which the service does not hold. Linux keeps a folder's setgid
    # bit across a chown; a filesystem that drops it gets the mode again, where allowed.
    os.fchmod(fd, mode)
    if ownership.uid is not None or ownership.gid is not None:
        uid = -1 if ownership.uid is None else ownership.uid
        gid = -1 if ownership.gid is None else ownership.gid
        os.fchown(fd, uid, gid)
        if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
            with contextlib.suppress(PermissionError):  # without CAP_FOWNER: keep what we have
                os.fchmod(fd, mode)


def make_folders(folder: Path, ownership: Ownership) -> None:
    """Create missing folders down to `folder`, each owned like the session (umask-proof),
    through a walk no planted link can redirect."""
    fd = nofollow.open_folder(
        folder,
        create_mode=ownership.dir_mode,
        on_create=lambda made: apply_ownership(made, ownership, ownership.dir_mode),
    )
    os.close(fd)
