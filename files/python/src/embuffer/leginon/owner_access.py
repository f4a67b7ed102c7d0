"""Open a file only if a given account could open it itself: the session owner's rights.

References are named by leginondb rows (an image path and a filename), read with the
service's capabilities and handed to the session owner. Whoever can write those rows
(Leginon's shared database account) could otherwise name any file of the host, say
`/root/secrets/leak.mrc`: the file's own mode bits say little, since a folder of mode 0700
above it is what keeps others out. So the path is walked here from `/` one component at a
time, as the kernel would walk it for the owner: search permission on every folder a name is
looked up in (the folders a symbolic link leads through included), read permission on the
file, each judged by the owner's uid and all of their groups (the primary group and every
supplementary group of the group database) and by the POSIX ACL where one is set. The
descriptor returned is the very file judged, so nothing swapped in after the check is read.

The session's gid in leginondb does not count as one of the owner's groups: whoever writes
the rows chooses it. An account the host does not know (one that only the camera's NFS
export knows) has no groups here, so only the owner's and the others' bits can admit it.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
import struct
from dataclasses import dataclass

READ, SEARCH = 4, 1
FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO under a reference's name must not hang the open
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_LINKS = 40  # as the kernel's own limit on links followed in one lookup

# The access ACL as the kernel stores it (linux/posix_acl_xattr.h): a version, then entries
# of (tag, permissions, id), little-endian.
ACL_XATTR = "system.posix_acl_access"
ACL_VERSION = 2
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = (
    0x01,
    0x02,
    0x04,
    0x08,
    0x10,
    0x20,
)
NO_ACL_ERRNOS = (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)


@dataclass(frozen=True)
class Account:
    uid: int
    groups: frozenset[int]


class OwnerCannotRead(PermissionError):
    """The account could not open the file itself: it is not handed over."""


def account_of(uid: int) -> Account:
    """`uid` with the groups a login of that account would have (see the module's doc)."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return Account(uid, frozenset())
    return Account(uid, frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid)))


def open_as(account: Account, path: str) -> int:
    """A read-only descriptor of regular file `path`, if `account` could open it itself;
    else OwnerCannotRead, naming the first folder or file that stops the account."""
    walked: list[str] = []  # the folders the walk is in, for the messages
    pending = list(reversed(_components(os.path.abspath(path))))
    fd = os.open("/", FOLDER_FLAGS)
    links = 0
    try:
        while pending:
            name = pending.pop()
            _require(account, fd, SEARCH, walked, "search")
            step = _step(fd, name, walked, last=not pending)
            if isinstance(step, str):  # a symbolic link: walk on through its target
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, f"{path}: too many symbolic links")
                if step.startswith("/"):
                    os.close(fd)
                    fd = -1
                    fd = os.open("/", FOLDER_FLAGS)
                    walked = []
                pending.extend(reversed(_components(step)))
                continue
            os.close(fd)
            fd = step
            walked = walked[:-1] if name == ".." else [*walked, name]
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OwnerCannotRead(errno.EACCES, f"{_shown(walked)} is not a regular file")
        _require(account, fd, READ, walked, "read")
        return fd
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


def _step(folder_fd: int, name: str, walked: list[str], *, last: bool) -> int | str:
    """The descriptor of `name` in the folder, or the target of the link found there. The
    file itself is looked at before it is opened: opening a device can have effects."""
    if last and name != "..":
        info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode):
            return os.readlink(name, dir_fd=folder_fd)
        if not stat.S_ISREG(info.st_mode):
            where = _shown([*walked, name])
            raise OwnerCannotRead(errno.EACCES, f"{where} is not a regular file")
        return os.open(name, FILE_FLAGS, dir_fd=folder_fd)
    try:
        return os.open(name, FOLDER_FLAGS, dir_fd=folder_fd)
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        try:
            return os.readlink(name, dir_fd=folder_fd)
        except OSError:
            where = _shown([*walked, name])
            raise NotADirectoryError(errno.ENOTDIR, f"{where} is not a folder") from None


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _shown(walked: list[str]) -> str:
    return "/" + "/".join(walked)


def _require(account: Account, fd: int, wanted: int, walked: list[str], verb: str) -> None:
    if not allows(account, os.fstat(fd), _acl_entries(fd), wanted):
        raise OwnerCannotRead(errno.EACCES, f"uid {account.uid} may not {verb} {_shown(walked)}")


def _acl_entries(fd: int) -> list[tuple[int, int, int]] | None:
    """The access ACL's (tag, permissions, id) entries, or None where the file has none."""
    try:
        raw = os.getxattr(fd, ACL_XATTR)
    except OSError as error:
        if error.errno in NO_ACL_ERRNOS:
            return None
        raise
    if len(raw) < 4 or struct.unpack_from("<I", raw)[0] != ACL_VERSION or (len(raw) - 4) % 8:
        return [(ACL_OTHER, 0, 0)]  # an ACL this code cannot read admits nobody: refused
    return [struct.unpack_from("<HHI", raw, offset) for offset in range(4, len(raw), 8)]


def allows(
    account: Account,
    info: os.stat_result,
    acl: list[tuple[int, int, int]] | None,
    wanted: int,
) -> bool:
    """Whether `account` has the `wanted` permission bits on a file, by the algorithm of
    acl(5) (which is the plain owner/group/other rule when there is no ACL)."""
    if account.uid == 0:
        return True  # root's own lookups pass every permission check
    if acl is None:
        mode = info.st_mode
        acl = [
            (ACL_USER_OBJ, (mode >> 6) & 7, 0),
            (ACL_GROUP_OBJ, (mode >> 3) & 7, 0),
            (ACL_OTHER, mode & 7, 0),
        ]
    mask = next((perms for tag, perms, _ in acl if tag == ACL_MASK), 7)
    if account.uid == info.st_uid:
        return _has([p for tag, p, _ in acl if tag == ACL_USER_OBJ], wanted)
    named = [p & mask for tag, p, uid in acl if tag == ACL_USER and uid == account.uid]
    if named:
        return _has(named, wanted)
    matching = [
        p & mask
        for tag, p, gid in acl
        if (tag == ACL_GROUP_OBJ and info.st_gid in account.groups)
        or (tag == ACL_GROUP and gid in account.groups)
    ]
    if matching:  # a matching group entry decides, even when "other" would allow more
        return _has(matching, wanted)
    return _has([p for tag, p, _ in acl if tag == ACL_OTHER], wanted)


def _has(entries: list[int], wanted: int) -> bool:
    return any(perms & wanted == wanted for perms in entries)
