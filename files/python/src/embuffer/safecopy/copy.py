"""The one copy routine that ingest, quarantine and archive share.

A copy is only ever published under its final name complete and durable:
  1. write to a new `.<name>.<random>.embuffer-partial` in the destination folder, hashing
     the bytes read from the source in the same pass (xxh3-128);            (write.py)
  2. fsync the file, then publish it under the final name without ever replacing an
     existing file (link + unlink, so a name that exists makes the publish fail), and fsync
     the folder so the new name survives a power cut;                        (publish.py)
  3. verify: drop the destination's pages from the page cache and re-read it from the
     device; the hashes must be equal.                                       (transfer.py)
Only after (3) may a caller remove the source. Folders (DE `.frames`) are copied member by
member the same way, and their hash is taken over the manifest of member hashes.
Every path is opened through `nofollow`: a link planted in a session folder redirects nothing.

This module owns the entry points (a file, a folder of frames, a small file written whole)
and is where callers import the engine from: the steps' names are re-exported here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from embuffer.safecopy import nofollow
from embuffer.safecopy.hashing import manifest_hash, tree_members
from embuffer.safecopy.ownership import Ownership, apply_ownership, make_folders
from embuffer.safecopy.partials import PARTIAL_SUFFIX, partial_prefix, remove_partials
from embuffer.safecopy.publish import (
    DestinationExists,
    exists_in,
    finish_partial,
    publish_in,
    unlink_quietly,
)
from embuffer.safecopy.write import (
    CopyAborted,
    CopyResult,
    Progress,
    SourceChanged,
    write_partial,
)

__all__ = [
    "CopyAborted",
    "CopyResult",
    "DestinationExists",
    "Ownership",
    "Progress",
    "SourceChanged",
    "apply_ownership",
    "copy_file",
    "copy_path",
    "copy_tree",
    "finish_partial",
    "fsync_dir",
    "make_folders",
    "publish_in",
    "remove_tree_quietly",
    "replace_file",
    "write_partial",
]


def fsync_dir(folder: Path) -> None:
    nofollow.fsync_folder(folder)


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
            unlink_quietly(folder_fd, temp)
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
    stored_as: Callable[[Path], Path] | None = None,
) -> CopyResult:
    """Copy a folder of frames whole: every member verified-copied into a partial folder,
    which is then renamed into place (a folder rename is atomic and refuses a non-empty
    target; an existing empty target is treated as taken). `stored_as` gives a member's
    relative path in the copy (quarantine stores members whose names cannot be stored under
    safe names); the manifest names the copy's members."""
    remove_partials(final)  # ours, left by a kill mid-copy: never a published movie
    if nofollow.lexists(final):
        raise DestinationExists(str(final))
    temp = final.with_name(f"{partial_prefix(final.name)}{secrets.token_hex(8)}{PARTIAL_SUFFIX}")
    manifest: list[tuple[str, int, str]] = []
    newest_mtime = 0
    try:
        make_folders(temp, ownership)
        for member in tree_members(source):
            stored = member if stored_as is None else stored_as(member)
            target = temp / stored
            make_folders(target.parent, ownership)
            result = copy_file(source / member, target, ownership, stop=stop, progress=progress)
            manifest.append((str(stored), result.size, result.hash))
            newest_mtime = max(newest_mtime, result.source_mtime_ns)
        for member_folder in sorted({(temp / m).parent for m in tree_members(temp)} | {temp}):
            fsync_dir(member_folder)
        with nofollow.folder(final.parent) as folder_fd:
            if exists_in(folder_fd, final.name):
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
