"""Primary's copy of a movie's earlier bytes renamed aside, and never lost on the way.

publish_in (safecopy/publish.py) treats its first name as a throwaway partial: it removes it
when the final name is taken or the link fails. Here the first name is primary's only copy
of bytes the buffer no longer holds, so nothing here ever removes a name that is not also
reachable under the other one:
  - the new name is one that is free: a counter follows the time stamp when a copy was
    already set aside in the same second (or anything else holds that name);
  - the copy is hard-linked to the new name and its old name unlinked only once the link
    exists;
  - where hard links are refused (a DE folder; some CIFS/NFS exports) it is renamed with
    RENAME_NOREPLACE, or, where the kernel or the filesystem has no such rename, renamed
    after a check that the name is free (the service lock makes the archive the only writer
    of these names);
  - any other failure (ENOSPC, EDQUOT, EIO, ENAMETOOLONG) is raised with both names as they
    were: the archive records the error and tries again later.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
from collections.abc import Callable

from embuffer.archive import buffer_identity as ident
from embuffer.safecopy.publish import exists_in

RENAME_NOREPLACE = 1  # linux/fs.h
# what linkat answers where a name cannot get a second link (a folder, a filesystem without
# hard links, a file at its link limit): a rename is tried instead
LINK_REFUSED = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK)
# what renameat2 answers where the kernel or the filesystem lacks RENAME_NOREPLACE
NOREPLACE_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL)
MOST_NAMES_TRIED = 100


def set_aside(folder_fd: int, name: str, at: float) -> str:
    """Rename `name` in folder `folder_fd` to a free `<name>.superseded-<UTC time>[-N]`,
    durably; returns the new name. Raises OSError with `name` untouched when it cannot."""
    stamped = ident.superseded_name(name, at)
    for number in range(1, MOST_NAMES_TRIED + 1):
        aside = stamped if number == 1 else f"{stamped}-{number}"
        try:
            _rename_without_replacing(folder_fd, name, aside)
        except FileExistsError:
            continue
        os.fsync(folder_fd)
        return aside
    raise FileExistsError(
        errno.EEXIST, f"{stamped} and {MOST_NAMES_TRIED - 1} numbered names after it are taken"
    )


def _rename_without_replacing(folder_fd: int, name: str, new: str) -> None:
    try:
        os.link(name, new, src_dir_fd=folder_fd, dst_dir_fd=folder_fd, follow_symlinks=False)
    except OSError as error:
        if error.errno not in LINK_REFUSED:
            raise  # the name taken (FileExistsError), or a failure: nothing was changed
    else:
        os.unlink(name, dir_fd=folder_fd)  # the bytes are under `new` now
        return
    if _rename_noreplace(folder_fd, name, new):
        return
    if exists_in(folder_fd, new):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), new)
    os.rename(name, new, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)


def _rename_noreplace(folder_fd: int, name: str, new: str) -> bool:
    """renameat2(RENAME_NOREPLACE); False where the C library, the kernel or the filesystem
    does not offer it (nothing was changed then)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(folder_fd, os.fsencode(name), folder_fd, os.fsencode(new), RENAME_NOREPLACE):
        number = ctypes.get_errno()
        if number in NOREPLACE_UNSUPPORTED:
            return False
        raise OSError(number, os.strerror(number), new)  # EEXIST: a FileExistsError
    return True


@functools.cache
def _renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    """glibc's renameat2 (2.28 and later), None where the C library has none."""
    function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if function is None:
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    found: Callable[[int, bytes, int, bytes, int], int] = function
    return found
