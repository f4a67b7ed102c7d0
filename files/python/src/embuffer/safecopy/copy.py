"""The one copy routine that ingest, quarantine and archive share.

A copy is only ever published under its final name complete and durable:
  1. write to a new `.<name>.<random>.embuffer-partial` in the destination folder, hashing
     the bytes read from the source in the same pass (xxh3-128);
  2. fsync the file, then publish it under the final name without ever replacing an
     existing file (link + unlink, so a name that exists makes the publish fail), and fsync
     the folder so the new name survives a power cut;
  3. verify: drop the destination's pages from the page cache and re-read it from the
     device; the hashes must be equal.
Only after (3) may a caller remove the source. Folders (DE `.frames`) are copied member by
member the same way, and their hash is taken over the manifest of member hashes.
Every path is opened through `nofollow`: a link planted in a session folder redirects nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from embuffer.safecopy import nofollow
from embuffer.safecopy.hashing import CHUNK_BYTES, manifest_hash, tree_members
from embuffer.safecopy.partials import PARTIAL_SUFFIX, partial_prefix, remove_partials

_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    """sync_file_range(2) through libc: Python has no binding for it."""
    try:
        # glibc's soname directly: find_library() would run `ldconfig -p` at every start-up
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        try:
            from ctypes.util import find_library

            libc = ctypes.CDLL(find_library("c"), use_errno=True)
        except (OSError, TypeError):
            return None
    try:
        function = libc.sync_file_range
    except AttributeError:
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]

    def start_writeback(fd: int, offset: int, length: int) -> None:
        function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)

    return start_writeback


# Starting writeback of each chunk as soon as it is written lets the device write while the
# next chunk is read, instead of all at once in the final fsync (measured: 1.6x faster on a
# single disk; the fsync before publishing still makes the whole file durable).
_start_writeback = _load_sync_file_range()

Progress = Callable[[int], None]


class CopyAborted(Exception):
    """A stop was requested mid-copy; the temporary file has been removed."""


class SourceChanged(Exception):
    """The source changed while it was copied; nothing was published."""


class DestinationExists(Exception):
    """The final name is taken; nothing was overwritten."""


@dataclass(frozen=True)
class Ownership:
    uid: int | None = None
    gid: int | None = None
    file_mode: int = 0o664
    dir_mode: int = 0o2775


@dataclass(frozen=True)
class CopyResult:
    size: int
    hash: str
    source_mtime_ns: int
    manifest: list[tuple[str, int, str]] = field(default_factory=list)
    partial: str = ""  # write_partial's temporary name, for finish_partial


def fsync_dir(folder: Path) -> None:
    nofollow.fsync_folder(folder)


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


def replace_file(target: Path, data: bytes, ownership: Ownership) -> None:
    """Write a small file (a reference, a defect plan) whole under `target`: a new temporary
    name nobody could prepare, fsynced and owned through its descriptor, then renamed over
    `target` (a link planted at that name is replaced, never followed)."""
    with nofollow.folder(target.parent) as folder_fd:
        fd, temp = nofollow.create_temporary(folder_fd, partial_prefix(target.name), PARTIAL_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
                stream.flush()
                apply_ownership(stream.fileno(), ownership, ownership.file_mode)
                os.fsync(stream.fileno())
            os.replace(temp, target.name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except BaseException:
            _unlink_quietly(folder_fd, temp)
            raise
        os.fsync(folder_fd)


def copy_file(
    source: Path,
    final: Path,
    ownership: Ownership,
    *,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> CopyResult:
    """Copy `source` to `final` (steps 1-2 above). Raises DestinationExists, SourceChanged,
    CopyAborted or OSError (e.g. ENOSPC); in every case no partial file is left behind."""
    result = write_partial(source, final, ownership, stop=stop, progress=progress)
    finish_partial(final, result.partial)
    return result


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
            _unlink_quietly(folder_fd, partial)
            raise
        publish_in(folder_fd, partial, final.name, shown=str(final))


def write_partial(
    source: Path,
    final: Path,
    ownership: Ownership,
    *,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> CopyResult:
    """Step 1: copy into a new partial name next to `final`, hashing in the same pass; not
    yet durable and not yet published (see finish_partial)."""
    with nofollow.folder(final.parent) as folder_fd:
        if _exists_in(folder_fd, final.name):
            # A kill between publish's link and unlink leaves our partial beside the final
            # name it already has (same file): it goes, the final name stays.
            remove_partials(final)
            raise DestinationExists(str(final))
        # A partial copy of this name left by a kill is ours (the service lock makes this
        # embuffer the only writer here): it goes before the new one is made.
        remove_partials(final)
        source_fd = nofollow.open_file(source)
        try:
            temp_fd, temp = nofollow.create_temporary(
                folder_fd, partial_prefix(final.name), PARTIAL_SUFFIX
            )
            try:
                result = _copy_bytes(source, source_fd, temp_fd, stop, progress)
                apply_ownership(temp_fd, ownership, ownership.file_mode)
            except BaseException:
                _unlink_quietly(folder_fd, temp)
                raise
            finally:
                os.close(temp_fd)
        finally:
            os.close(source_fd)
    return CopyResult(result.size, result.hash, result.source_mtime_ns, partial=temp)


def _copy_bytes(
    source: Path,
    source_fd: int,
    temp_fd: int,
    stop: threading.Event | None,
    progress: Progress | None,
) -> CopyResult:
    """Copy and hash in one pass; the source must not change meanwhile (SourceChanged)."""
    before = os.fstat(source_fd)
    os.posix_fadvise(source_fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    hasher = xxhash.xxh3_128()
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    size = 0
    while True:
        if stop is not None and stop.is_set():
            raise CopyAborted(str(source))
        count = os.readv(source_fd, [buffer])
        if not count:
            break
        chunk = view[:count]
        hasher.update(chunk)
        written = 0
        while written < count:
            written += os.write(temp_fd, chunk[written:])
        if _start_writeback is not None:
            _start_writeback(temp_fd, size, count)
        size += count
        if progress is not None:
            progress(count)
    after = os.fstat(source_fd)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or (
        size != after.st_size
    ):
        raise SourceChanged(f"{source} changed while it was copied")
    os.utime(temp_fd, ns=(before.st_atime_ns, before.st_mtime_ns))
    return CopyResult(size=size, hash=hasher.hexdigest(), source_mtime_ns=before.st_mtime_ns)


def _exists_in(folder_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def publish_in(folder_fd: int, temp: str, final: str, *, shown: str = "") -> None:
    """Give `temp` its final name in the folder `folder_fd`, never replacing an existing
    file, and make the name durable."""
    try:
        os.link(temp, final, src_dir_fd=folder_fd, dst_dir_fd=folder_fd, follow_symlinks=False)
    except FileExistsError:
        _unlink_quietly(folder_fd, temp)
        raise DestinationExists(shown or final) from None
    except OSError as error:
        # Filesystems without hard links (some CIFS/NFS exports): check, then rename. The
        # service lock makes this embuffer the only writer of these names.
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            _unlink_quietly(folder_fd, temp)
            raise
        if _exists_in(folder_fd, final):
            _unlink_quietly(folder_fd, temp)
            raise DestinationExists(shown or final) from None
        os.rename(temp, final, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    else:
        os.unlink(temp, dir_fd=folder_fd)
    os.fsync(folder_fd)


def _unlink_quietly(folder_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        nofollow.remove_in(folder_fd, name)


def remove_tree_quietly(path: Path) -> None:
    """Remove a file, a link or a partial copy folder of ours (never through a link)."""
    with contextlib.suppress(NotADirectoryError):
        nofollow.remove(path)


def copy_tree(
    source: Path,
    final: Path,
    ownership: Ownership,
    *,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> CopyResult:
    """Copy a folder of frames whole: every member verified-copied into a partial folder,
    which is then renamed into place (a folder rename is atomic and refuses a non-empty
    target; an existing empty target is treated as taken)."""
    remove_partials(final)  # ours, left by a kill mid-copy: never a published movie
    if nofollow.lexists(final):
        raise DestinationExists(str(final))
    temp = final.with_name(f"{partial_prefix(final.name)}{secrets.token_hex(8)}{PARTIAL_SUFFIX}")
    manifest: list[tuple[str, int, str]] = []
    newest_mtime = 0
    try:
        make_folders(temp, ownership)
        for member in tree_members(source):
            target = temp / member
            make_folders(target.parent, ownership)
            result = copy_file(source / member, target, ownership, stop=stop, progress=progress)
            manifest.append((str(member), result.size, result.hash))
            newest_mtime = max(newest_mtime, result.source_mtime_ns)
        for member_folder in sorted({(temp / m).parent for m in tree_members(temp)} | {temp}):
            fsync_dir(member_folder)
        with nofollow.folder(final.parent) as folder_fd:
            if _exists_in(folder_fd, final.name):
                raise DestinationExists(str(final))
            os.rename(temp.name, final.name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            os.fsync(folder_fd)
    except BaseException:
        remove_tree_quietly(temp)
        raise
    return CopyResult(
        size=sum(size for _, size, _ in manifest),
        hash=manifest_hash(manifest),
        source_mtime_ns=newest_mtime,
        manifest=manifest,
    )


def copy_path(
    source: Path,
    final: Path,
    ownership: Ownership,
    *,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> CopyResult:
    if nofollow.is_folder(source):
        return copy_tree(source, final, ownership, stop=stop, progress=progress)
    return copy_file(source, final, ownership, stop=stop, progress=progress)
