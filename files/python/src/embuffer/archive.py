"""Archive: buffer -> primary storage, same relative layout, verified; the buffer copy stays.

The backlog is every buffer movie whose primary copy is not verified yet, so whatever
arrived while the archive was down, paused or failing is simply still in the backlog; at
start (and every RECONCILE_SECONDS) files on the buffer that the journal does not know, for
example written by Leginon itself during an outage, are adopted: hashed and queued. A primary
store that is unreachable, read-only or full is retried with backoff and reported; a movie
is marked archived only after its primary copy was re-read from the device and compared.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from embuffer import journal as j
from embuffer.config import Config
from embuffer.journal import Journal, Movie
from embuffer.leginondb import Backoff
from embuffer.mirror import copy_compressed, hash_compressed, sync_references
from embuffer.verified_copy import (
    CopyAborted,
    DestinationExists,
    Ownership,
    copy_path,
    hash_path,
    is_partial_name,
    make_folders,
)

log = logging.getLogger("embuffer.archive")
RECONCILE_SECONDS = 3600.0
PAUSE_KEY = "archive_pause"


def pause(journal: Journal, reason: str) -> bool:
    """Pause the archive durably; False when it was already paused for this reason."""
    current = journal.get_setting(PAUSE_KEY)
    if current and current.get("reason") == reason:
        return False  # keep the original start time
    journal.set_setting(
        PAUSE_KEY,
        {
            "reason": reason,
            "since": time.time(),
            "by": os.environ.get("SUDO_USER") or os.environ.get("USER"),
        },
    )
    journal.event("archive_paused", detail=reason)
    log.warning("archive paused: %s", reason)
    return True


def resume(journal: Journal) -> bool:
    if journal.get_setting(PAUSE_KEY) is None:
        return False
    journal.delete_setting(PAUSE_KEY)
    journal.event("archive_resumed")
    log.info("archive resumed")
    return True


def backlog(journal: Journal) -> list[Movie]:
    return journal.movies(
        "state IN (?, ?) AND target = 'buffer' AND primary_verified_at IS NULL",
        (j.DONE, j.VERIFIED),
    )


def session_of(rel_path: str) -> str | None:
    """Leginon keeps a session's frames in `<...>/<session>/rawdata/`."""
    parts = Path(rel_path).parts[:-1]
    if len(parts) >= 2 and parts[-1] == "rawdata":
        return parts[-2]
    return parts[-1] if parts else None


class Archiver:
    def __init__(self, config: Config, journal: Journal, stop: threading.Event) -> None:
        assert config.archive.primary is not None
        self.config = config
        self.primary: Path = config.archive.primary
        self.journal = journal
        self.stop = stop
        self.backoff = Backoff(first=5.0, cap=300.0)
        self._interrupt = threading.Event()  # set by stop or by a pause seen mid-copy

    # ---- service loop --------------------------------------------------------------------
    def run_forever(self) -> None:
        watcher = threading.Thread(target=self._watch_pause, daemon=True)
        watcher.start()
        last_reconcile = 0.0
        while not self.stop.is_set():
            if self.paused():
                self.stop.wait(1.0)
                continue
            if time.monotonic() - last_reconcile > RECONCILE_SECONDS:
                self.reconcile()
                last_reconcile = time.monotonic()
            if self.backoff.ready():
                self.mirror_backlog()
            self.stop.wait(self.config.archive.poll_seconds)

    def run_once(self) -> bool:
        """Mirror everything ready now. True when nothing is left behind."""
        if self.paused():
            log.warning(
                "archive is paused (%s); nothing mirrored",
                self.journal.get_setting(PAUSE_KEY).get("reason"),
            )
            return True
        self.reconcile()
        return self.mirror_backlog()

    def paused(self) -> bool:
        return self.journal.get_setting(PAUSE_KEY) is not None

    def _watch_pause(self) -> None:
        journal = Journal(self.journal.path)  # its own connection for this thread
        while not self.stop.is_set():
            if journal.get_setting(PAUSE_KEY) is not None:
                self._interrupt.set()
            self.stop.wait(1.0)
        self._interrupt.set()

    # ---- reconcile: adopt what the journal does not know ---------------------------------
    def reconcile(self) -> int:
        root = self.config.buffer_root
        known = {
            row[0]
            for row in self.journal.db.execute(
                "SELECT rel_path FROM movies WHERE rel_path IS NOT NULL AND state != ?", (j.PURGED,)
            )
        }
        adopted = 0
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d != "references" and not is_partial_name(d)]
            here = Path(folder)
            for name in list(dirs):
                if name.endswith(".frames"):
                    dirs.remove(name)  # a DE movie folder is one movie
                    adopted += self._adopt(here / name, root, known, is_dir=True)
            for name in files:
                if not is_partial_name(name) and not (here / name).is_symlink():
                    adopted += self._adopt(here / name, root, known, is_dir=False)
        if adopted:
            log.info(
                "adopted %d file(s) found on the buffer that the journal did not know", adopted
            )
        return adopted

    def _adopt(self, path: Path, root: Path, known: set[str], *, is_dir: bool) -> int:
        rel = str(path.relative_to(root))
        if rel in known:
            return 0
        try:
            size, digest = hash_path(path)
            info = path.stat(follow_symlinks=False)
        except OSError as error:
            log.error("cannot adopt %s: %s", path, error)
            return 0
        now = time.time()
        movie_id = self.journal.insert_movie(
            camera="adopted",
            kind="dir" if is_dir else "file",
            state=j.DONE,
            target="buffer",
            size=size,
            hash=digest,
            dest_path=str(path),
            rel_path=rel,
            uid=info.st_uid,
            gid=info.st_gid,
            session_name=session_of(rel),
            first_seen=now,
            closed_at=info.st_mtime,
            buffer_visible_at=info.st_mtime,
            verified_at=now,
        )
        self.journal.event("adopted", movie_id=movie_id, nbytes=size, detail=str(path))
        known.add(rel)
        return 1

    # ---- mirror --------------------------------------------------------------------------
    def mirror_backlog(self) -> bool:
        clean = True
        sessions: set[Path] = set()
        for movie in backlog(self.journal):
            if self.stop.is_set() or self.paused():
                return False
            try:
                self.mirror(movie)
                sessions.add(Path(movie.dest_path).parent)
                self.backoff.succeeded()
            except CopyAborted:
                return False
            except OSError as error:
                clean = False
                delay = self.backoff.failed()
                self.journal.update_movie(movie.id, archive_error=str(error))
                self.journal.event("archive_error", movie_id=movie.id, detail=str(error))
                log.error(
                    "archive of %s failed: %s; retry in %.0f s", movie.dest_path, error, delay
                )
                return False
        for folder in sessions:
            try:
                sync_references(folder, self.config.buffer_root, self.primary)
            except OSError as error:
                log.error("references of %s not mirrored: %s", folder, error)
                clean = False
        return clean

    def primary_path_for(self, movie: Movie) -> Path:
        path = self.primary / str(movie.rel_path)
        if self._compressed(movie):
            path = path.with_name(path.name + ".bz2")
        return path

    def _compressed(self, movie: Movie) -> bool:
        return (
            self.config.archive.compress_mrc
            and movie.kind == "file"
            and str(movie.rel_path).endswith(".mrc")
        )

    def mirror(self, movie: Movie) -> None:
        source = Path(movie.dest_path)
        target = self.primary_path_for(movie)
        if not self.primary.is_dir():
            raise FileNotFoundError(f"primary storage {self.primary} is not available")
        ownership = Ownership(movie.uid, movie.gid, self.config.file_mode, self.config.dir_mode)
        make_folders(target.parent, ownership)
        interrupt = _either(self.stop, self._interrupt)
        self._interrupt.clear()
        try:
            if self._compressed(movie):
                copy_compressed(source, target, ownership, stop=interrupt)
            else:
                copy_path(source, target, ownership, stop=interrupt)
        except DestinationExists:
            pass  # verified below: identical is adopted, different is an error
        if self._compressed(movie):
            size, digest = hash_compressed(target)
        else:
            size, digest = hash_path(target, drop_cache=True)
        if (size, digest) != (movie.size, movie.hash):
            raise FileExistsError(
                f"{target} holds different bytes ({digest}) than the buffer copy "
                f"({movie.hash}); not overwritten, resolve by hand"
            )
        now = time.time()
        self.journal.update_movie(
            movie.id,
            primary_path=str(target),
            primary_hash=digest,
            primary_size=target.stat().st_size if not target.is_dir() else size,
            primary_verified_at=now,
            archive_error=None,
        )
        self.journal.event(
            "archived",
            movie_id=movie.id,
            camera=movie.camera,
            nbytes=movie.size,
            detail=str(target),
        )
        log.info("archived %s -> %s (verified)", source, target)


def _either(first: threading.Event, second: threading.Event) -> threading.Event:
    """An event view that is set when either is (copy loops check `is_set()` only)."""

    class Either(threading.Event):
        def is_set(self) -> bool:
            return first.is_set() or second.is_set()

    return Either()
