"""File operations that a link planted by someone else cannot redirect.

The services hold CAP_DAC_OVERRIDE and CAP_CHOWN, and they write into folders that session
owners and camera PCs can write too. Had a path been opened the usual way, a symbolic link
planted in such a folder would turn one of those writes (or a chown, or a removal) on to any
file of the host, the journal included. So every path here is walked one component at a
time from `/`, each opened relative to its parent with O_NOFOLLOW. A symbolic link is
followed only where it sits in a folder that nobody but root and this service can write
(`/var/run`, an administrator's `/data -> /srv/data`); a link anywhere else is refused
(PlantedLink). Files are then opened, created, renamed and removed relative to the folder's
descriptor, and owned and moded through their own descriptor, never by path again.

openat2(RESOLVE_NO_SYMLINKS) would do the walk in the kernel, but it would also refuse the
administrator's links and it has no Python binding; the walk costs a few system calls per
folder, nothing beside copying gigabytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted under a file's name must not hang the open (a regular file
# ignores the flag).
FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
MAX_LINKS = 40  # as the kernel's own limit on links followed in one lookup

StrPath = str | os.PathLike[str]


class PlantedLink(OSError):
    """A symbolic link where someone other than root or this service could have put it."""

    def __init__(self, path: str, name: str) -> None:
        super().__init__(
            errno.ELOOP,
            f"{name!r} in {path} is a symbolic link in a folder that others can write; "
            "embuffer does not follow it",
        )


class NotRegularFile(OSError):
    def __init__(self, path: str) -> None:
        super().__init__(errno.EINVAL, f"{path} is not a regular file")


def _trusted(info: os.stat_result) -> bool:
    """Only root and this service can add or replace names in this folder."""
    return info.st_uid in (0, os.geteuid()) and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def open_folder(
    path: StrPath,
    *,
    create_mode: int | None = None,
    on_create: Callable[[int], None] | None = None,
) -> int:
    """A descriptor of folder `path`, walked as described above. With `create_mode`, missing
    folders are made (each handed to `on_create(fd)`, its parent fsynced)."""
    text = os.path.abspath(os.fspath(path))
    pending = list(reversed(_components(text)))
    fd = os.open("/", FOLDER_FLAGS)
    trusted = True
    links = 0
    try:
        while pending:
            name = pending.pop()
            if name == "..":
                if not trusted:  # who can move this folder could make ".." anything
                    raise PlantedLink(text, name)
                child = os.open("..", FOLDER_FLAGS, dir_fd=fd)
            else:
                try:
                    child = os.open(name, FOLDER_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if create_mode is None:
                        raise FileNotFoundError(
                            errno.ENOENT, f"{text}: no folder {name!r}"
                        ) from None
                    child = _make_folder(fd, name, create_mode, on_create)
                except OSError as error:
                    if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    target = _link_target(fd, name, text)
                    if not trusted:
                        raise PlantedLink(text, name) from None
                    links += 1
                    if links > MAX_LINKS:
                        raise OSError(errno.ELOOP, f"{text}: too many symbolic links") from None
                    if target.startswith("/"):
                        os.close(fd)
                        fd = -1
                        fd = os.open("/", FOLDER_FLAGS)
                        trusted = True
                    pending.extend(reversed(_components(target)))
                    continue
            os.close(fd)
            fd = child
            trusted = _trusted(os.fstat(fd))
        return fd
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise


def _link_target(folder_fd: int, name: str, path: str) -> str:
    try:
        return os.readlink(name, dir_fd=folder_fd)
    except OSError:
        raise NotADirectoryError(errno.ENOTDIR, f"{path}: {name!r} is not a folder") from None


def _make_folder(
    parent_fd: int, name: str, mode: int, on_create: Callable[[int], None] | None
) -> int:
    try:
        os.mkdir(name, mode, dir_fd=parent_fd)
    except FileExistsError:  # made by another thread meanwhile: use it as it is
        return os.open(name, FOLDER_FLAGS, dir_fd=parent_fd)
    fd = os.open(name, FOLDER_FLAGS, dir_fd=parent_fd)
    try:
        if on_create is not None:
            on_create(fd)
        os.fsync(parent_fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def folder(
    path: StrPath,
    *,
    create_mode: int | None = None,
    on_create: Callable[[int], None] | None = None,
) -> Iterator[int]:
    fd = open_folder(path, create_mode=create_mode, on_create=on_create)
    try:
        yield fd
    finally:
        os.close(fd)


def _split(path: StrPath) -> tuple[str, str]:
    text = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(text)
    if not name or name in (".", ".."):
        raise IsADirectoryError(errno.EISDIR, f"{text} does not name a file")
    return parent, name


def open_file(path: StrPath, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """A descriptor of regular file `path` (created when `flags` say so)."""
    parent, name = _split(path)
    with folder(parent) as folder_fd:
        return open_in(folder_fd, name, flags, mode, shown=os.path.join(parent, name))


def open_in(folder_fd: int, name: str, flags: int, mode: int = 0o600, *, shown: str = "") -> int:
    """Open `name` in the folder `folder_fd` without following a link; only regular files."""
    fd = os.open(name, flags | FILE_FLAGS, mode, dir_fd=folder_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(shown or name)
    return fd


def create_temporary(folder_fd: int, prefix: str, suffix: str) -> tuple[int, str]:
    """A new file `<prefix><random>.<suffix>` that nobody could have prepared (O_EXCL)."""
    for _ in range(16):
        name = f"{prefix}{secrets.token_hex(8)}{suffix}"
        try:
            fd = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | FILE_FLAGS, 0o600, dir_fd=folder_fd
            )
        except FileExistsError:
            continue
        return fd, name
    raise FileExistsError(errno.EEXIST, f"no free temporary name {prefix}*{suffix}")


def lstat(path: StrPath) -> os.stat_result:
    parent, name = _split(path)
    with folder(parent) as folder_fd:
        return os.stat(name, dir_fd=folder_fd, follow_symlinks=False)


def lexists(path: StrPath) -> bool:
    try:
        lstat(path)
    except FileNotFoundError:
        return False
    return True


def is_folder(path: StrPath) -> bool:
    """A real folder (not a link to one) reached by a walk that follows no planted link."""
    try:
        return stat.S_ISDIR(lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def remove(path: StrPath, *, missing_ok: bool = True) -> None:
    """Remove a file, a link (never what it points to) or a whole folder of ours."""
    parent, name = _split(path)
    try:
        with folder(parent) as folder_fd:
            remove_in(folder_fd, name)
    except FileNotFoundError:
        if not missing_ok:
            raise


def remove_in(folder_fd: int, name: str) -> None:
    info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=folder_fd)  # descriptor-based: follows no link inside
    else:
        os.unlink(name, dir_fd=folder_fd)


def regular_files(path: StrPath) -> list[Path]:
    """Regular files below folder `path`, relative, in a stable order; links and anything
    else are left out (they may point anywhere)."""
    members: list[Path] = []
    with folder(path) as top:
        for root, dirs, files, root_fd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
            dirs.sort()
            for name in sorted(files):
                info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
                if stat.S_ISREG(info.st_mode):
                    members.append(Path(os.path.normpath(os.path.join(root, name))))
    return members


def fsync_folder(path: StrPath) -> None:
    with folder(path) as fd:
        os.fsync(fd)
