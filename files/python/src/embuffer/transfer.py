"""Move one journal row's file from a source to a destination without ever losing it.

The steps and the journal state written around each (see journal.py for the states):
  COPYING   -> copy to a partial name, hash in flight, fsync, publish       (verified_copy)
  COPIED    -> re-read the published copy from the device, compare hashes
  VERIFIED  -> remove the source, but only if it is still the file that was copied
  DONE / QUARANTINED
A crash between any two steps is repaired by `recover()`, which only ever finishes a step
or undoes a partial one: a source is never removed before its copy was verified.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from embuffer import journal as j
from embuffer.journal import Journal, Movie
from embuffer.verified_copy import (
    CopyResult,
    DestinationExists,
    Ownership,
    copy_path,
    hash_path,
    make_folders,
    partial_path,
    remove_tree_quietly,
)

log = logging.getLogger("embuffer.transfer")


class VerificationFailed(Exception):
    pass


@dataclass
class Transfer:
    """The copy/verify/remove-source machinery bound to one journal."""

    journal: Journal
    stop: threading.Event

    # ---- step 1: copy ----------------------------------------------------------------------
    def copy(self, movie_id: int, source: Path, dest: Path, ownership: Ownership) -> bool:
        """Copy and publish. True when the destination now holds the source's bytes
        (state COPIED, or VERIFIED when an identical copy was already there). False when the
        destination holds DIFFERENT bytes: the caller decides (quarantine)."""
        self.journal.update_movie(
            movie_id,
            state=j.COPYING,
            dest_path=str(dest),
            copy_started_at=time.time(),
            attempts=self.journal.movie(movie_id).attempts + 1,
        )
        make_folders(dest.parent, ownership)
        try:
            result = copy_path(source, dest, ownership, stop=self.stop)
        except DestinationExists:
            return self._adopt_existing(movie_id, source, dest)
        except BaseException:
            # Nothing published; back to "matched" so the next pass tries again.
            self.journal.update_movie(movie_id, state=j.MATCHED)
            raise
        self._record_copy(movie_id, result)
        return True

    def _record_copy(self, movie_id: int, result: CopyResult) -> None:
        self.journal.update_movie(
            movie_id,
            state=j.COPIED,
            size=result.size,
            hash=result.hash,
            source_mtime_ns=result.source_mtime_ns,
            manifest=_manifest_json(result),
            buffer_visible_at=time.time(),
        )

    def _adopt_existing(self, movie_id: int, source: Path, dest: Path) -> bool:
        """The final name is taken (a repeat, or our own copy published just before a crash).
        Identical bytes: count it as verified. Different bytes: never overwrite."""
        source_size, source_hash = hash_path(source)
        dest_size, dest_hash = hash_path(dest, drop_cache=True)
        if (source_size, source_hash) != (dest_size, dest_hash):
            self.journal.update_movie(movie_id, state=j.MATCHED)
            return False
        stat = source.stat(follow_symlinks=False)
        self.journal.update_movie(
            movie_id,
            state=j.VERIFIED,
            size=source_size,
            hash=source_hash,
            source_mtime_ns=_tree_mtime(source, stat.st_mtime_ns),
            buffer_visible_at=time.time(),
            verified_at=time.time(),
        )
        self.journal.event("identical_exists", movie_id=movie_id, detail=str(dest))
        return True

    # ---- step 2: verify --------------------------------------------------------------------
    def verify(self, movie_id: int) -> None:
        movie = self.journal.movie(movie_id)
        dest = Path(movie.dest_path)
        size, digest = hash_path(dest, drop_cache=True)
        if (size, digest) != (movie.size, movie.hash):
            # Our copy is bad and the source is intact: discard the copy, retry later.
            self.journal.event(
                "verify_failed",
                movie_id=movie_id,
                camera=movie.camera,
                detail=f"{dest}: {digest} != {movie.hash}",
            )
            remove_tree_quietly(dest)
            self.journal.update_movie(
                movie_id, state=j.MATCHED, reason=f"verification failed at {time.ctime()}"
            )
            raise VerificationFailed(f"{dest} re-read as {digest}, copied as {movie.hash}")
        self.journal.update_movie(movie_id, state=j.VERIFIED, verified_at=time.time())

    # ---- step 3: remove the source ---------------------------------------------------------
    def remove_source(self, movie_id: int, final_state: str) -> None:
        movie = self.journal.movie(movie_id)
        source = Path(movie.source_path)
        if os.path.lexists(source):
            if movie.kind == "dir":
                _remove_copied_members(source, movie.members)
            else:
                current = source.stat(follow_symlinks=False)
                if current.st_size != movie.size or current.st_mtime_ns != movie.source_mtime_ns:
                    # Rewritten since the copy: keep it; the next pass treats it as new.
                    self.journal.event(
                        "source_changed", movie_id=movie_id, camera=movie.camera, detail=str(source)
                    )
                    self.journal.update_movie(
                        movie_id,
                        state=final_state,
                        source_removed_at=None,
                        reason="source rewritten after copy; kept",
                    )
                    return
                os.unlink(source)
            _fsync_parent(source)
        self.journal.update_movie(movie_id, state=final_state, source_removed_at=time.time())

    # ---- crash repair ----------------------------------------------------------------------
    def recover(self, movie: Movie) -> str:
        """Bring a row left mid-flight by a crash to a consistent state; returns what was done."""
        if movie.state in (j.SEEN, j.MATCHED, j.COPYING):
            if movie.dest_path:
                remove_tree_quietly(partial_path(Path(movie.dest_path)))
            if movie.state == j.COPYING:
                self.journal.update_movie(movie.id, state=j.MATCHED)
            if not os.path.lexists(movie.source_path or ""):
                self.journal.update_movie(
                    movie.id, state=j.VANISHED, reason="source disappeared before it was copied"
                )
                return "vanished"
            return "retry"
        if movie.state == j.COPIED:
            self.verify(movie.id)
        final = j.QUARANTINED if _in_quarantine(movie) else j.DONE
        self.remove_source(movie.id, final)
        return "finished"


def _in_quarantine(movie: Movie) -> bool:
    return bool(movie.target == "quarantine")


def _manifest_json(result: CopyResult) -> str | None:
    if not result.manifest:
        return None
    import json

    return json.dumps(result.manifest)


def _tree_mtime(path: Path, default: int) -> int:
    if not path.is_dir():
        return default
    newest = default
    for root, _dirs, files in os.walk(path):
        for name in files:
            newest = max(
                newest, os.stat(os.path.join(root, name), follow_symlinks=False).st_mtime_ns
            )
    return newest


def _remove_copied_members(source: Path, members: list[tuple[str, int, str]]) -> None:
    """Remove exactly the files that were copied, then the folders they leave empty. Anything
    else that appeared meanwhile (or a symlink) stays, and so does its folder."""
    for relpath, size, _digest in members:
        member = source / relpath
        try:
            info = member.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if info.st_size == size and not member.is_symlink():
            os.unlink(member)
    for root, dirs, _files in os.walk(source, topdown=False):
        for name in dirs:
            _rmdir_if_empty(Path(root) / name)
    _rmdir_if_empty(source)


def _rmdir_if_empty(folder: Path) -> None:
    try:
        if not folder.is_symlink():
            folder.rmdir()
    except OSError:
        pass


def _fsync_parent(path: Path) -> None:
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # CIFS may refuse fsync on a folder; the unlink itself is already done
    finally:
        os.close(fd)
