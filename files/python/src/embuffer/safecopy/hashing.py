"""Hashes and sizes of movies (files, and DE `.frames` folders through their manifest).

xxh3-128 over the bytes; a folder's hash is taken over the sorted manifest of its members'
(path, size, hash). With drop_cache the bytes come from the device, not the page cache.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO

import xxhash

from embuffer.safecopy import nofollow

CHUNK_BYTES = 8 * 1024 * 1024


class CopyAborted(Exception):
    """A stop was requested mid-copy (the temporary file has been removed) or mid re-read
    (the published copy stays as it is, its row unverified)."""


def hash_file(
    path: Path, *, drop_cache: bool = False, stop: threading.Event | None = None
) -> tuple[int, str]:
    """Size and xxh3-128 of a file; with drop_cache the bytes come from the device. A stop
    ends it between chunks (CopyAborted): a re-read of a multi-GB movie would otherwise hold
    up the service's stop for as long as the device takes to read it."""
    hasher = xxhash.xxh3_128()
    size = 0
    fd = nofollow.open_file(path)
    try:
        if drop_cache:
            # The file was fsynced, so its pages are clean and DONTNEED really evicts them.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        buffer = bytearray(CHUNK_BYTES)
        view = memoryview(buffer)
        while True:
            if stop is not None and stop.is_set():
                raise CopyAborted(str(path))
            count = os.readv(fd, [buffer])
            if not count:
                break
            hasher.update(view[:count])
            size += count
        if drop_cache:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return size, hasher.hexdigest()


def bytes_differing(earlier: Path, current: Path, limit: int) -> int:
    """How many bytes of `earlier` differ from the start of `current` (a byte missing from
    `current` counts as differing); stops counting past `limit`. Tells a file that was
    appended to (an MRC header's frame count, a TIFF's link to its next page rewritten) from
    one rewritten with other bytes."""
    differing = 0
    with (
        os.fdopen(nofollow.open_file(earlier), "rb", buffering=0) as old,
        os.fdopen(nofollow.open_file(current), "rb", buffering=0) as new,
    ):
        while differing <= limit:
            before = _read_full(old, CHUNK_BYTES)
            if not before:
                break
            after = _read_full(new, len(before))
            differing += len(before) - len(after)
            if before[: len(after)] != after:
                differing += sum(1 for a, b in zip(before, after, strict=False) if a != b)
    return differing


def _read_full(stream: BinaryIO, length: int) -> bytes:
    """Up to `length` bytes, fewer only at the end of the file (network mounts return short
    reads in the middle too)."""
    parts: list[bytes] = []
    left = length
    while left > 0:
        part = stream.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def tree_members(folder: Path) -> list[Path]:
    """Regular files below `folder`, relative, in a stable order; symlinks are not followed
    and not included (they may point anywhere; embuffer never copies or deletes through them)."""
    return nofollow.regular_files(folder)


def tree_size(folder: Path) -> int:
    """Bytes in the regular files below `folder` (what a folder movie's journal size counts)."""
    return sum(nofollow.lstat(folder / member).st_size for member in tree_members(folder))


def manifest_hash(manifest: list[tuple[str, int, str]]) -> str:
    hasher = xxhash.xxh3_128()
    for relpath, size, digest in sorted(manifest):
        hasher.update(os.fsencode(relpath) + b"\0" + str(size).encode() + b"\0" + digest.encode())
        hasher.update(b"\n")
    return hasher.hexdigest()


def hash_tree(
    folder: Path, *, drop_cache: bool = False, stop: threading.Event | None = None
) -> tuple[int, str, list[tuple[str, int, str]]]:
    manifest = []
    for member in tree_members(folder):
        size, digest = hash_file(folder / member, drop_cache=drop_cache, stop=stop)
        manifest.append((str(member), size, digest))
    return sum(size for _, size, _ in manifest), manifest_hash(manifest), manifest


def hash_path(
    path: Path, *, drop_cache: bool = False, stop: threading.Event | None = None
) -> tuple[int, str]:
    if nofollow.is_folder(path):
        size, digest, _ = hash_tree(path, drop_cache=drop_cache, stop=stop)
        return size, digest
    return hash_file(path, drop_cache=drop_cache, stop=stop)
