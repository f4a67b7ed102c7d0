"""Step 2 of a copy: make a partial copy durable and give it its final name.

The partial file is fsynced, then linked to its final name (a name that exists makes the link
fail: nothing is ever replaced) and its partial name unlinked, and the folder is fsynced so
the new name survives a power cut. Every failure removes the partial file.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from embuffer.safecopy import nofollow


class DestinationExists(Exception):
    """The final name is taken; nothing was overwritten."""


def finish_partial(final: Path, partial: str) -> None:
    """Step 2 for the partial file `partial` written by `write_partial`: make it durable,
    publish it. Split from the writing so one file's fsync can overlap the next file's copy."""
    with nofollow.folder(final.parent) as folder_fd:
        try:
            fd = nofollow.open_in(folder_fd, partial, os.O_RDONLY)
            try:
                os.fsync(fd)  # flushes every dirty page of the file, whichever fd wrote them
            finally:
                os.close(fd)
        except BaseException:
            unlink_quietly(folder_fd, partial)
            raise
        publish_in(folder_fd, partial, final.name, shown=str(final))


def publish_in(folder_fd: int, temp: str, final: str, *, shown: str = "") -> None:
    """Give `temp` its final name in the folder `folder_fd`, never replacing an existing
    file, and make the name durable."""
    try:
        os.link(temp, final, src_dir_fd=folder_fd, dst_dir_fd=folder_fd, follow_symlinks=False)
    except FileExistsError:
        unlink_quietly(folder_fd, temp)
        raise DestinationExists(shown or final) from None
    except OSError as error:
        # Filesystems without hard links (some CIFS/NFS exports): check, then rename. The
        # service lock makes this embuffer the only writer of these names.
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            unlink_quietly(folder_fd, temp)
            raise
        if exists_in(folder_fd, final):
            unlink_quietly(folder_fd, temp)
            raise DestinationExists(shown or final) from None
        os.rename(temp, final, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    else:
        os.unlink(temp, dir_fd=folder_fd)
    os.fsync(folder_fd)


def exists_in(folder_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def unlink_quietly(folder_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        nofollow.remove_in(folder_fd, name)
