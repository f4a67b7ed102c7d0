"""One movie from the buffer to primary: copied, re-read from the device, then recorded.

Files are written under a partial name here and published by the finisher (second thread);
folders (DE movies), bzip2 copies and names already on primary are handled whole here. A
movie counts as archived only after its primary copy was re-read and compared.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path

from embuffer.archive.compressed import copy_compressed, hash_compressed
from embuffer.config import Config
from embuffer.journal import Journal, Movie
from embuffer.safecopy import nofollow
from embuffer.safecopy.copy import (
    DestinationExists,
    Ownership,
    Progress,
    copy_path,
    make_folders,
    write_partial,
)
from embuffer.safecopy.hashing import hash_path

log = logging.getLogger("embuffer.archive")

# what the finisher must publish and verify: the movie, its primary path, the partial name
Pending = tuple[Movie, Path, str]


class ConflictOnPrimary(OSError):
    """Primary already holds different bytes under this name; never overwritten."""


class MovieCopier:
    def __init__(
        self,
        config: Config,
        journal: Journal,
        stop: threading.Event,
        interrupt: threading.Event,
    ) -> None:
        assert config.archive.primary is not None
        self.config = config
        self.primary: Path = config.archive.primary
        self.journal = journal
        self.stop = stop
        self.interrupt = interrupt  # set by stop or by a pause seen mid-copy
        self.progress: Progress | None = None  # bytes copied, for a progress bar

    def start(self, movie: Movie) -> Pending | None:
        """Copy a movie to its partial name on primary; returns what the finisher must publish
        and verify, or None when it was handled completely here (folders, bz2, existing)."""
        if not self.primary.is_dir():
            raise FileNotFoundError(f"primary storage {self.primary} is not available")
        if movie.kind == "dir" or self.compressed(movie):
            self.mirror(movie)
            return None
        target = self.primary_path_for(movie)
        ownership = Ownership(movie.uid, movie.gid, self.config.file_mode, self.config.dir_mode)
        make_folders(target.parent, ownership)
        self.interrupt.clear()
        try:
            result = write_partial(
                movie.dest,
                target,
                ownership,
                stop=_either(self.stop, self.interrupt),
                progress=self.progress,
            )
        except DestinationExists:
            self.verify_and_record(movie, target)
            return None
        return movie, target, result.partial

    def primary_path_for(self, movie: Movie) -> Path:
        path = self.primary / str(movie.rel_path)
        if self.compressed(movie):
            path = path.with_name(path.name + ".bz2")
        return path

    def compressed(self, movie: Movie) -> bool:
        return (
            self.config.archive.compress_mrc
            and movie.kind == "file"
            and str(movie.rel_path).endswith(".mrc")
        )

    def mirror(self, movie: Movie) -> None:
        source = movie.dest
        target = self.primary_path_for(movie)
        if not self.primary.is_dir():
            raise FileNotFoundError(f"primary storage {self.primary} is not available")
        ownership = Ownership(movie.uid, movie.gid, self.config.file_mode, self.config.dir_mode)
        make_folders(target.parent, ownership)
        interrupt = _either(self.stop, self.interrupt)
        self.interrupt.clear()
        # DestinationExists: verified below (identical is adopted, different is an error)
        with contextlib.suppress(DestinationExists):
            if self.compressed(movie):
                copy_compressed(source, target, ownership, stop=interrupt)
            else:
                copy_path(source, target, ownership, stop=interrupt, progress=self.progress)
        self.verify_and_record(movie, target)

    def verify_and_record(self, movie: Movie, target: Path) -> None:
        """Re-read the primary copy from the device; only an equal one counts as archived."""
        if self.compressed(movie):
            size, digest = hash_compressed(target)
        else:
            size, digest = hash_path(target, drop_cache=True)
        if (size, digest) != (movie.size, movie.hash):
            raise ConflictOnPrimary(
                f"{target} holds different bytes ({digest}) than the buffer copy "
                f"({movie.hash}); not overwritten, resolve by hand"
            )
        with self.journal.transaction():
            self.journal.update_movie(
                movie.id,
                primary_path=str(target),
                primary_hash=digest,
                primary_size=size if nofollow.is_folder(target) else nofollow.lstat(target).st_size,
                primary_verified_at=time.time(),
                archive_error=None,
            )
            self.journal.event(
                "archived",
                movie_id=movie.id,
                camera=movie.camera,
                nbytes=movie.size,
                detail=str(target),
            )
        log.info("archived %s -> %s (verified)", movie.dest_path, target)


def _either(first: threading.Event, second: threading.Event) -> threading.Event:
    """An event view that is set when either is (copy loops check `is_set()` only)."""

    class Either(threading.Event):
        def is_set(self) -> bool:
            return first.is_set() or second.is_set()

    return Either()
