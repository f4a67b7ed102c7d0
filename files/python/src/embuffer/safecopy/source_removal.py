"""Step 3 of a transfer: remove the source of a verified copy, but only the bytes that were
copied.

A camera file goes only if its size and mtime are still those of the copy, unlinked through
its folder's descriptor (a link swapped in for a folder redirects nothing). One the camera
software still holds stays, and the removal is retried (SourceBusy). One rewritten since its
copy sends its row back to "matched": an append's shorter copy is removed, a copy of other
bytes is a movie of its own and goes to quarantine (SourceRewritten). Of a folder, exactly
the members that were copied go, then the folders they leave empty.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from embuffer import journal as j
from embuffer.journal import Journal, Movie
from embuffer.safecopy import nofollow
from embuffer.safecopy.copy import DestinationExists, remove_tree_quietly
from embuffer.safecopy.hashing import bytes_differing

log = logging.getLogger("embuffer.transfer")


class SourceBusy(OSError):
    """The camera copy could not be removed because the camera software still holds it
    (a CIFS sharing violation reads as EACCES, EBUSY or ETXTBSY here). The buffer copy is
    verified and recorded; the removal is simply tried again later."""


class SourceRewritten(Exception):
    """The camera rewrote the file with other bytes after it was copied: the earlier copy is
    a movie of its own. The row is back to "matched" (the file is copied again); the caller
    moves the earlier copy, at `earlier`, out of the buffer root (to quarantine)."""

    def __init__(self, movie_id: int, earlier: Path, source: Path) -> None:
        super().__init__(f"{source} was rewritten after its copy; earlier copy at {earlier}")
        self.movie_id = movie_id
        self.earlier = earlier
        self.source = source


# An append rewrites a few bytes of what was there: an MRC header's nz and sizes, a TIFF
# IFD's link to the next page. More than this differing means other bytes, another movie.
APPEND_REWRITES_AT_MOST_BYTES = 64

# what a Windows share answers when the camera software still has the file open
BUSY_ERRNOS = (errno.EACCES, errno.EBUSY, errno.ETXTBSY, errno.EPERM)


def remove_camera_file(
    journal: Journal, movie: Movie, source: Path, fields: dict[str, object]
) -> bool:
    """Unlink the camera file if it still holds the bytes that were copied (through the
    folder's descriptor: a link swapped in for a folder redirects nothing). False when
    it was rewritten meanwhile (handled: the row is not finished)."""
    with nofollow.folder(source.parent) as folder_fd:
        current = os.stat(source.name, dir_fd=folder_fd, follow_symlinks=False)
        if current.st_size != movie.size or current.st_mtime_ns != movie.source_mtime_ns:
            _source_rewritten(journal, movie, current.st_size)
            return False
        try:
            os.unlink(source.name, dir_fd=folder_fd)
        except OSError as error:
            if error.errno not in BUSY_ERRNOS:
                raise
            _source_busy(journal, movie, fields, error)
    return True


def _source_busy(journal: Journal, movie: Movie, fields: dict[str, object], error: OSError) -> None:
    """Record the verification (so the retry does not re-read the copy) and say why the
    camera copy is still there."""
    verified = {"verified_at": fields["verified_at"]} if "verified_at" in fields else {}
    reason = f"camera still holds the file ({os.strerror(error.errno or 0)}); removal retried"
    with journal.transaction():
        first = movie.reason != reason  # one event per refusal, not one per retry
        journal.update_movie(movie.id, state=j.VERIFIED, reason=reason, **verified)
        if first:
            journal.event(
                "source_busy",
                movie_id=movie.id,
                camera=movie.camera,
                detail=str(movie.source_path),
            )
    raise SourceBusy(error.errno, f"{movie.source_path}: {reason}")


def _source_rewritten(journal: Journal, movie: Movie, new_size: int) -> None:
    """The camera appended to (or rewrote) the file after it was copied, so the copy on
    the buffer is an earlier state of it and must not stay under the final name. When the
    camera's file still holds all of it (an append: at most a header's counts or a page
    link rewritten), the earlier copy is removed; otherwise it is a movie of its own and
    SourceRewritten tells the caller to move it to quarantine. Either way the row goes
    back to "matched", so the next pass copies the file again, whole."""
    dest = movie.dest
    source = movie.source
    size = int(movie.size or 0)
    gone = not os.path.lexists(dest)  # moved to quarantine before a crash: nothing left
    appended = gone or (
        new_size >= size
        and bytes_differing(dest, source, APPEND_REWRITES_AT_MOST_BYTES)
        <= APPEND_REWRITES_AT_MOST_BYTES
    )
    if not appended:
        # the caller moves it to quarantine first, then calls `copy_again`; till then the
        # row keeps its state, so no pass can copy over the earlier copy's name
        journal.event(
            "source_changed",
            movie_id=movie.id,
            camera=movie.camera,
            detail=f"{source} rewritten with other bytes after its copy; the earlier "
            f"copy {dest} goes to quarantine",
        )
        raise SourceRewritten(movie.id, dest, source)
    outcome = "the earlier, shorter copy was removed from the buffer"
    detail = f"{source} changed after its copy ({size} -> {new_size} bytes); {outcome}"
    remove_tree_quietly(dest)
    copy_again(journal, movie.id, outcome)
    with journal.transaction():
        journal.event("source_changed", movie_id=movie.id, camera=movie.camera, detail=detail)
    log.warning("%s; it is copied again", detail)


def copy_again(journal: Journal, movie_id: int, why: str) -> None:
    """Back to "matched": the next pass copies the camera file again, whole."""
    journal.update_movie(
        movie_id,
        state=j.MATCHED,
        size=None,
        hash=None,
        verified_at=None,
        buffer_visible_at=None,
        reason=f"source changed after copy; {why}; copied again",
    )


def rename_aside(earlier: Path, aside: Path) -> None:
    """Rename a published copy to `aside` in its folder, never replacing a file, and make
    the new name durable (its row was made durable before)."""
    if earlier.parent != aside.parent:
        raise ValueError(f"{aside} is not beside {earlier}")
    with nofollow.folder(earlier.parent) as folder_fd:
        try:
            os.link(
                earlier.name,
                aside.name,
                src_dir_fd=folder_fd,
                dst_dir_fd=folder_fd,
                follow_symlinks=False,
            )
        except FileExistsError:
            raise DestinationExists(str(aside)) from None
        os.unlink(earlier.name, dir_fd=folder_fd)
        os.fsync(folder_fd)


def remove_copied_members(source: Path, members: list[tuple[str, int, str]]) -> None:
    """Remove exactly the files that were copied, then the folders they leave empty. Anything
    else that appeared meanwhile (or a symlink) stays, and so does its folder."""
    for relpath, size, _digest in members:
        member = source / relpath
        try:
            info = nofollow.lstat(member)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if info.st_size == size and stat.S_ISREG(info.st_mode):
            nofollow.remove(member)
    for root, dirs, _files in os.walk(source, topdown=False):
        for name in dirs:
            _rmdir_if_empty(Path(root) / name)
    _rmdir_if_empty(source)


def _rmdir_if_empty(folder: Path) -> None:
    try:
        with nofollow.folder(folder.parent) as parent_fd:
            os.rmdir(folder.name, dir_fd=parent_fd)  # refuses a link, and a folder not empty
    except OSError:
        pass
