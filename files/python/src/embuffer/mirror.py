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
import os
import threading
from pathlib import Path

import xxhash

from embuffer.verified_copy import (
    CHUNK_BYTES,
    CopyAborted,
    Ownership,
    hash_file,
    make_folders,
    partial_path,
    publish,
)


def copy_compressed(
    source: Path, final: Path, ownership: Ownership, *, stop: threading.Event | None = None
) -> str:
    """bzip2 `source` into `final` (partial name, fsync, publish); returns the hash of the
    original bytes."""
    temp = partial_path(final)
    hasher = xxhash.xxh3_128()
    compressor = bz2.BZ2Compressor(9)
    try:
        with open(source, "rb") as reader, open(temp, "wb") as writer:
            while chunk := reader.read(CHUNK_BYTES):
                if stop is not None and stop.is_set():
                    raise CopyAborted(str(source))
                hasher.update(chunk)
                writer.write(compressor.compress(chunk))
            writer.write(compressor.flush())
            writer.flush()
            os.fchmod(writer.fileno(), ownership.file_mode)
            if ownership.uid is not None or ownership.gid is not None:
                os.fchown(
                    writer.fileno(),
                    -1 if ownership.uid is None else ownership.uid,
                    -1 if ownership.gid is None else ownership.gid,
                )
            os.fsync(writer.fileno())
    except BaseException:
        if temp.exists():
            temp.unlink()
        raise
    publish(temp, final)
    return hasher.hexdigest()


def hash_compressed(path: Path) -> tuple[int, str]:
    """Size and hash of the decompressed content, read from the device."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    hasher = xxhash.xxh3_128()
    size = 0
    with bz2.open(path, "rb") as reader:
        while chunk := reader.read(CHUNK_BYTES):
            hasher.update(chunk)
            size += len(chunk)
    return size, hasher.hexdigest()


def sync_references(session_folder: Path, buffer_root: Path, primary_root: Path) -> int:
    """Mirror `<session folder>/references/` to primary; returns the number of files written."""
    references = session_folder / "references"
    if not references.is_dir():
        return 0
    target_folder = primary_root / references.relative_to(buffer_root)
    info = references.stat()
    ownership = Ownership(info.st_uid, info.st_gid, 0o664, 0o2775)
    make_folders(target_folder, ownership)
    written = 0
    for entry in sorted(references.iterdir()):
        if not entry.is_file() or entry.is_symlink() or entry.name.startswith("."):
            continue
        target = target_folder / entry.name
        if target.exists() and hash_file(target) == hash_file(entry):
            continue
        temp = partial_path(target)
        with open(entry, "rb") as reader, open(temp, "wb") as writer:
            while chunk := reader.read(CHUNK_BYTES):
                writer.write(chunk)
            writer.flush()
            stat = os.fstat(reader.fileno())
            os.fchmod(writer.fileno(), stat.st_mode & 0o7777)
            os.fchown(writer.fileno(), stat.st_uid, stat.st_gid)
            os.fsync(writer.fileno())
        if hash_file(temp, drop_cache=True) != hash_file(entry):
            temp.unlink()
            raise OSError(f"reference copy {target} did not verify")
        os.replace(temp, target)
        written += 1
    return written
