"""Camera files whose names cannot be stored or extended: quarantined under a safe name.

A name with bytes that are not UTF-8 cannot go into the journal (SQLite text is UTF-8), and a
name close to the 255-byte limit cannot get the partial-copy marks. Neither can be matched to
a Leginon image (Leginon writes ASCII names). Such a file is copied, verified, into quarantine
as `unnamed-<hash of the name>[.<suffix>]`, the original name's bytes are recorded (escaped) in
the journal row's reason, and only then is the camera copy removed. The safe name depends
only on the original name, so a repeat after a crash finds its own copy and goes on.

The members of a folder (DE `.frames`) are judged the same way before the folder is copied:
one member whose name cannot be stored would fail the copy of the whole folder at every
try. Such a folder goes to quarantine whole, as `unnamed-<hash>.frames`, each odd member
under its own safe name and the original names recorded in the reason.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import xxhash

from embuffer import journal as j
from embuffer.ingest.rows import CameraRows
from embuffer.ingest.scan import Candidate
from embuffer.journal import Movie
from embuffer.safecopy import nofollow
from embuffer.safecopy.copy import (
    DestinationExists,
    Ownership,
    copy_file,
    copy_tree,
    remove_tree_quietly,
)
from embuffer.safecopy.hashing import hash_path, hash_tree, manifest_hash
from embuffer.safecopy.partials import PARTIAL_NAME_EXTRA_BYTES
from embuffer.safecopy.source_removal import remove_copied_members
from embuffer.safecopy.space import room_problem, size_of

log = logging.getLogger("embuffer.odd_names")

# NAME_MAX is 255 bytes, and the partial copy's name must fit too
LONGEST_NAME_BYTES = 255 - PARTIAL_NAME_EXTRA_BYTES


def odd_name_problem(
    name: str, *, a_file: bool = True, members_of: Path | None = None
) -> str | None:
    """Why a camera file's name cannot be handled like any other, or None. A folder inside
    a movie folder gets no partial name, so only its encoding counts (a_file=False). With
    `members_of` (a movie folder), its members' names are judged too: one odd member would
    fail the copy of the whole folder at every try."""
    problem = _own_name_problem(name, a_file=a_file)
    if problem is None and members_of is not None:
        return odd_members_problem(members_of)
    return problem


def _own_name_problem(name: str, *, a_file: bool) -> str | None:
    raw = os.fsencode(name)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"its name is not UTF-8 (bytes {raw!r})"
    if a_file and len(raw) > LONGEST_NAME_BYTES:
        return f"its name is {len(raw)} bytes long, more than {LONGEST_NAME_BYTES}"
    return None


def odd_members(folder: Path) -> dict[Path, str]:
    """The members of a movie folder (relative paths) whose names cannot be stored, and why."""
    odd: dict[Path, str] = {}
    for member in nofollow.regular_files(folder):
        for depth, part in enumerate(member.parts):
            problem = odd_name_problem(part, a_file=depth == len(member.parts) - 1)
            if problem is not None:
                odd[member] = problem
                break
    return odd


def odd_members_problem(folder: Path) -> str | None:
    """Why a movie folder cannot be copied member by member under its members' names."""
    odd = odd_members(folder)
    if not odd:
        return None
    shown = "; ".join(f"{printable(member)!r}: {why}" for member, why in odd.items())
    return f"{len(odd)} member(s) whose names cannot be stored ({shown})"


def stored_member(member: Path) -> Path:
    """Where a member of a quarantined folder goes: each odd part under its safe name."""
    last = len(member.parts) - 1
    return Path(
        *(
            safe_name(part) if odd_name_problem(part, a_file=depth == last) else part
            for depth, part in enumerate(member.parts)
        )
    )


def printable(path: Path) -> str:
    """A path as text that the journal can hold: undecodable bytes as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def safe_name(name: str) -> str:
    raw = os.fsencode(name)
    suffix = os.path.splitext(raw)[1]
    keep = suffix.decode("ascii") if suffix.isascii() and 1 < len(suffix) <= 8 else ""
    return f"unnamed-{xxhash.xxh3_64_hexdigest(raw)}{keep}"


def take_odd_name(
    rows: CameraRows,
    candidate: Candidate,
    problem: str,
    tell: Callable[[str, str], None],
    folders_journaled: set[str],
) -> bool:
    """A camera file whose name (or a member's) cannot be stored or extended: True when it
    went to quarantine, False when it stays on the share (a folder whose own name is odd,
    told once; or no room in quarantine, told and not journaled: its name cannot go there)."""
    if candidate.is_dir and odd_name_problem(candidate.name) is not None:
        shown = printable(candidate.path)
        tell(str(candidate.path), f"folder {shown!r}: {problem}; left where it is")
        if shown not in folders_journaled:
            folders_journaled.add(shown)
            detail = f"folder {shown!r}: {problem}; left on the camera share"
            rows.journal.event("unsafe_name", camera=rows.camera, detail=detail)
        return False
    config = rows.config
    no_room = room_problem(
        config.quarantine, size_of(candidate.path), config.reserve_percent, placed=False
    )
    if no_room is not None:
        shown = printable(candidate.path)
        tell(str(candidate.path), f"{shown!r}: {problem}; waits for room: {no_room}")
        return False
    quarantine_odd_name(rows, candidate.path, problem)
    return True


def quarantine_odd_name(rows: CameraRows, source: Path, problem: str) -> Path:
    """Copy, verify, record, then remove the camera copy; returns the quarantined path. A
    folder goes whole, its odd members under safe names (a folder whose own name is odd is
    left where it is, and reported: worker.py)."""
    config, journal = rows.config, rows.journal
    folder = config.quarantine / rows.camera
    ownership = Ownership(file_mode=config.file_mode, dir_mode=config.dir_mode)
    os.makedirs(folder, exist_ok=True)
    dest = folder / safe_name(source.name)
    is_folder = nofollow.is_folder(source)
    what = "folder" if is_folder else "file"
    reason = f"camera {what} {printable(source)!r}: {problem}; kept as {dest.name}"
    if is_folder:
        odd = sorted(str(stored_member(member)) for member in odd_members(source))
        reason += f" with those members as {', '.join(odd)}"
    before = _looks(source)
    copy = _copy_folder if is_folder else _copy_file
    size, digest, manifest = copy(source, dest, ownership)
    if hash_path(dest, drop_cache=True) != (size, digest):
        remove_tree_quietly(dest)
        raise OSError(f"quarantine copy {dest} re-read differently; the camera copy is kept")
    fields = {
        "state": j.VERIFIED,
        "target": "quarantine",
        "dest_path": str(dest),
        "size": size,
        "hash": digest,
        "verified_at": time.time(),
        "reason": reason,
        "manifest": json.dumps(manifest) if is_folder else None,
        # what the removal after a crash compares (source_removal.py): else a mismatch
        "source_mtime_ns": None if is_folder else before[0][2],
    }
    # a try that failed after its row was written (the removal refused, a crash) left it:
    # this try finishes that row rather than writing a second one for the same copy
    earlier = journal.active_movie_for_source(rows.camera, printable(source))
    if earlier is not None and earlier.dest_path == str(dest):
        movie_id = earlier.id
        journal.update_movie(movie_id, **fields)
    else:
        movie_id = rows.open(printable(source), "dir" if is_folder else "file", **fields)
    journal.make_durable()  # the record of the copy before the camera copy goes
    _remove_unchanged(source, before, manifest if is_folder else None)
    with journal.transaction():
        journal.update_movie(movie_id, state=j.QUARANTINED, source_removed_at=time.time())
        journal.event(
            "quarantined", movie_id=movie_id, camera=rows.camera, nbytes=size, detail=reason
        )
    log.warning("quarantined %r", reason)
    return dest


Manifest = list[tuple[str, int, str]]


def _copy_file(source: Path, dest: Path, ownership: Ownership) -> tuple[int, str, Manifest]:
    try:
        result = copy_file(source, dest, ownership)
        return result.size, result.hash, []
    except DestinationExists:  # our own copy from before a crash, or another file
        size, digest = hash_path(source)
        if hash_path(dest)[1] != digest:
            raise
        return size, digest, []


def _copy_folder(source: Path, dest: Path, ownership: Ownership) -> tuple[int, str, Manifest]:
    """Size and hash of the copy (over its members' stored names), and the manifest by the
    camera's own member names: what recovery removes from the share after a crash."""
    camera_names: dict[str, str] = {}

    def stored_as(member: Path) -> Path:
        stored = stored_member(member)
        camera_names[str(stored)] = str(member)
        return stored

    try:
        result = copy_tree(source, dest, ownership, stored_as=stored_as)
        manifest = [(camera_names[name], size, digest) for name, size, digest in result.manifest]
        return result.size, result.hash, manifest
    except DestinationExists:  # our own copy from before a crash, or another folder
        size, _, manifest = hash_tree(source)
        stored = [(str(stored_member(Path(m))), n, digest) for m, n, digest in manifest]
        if hash_path(dest)[1] != manifest_hash(stored):
            raise
        return size, manifest_hash(stored), manifest


def _looks(source: Path) -> list[tuple[str, int, int]]:
    """Size and mtime of each member of a camera folder: what must not have changed between
    the copy and the removal (a file's own, through its folder: `_remove_unchanged`)."""
    if not nofollow.is_folder(source):
        info = source.stat(follow_symlinks=False)
        return [("", info.st_size, info.st_mtime_ns)]
    looks = []
    for member in nofollow.regular_files(source):
        info = nofollow.lstat(source / member)
        looks.append((str(member), info.st_size, info.st_mtime_ns))
    return looks


def _remove_unchanged(
    source: Path, before: list[tuple[str, int, int]], manifest: Manifest | None
) -> None:
    """Remove the camera copy (a folder's copied members) if it still is what was copied,
    never through a link."""
    changed = OSError(f"{printable(source)} changed after its quarantine copy; it is kept")
    if manifest is not None:
        if _looks(source) != before:
            raise changed
        remove_copied_members(source, manifest)
        return
    with nofollow.folder(source.parent) as folder_fd:
        after = os.stat(source.name, dir_fd=folder_fd, follow_symlinks=False)
        if [("", after.st_size, after.st_mtime_ns)] != before:
            raise changed
        os.unlink(source.name, dir_fd=folder_fd)


def names_no_file(movie: Movie) -> bool:
    """A row `quarantine_odd_name` wrote for a name the journal cannot hold: its source_path
    is that name's printable form, a path that is not on the share (the copy's safe name
    was made from the real name's bytes, so it is not the safe name of the recorded one)."""
    if movie.target != "quarantine" or not movie.dest_path or not movie.source_path:
        return False
    name, kept = movie.source.name, movie.dest.name
    return kept.startswith("unnamed-") and kept != safe_name(name) and not kept.startswith(name)


def recover_unstored_name(rows: CameraRows, camera_folder: Path, movie: Movie) -> str:
    """After a crash, such a row (verified: its copy was re-read) is finished by what the
    camera folder holds: the file still there is left to the next scan, which finds this
    row and goes on with it; a file gone was removed before the crash, after its copy."""
    for name in os.listdir(camera_folder):
        if printable(camera_folder / name) == movie.source_path:
            return "left to the scan (its camera file is still there)"
    with rows.journal.transaction():
        rows.journal.update_movie(movie.id, state=j.QUARANTINED, source_removed_at=time.time())
        rows.journal.event(
            "quarantined",
            movie_id=movie.id,
            camera=rows.camera,
            nbytes=movie.size,
            detail=movie.reason or str(movie.dest_path),
        )
    return "quarantined (its camera file was removed before the crash)"
