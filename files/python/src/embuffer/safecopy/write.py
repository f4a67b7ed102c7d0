"""Step 1 of a copy: read the source, hash it and write it to a new partial name in one pass.

The bytes go to a new `.<name>.<random>.embuffer-partial` beside the final name (a name
nobody could prepare), hashed with xxh3-128 as they are read; the source must not change
meanwhile. The result is neither durable nor published yet: `publish.finish_partial` does
that, so one file's fsync can overlap the next file's copy.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from embuffer.safecopy import nofollow
from embuffer.safecopy.hashing import CHUNK_BYTES, CopyAborted
from embuffer.safecopy.ownership import Ownership, apply_ownership
from embuffer.safecopy.partials import PARTIAL_SUFFIX, partial_prefix, remove_partials
from embuffer.safecopy.publish import DestinationExists, exists_in, unlink_quietly

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
__all__ = ["CopyAborted", "CopyResult", "Progress", "SourceChanged", "write_partial"]


class SourceChanged(Exception):
    """The source changed while it was copied; nothing was published."""


@dataclass(frozen=True)
class CopyResult:
    size: int
    hash: str
    source_mtime_ns: int
    manifest: list[tuple[str, int, str]] = field(default_factory=list)
    partial: str = ""  # write_partial's temporary name, for finish_partial


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
        if exists_in(folder_fd, final.name):
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
                unlink_quietly(folder_fd, temp)
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
