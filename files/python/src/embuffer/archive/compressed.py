"""Archive helpers that are not plain movie copies.

- Legacy compatibility: `.mrc` movies stored on primary as `.mrc.bz2` (off by default). The
  hash kept is the hash of the ORIGINAL bytes, and verification decompresses the primary file
  from the device and compares, so a compressed copy is held to the same standard.
- References (`references/` next to the frames) are small metadata files that are rewritten
  (reference_list.txt grows), so they are mirrored by content: copied when missing or
  different, through a temporary name and an atomic replace.
"""

from __future__ import annotations

import bz2
import contextlib
import os
import stat
import threading
from pathlib import Path

import xxhash

from embuffer.safecopy import nofollow
from embuffer.safecopy.copy import (
    CopyAborted,
    Ownership,
    apply_ownership,
    make_folders,
    publish_in,
)
from embuffer.safecopy.hashing import CHUNK_BYTES, hash_file
from embuffer.safecopy.partials import PARTIAL_SUFFIX, partial_prefix


def copy_compressed(
    source: Path, final: Path, ownership: Ownership, *, stop: threading.Event | None = None
) -> str:
    """bzip2 `source` into `final` (partial name, fsync, publish); returns the hash of the
    original bytes."""
    hasher = xxhash.xxh3_128()
    compressor = bz2.BZ2Compressor(9)
    with nofollow.folder(final.parent) as folder_fd:
        fd, temp = nofollow.create_temporary(folder_fd, partial_prefix(final.name), PARTIAL_SUFFIX)
        try:
            with (
                os.fdopen(nofollow.open_file(source), "rb") as reader,
                os.fdopen(fd, "wb") as writer,
            ):
                while chunk := reader.read(CHUNK_BYTES):
                    if stop is not None and stop.is_set():
                        raise CopyAborted(str(source))
                    hasher.update(chunk)
                    writer.write(compressor.compress(chunk))
                writer.write(compressor.flush())
                writer.flush()
                apply_ownership(writer.fileno(), ownership, ownership.file_mode)
                os.fsync(writer.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=folder_fd)
            raise
        publish_in(folder_fd, temp, final.name, shown=str(final))
    return hasher.hexdigest()


def hash_compressed(path: Path) -> tuple[int, str]:
    """Size and hash of the decompressed content, read from the device."""
    hasher = xxhash.xxh3_128()
    size = 0
    with os.fdopen(nofollow.open_file(path), "rb") as raw:
        os.posix_fadvise(raw.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        with bz2.open(raw, "rb") as reader:
            while chunk := reader.read(CHUNK_BYTES):
                hasher.update(chunk)
                size += len(chunk)
    return size, hasher.hexdigest()


def sync_references(session_folder: Path, buffer_root: Path, primary_root: Path) -> int:
    """Mirror `<session folder>/references/` to primary; returns the number of files written."""
    references = session_folder / "references"
    if not nofollow.is_folder(references):
        return 0
    target_folder = primary_root / references.relative_to(buffer_root)
    info = nofollow.lstat(references)
    ownership = Ownership(info.st_uid, info.st_gid, 0o664, 0o2775)
    make_folders(target_folder, ownership)
    written = 0
    with nofollow.folder(references) as source_fd, nofollow.folder(target_folder) as target_fd:
        for name in sorted(os.listdir(source_fd)):
            entry = os.stat(name, dir_fd=source_fd, follow_symlinks=False)
            if not stat.S_ISREG(entry.st_mode) or name.startswith("."):
                continue
            if _copy_reference(source_fd, target_fd, name, references, target_folder):
                written += 1
    return written


def _copy_reference(source_fd: int, target_fd: int, name: str, source: Path, target: Path) -> bool:
    """Copy one reference file when primary lacks it or holds other bytes: temporary name,
    verified from the device, then an atomic replace. True when it was written."""
    if nofollow.lexists(target / name) and hash_file(target / name) == hash_file(source / name):
        return False
    fd, temp = nofollow.create_temporary(target_fd, partial_prefix(name), PARTIAL_SUFFIX)
    try:
        with (
            os.fdopen(nofollow.open_in(source_fd, name, os.O_RDONLY), "rb") as reader,
            os.fdopen(fd, "wb") as writer,
        ):
            while chunk := reader.read(CHUNK_BYTES):
                writer.write(chunk)
            writer.flush()
            info = os.fstat(reader.fileno())
            os.fchmod(writer.fileno(), info.st_mode & 0o7777)
            os.fchown(writer.fileno(), info.st_uid, info.st_gid)
            os.fsync(writer.fileno())
        if hash_file(target / temp, drop_cache=True) != hash_file(source / name):
            raise OSError(f"reference copy {target / name} did not verify")
        os.replace(temp, name, src_dir_fd=target_fd, dst_dir_fd=target_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=target_fd)
        raise
    os.fsync(target_fd)
    return True
