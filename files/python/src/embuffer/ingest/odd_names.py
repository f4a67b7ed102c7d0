"""Camera files whose names cannot be stored or extended: quarantined under a safe name.

A name with bytes that are not UTF-8 cannot go into the journal (SQLite text is UTF-8), and a
name close to the 255-byte limit cannot get the partial-copy marks. Neither can be matched to
a Leginon image (Leginon writes ASCII names). Such a file is copied, verified, into quarantine
as `unnamed-<hash of the name>[.<suffix>]`, the original name's bytes are recorded (escaped) in
the journal row's reason, and only then is the camera copy removed. The safe name depends
only on the original name, so a repeat after a crash finds its own copy and goes on.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import xxhash

from embuffer import journal as j
from embuffer.ingest.rows import CameraRows
from embuffer.safecopy import nofollow
from embuffer.safecopy.copy import DestinationExists, Ownership, copy_path, remove_tree_quietly
from embuffer.safecopy.hashing import hash_path
from embuffer.safecopy.partials import PARTIAL_NAME_EXTRA_BYTES

log = logging.getLogger("embuffer.odd_names")

# NAME_MAX is 255 bytes, and the partial copy's name must fit too
LONGEST_NAME_BYTES = 255 - PARTIAL_NAME_EXTRA_BYTES


def odd_name_problem(name: str) -> str | None:
    """Why a camera file's name cannot be handled like any other, or None."""
    raw = os.fsencode(name)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"its name is not UTF-8 (bytes {raw!r})"
    if len(raw) > LONGEST_NAME_BYTES:
        return f"its name is {len(raw)} bytes long, more than {LONGEST_NAME_BYTES}"
    return None


def printable(path: Path) -> str:
    """A path as text that the journal can hold: undecodable bytes as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def safe_name(name: str) -> str:
    raw = os.fsencode(name)
    suffix = os.path.splitext(raw)[1]
    keep = suffix.decode("ascii") if suffix.isascii() and 1 < len(suffix) <= 8 else ""
    return f"unnamed-{xxhash.xxh3_64_hexdigest(raw)}{keep}"


def quarantine_odd_name(rows: CameraRows, source: Path, problem: str) -> Path:
    """Copy, verify, record, then remove the camera copy (files only: a folder with such a
    name is left where it is, and reported); returns the quarantined path."""
    config, journal = rows.config, rows.journal
    folder = config.quarantine / rows.camera
    ownership = Ownership(file_mode=config.file_mode, dir_mode=config.dir_mode)
    os.makedirs(folder, exist_ok=True)
    dest = folder / safe_name(source.name)
    reason = f"camera file {printable(source)!r}: {problem}; kept as {dest.name}"
    before = source.stat(follow_symlinks=False)
    try:
        result = copy_path(source, dest, ownership)
        size, digest = result.size, result.hash
    except DestinationExists:  # our own copy from before a crash, or another file
        size, digest = hash_path(source)
        if hash_path(dest)[1] != digest:
            raise
    if hash_path(dest, drop_cache=True) != (size, digest):
        remove_tree_quietly(dest)
        raise OSError(f"quarantine copy {dest} re-read differently; the camera copy is kept")
    movie_id = rows.open(
        printable(source),
        "file",
        state=j.VERIFIED,
        target="quarantine",
        dest_path=str(dest),
        size=size,
        hash=digest,
        verified_at=time.time(),
        reason=reason,
    )
    journal.make_durable()  # the record of the copy before the camera copy goes
    with nofollow.folder(source.parent) as folder_fd:
        after = os.stat(source.name, dir_fd=folder_fd, follow_symlinks=False)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise OSError(f"{printable(source)} changed after its quarantine copy; it is kept")
        os.unlink(source.name, dir_fd=folder_fd)
    with journal.transaction():
        journal.update_movie(movie_id, state=j.QUARANTINED, source_removed_at=time.time())
        journal.event(
            "quarantined", movie_id=movie_id, camera=rows.camera, nbytes=size, detail=reason
        )
    log.warning("quarantined %s", reason)
    return dest
