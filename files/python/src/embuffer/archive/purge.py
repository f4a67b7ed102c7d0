"""Purge: remove buffer copies that primary storage holds, verified; never anything else.

Eligible: a buffer movie (state done) whose primary copy was verified by the archive, not in
a session marked "keep". Two reasons to remove one, oldest first:
  - age: on the buffer longer than the retention;
  - space: the buffer filesystem is above the high watermark; then go on until it is under
    the low watermark.
Before each removal the buffer copy is checked to be the one the archive read (its size,
mtime, ctime, inode and device; re-hashed when any changed, or when none was recorded:
buffer_check.py) and the primary copy again (exists, recorded size; with --paranoid both are
re-hashed). A buffer copy whose bytes changed after its archive is archived again, never
removed. Right before the removal its identity is read once more: a copy edited while
primary was checked (seconds per GB with --paranoid) is kept for the next purge. Each removal
is journalled with its evidence. When the low watermark
cannot be reached with eligible copies alone, the report says so and the exit code is
non-zero: that is the signal that primary storage is behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from embuffer import journal as j
from embuffer.archive import buffer_identity as ident
from embuffer.archive.buffer_check import BufferCheck, check_buffer_copy
from embuffer.archive.compressed import hash_compressed
from embuffer.config import Config
from embuffer.journal import Journal, Movie
from embuffer.journal import queries as q
from embuffer.safecopy import nofollow
from embuffer.safecopy.hashing import hash_path, tree_size

log = logging.getLogger("embuffer.purge")


class ChangedSinceCheck(OSError):
    """The buffer copy is no longer the one purge checked: it stays, the next purge looks."""


def age_basis(movie: Movie) -> str:
    """Which time a movie's age on the buffer counts from, for the evidence log."""
    if movie.camera == "adopted":
        return "the file's mtime on the buffer (adopted: it was there before the journal knew it)"
    if movie.verified_at is not None:
        return "its verification on the buffer"
    return "its first sight on the camera share"


@dataclass
class PurgeReport:
    lines: list[str] = field(default_factory=list)
    removed: int = 0
    removed_bytes: int = 0
    reached_target: bool = True

    def say(self, line: str, level: int = logging.INFO) -> None:
        self.lines.append(line)
        log.log(level, "%s", line)


class Purger:
    def __init__(self, config: Config, journal: Journal, *, paranoid: bool = False) -> None:
        self.config = config
        self.journal = journal
        self.paranoid = paranoid

    def used_percent(self) -> float:
        usage = shutil.disk_usage(self.config.buffer_root)
        return 100.0 * usage.used / usage.total if usage.total else 0.0

    def _eligible_sorted(self, batch: int = 2000) -> Iterator[Movie]:
        """Verified-on-primary buffer copies not in a "keep" session, oldest first, read in
        batches so a huge journal is never loaded."""
        last_key, last_id = -1.0, -1
        while True:
            movies = q.purge_candidates(self.journal.db, (last_key, last_id), batch)
            if not movies:
                return
            yield from movies
            last_key = float(movies[-1].verified_at or movies[-1].first_seen)
            last_id = movies[-1].id

    def run(self, *, dry_run: bool = False) -> PurgeReport:
        report = PurgeReport()
        now = time.time()
        retention = self.config.purge.retention_days * 86400.0
        high = self.config.purge.high_watermark_percent
        low = self.config.purge.low_watermark_percent
        used = self.used_percent()
        freeing = used > high
        planned_free = 0
        total = shutil.disk_usage(self.config.buffer_root).total or 1
        verb = "would remove" if dry_run else "removed"
        for movie in self._eligible_sorted():
            age = now - float(movie.verified_at or movie.first_seen)
            projected = used - 100.0 * planned_free / total
            if age >= retention:
                why = (
                    f"older than {self.config.purge.retention_days:g} days ({age / 86400:.1f} d, "
                    f"counted from {age_basis(movie)})"
                )
            elif freeing and projected > low:
                why = f"buffer above {high:g} % used (now {projected:.1f} %)"
            else:
                break  # oldest first: nothing younger is due, and space is fine
            buffer = check_buffer_copy(self.journal, movie, paranoid=self.paranoid, dry_run=dry_run)
            problem = buffer.keep or self._primary_problem(movie)
            if problem:
                report.say(f"keep {movie.dest_path}: {problem}", logging.ERROR)
                continue
            report.say(
                f"{verb} {movie.dest_path}: {why}; primary {movie.primary_path} "
                f"verified {time.ctime(movie.primary_verified_at)}"
            )
            planned_free += int(movie.size or 0)
            if not dry_run:
                try:
                    self._remove(movie, why, buffer)
                except OSError as error:  # a folder swapped for a link meanwhile, say
                    report.say(f"keep {movie.dest_path}: not removed ({error})", logging.ERROR)
                    continue
                report.removed += 1
                report.removed_bytes += int(movie.size or 0)
        final = self.used_percent() if not dry_run else used - 100.0 * planned_free / total
        if freeing and final > low:
            report.reached_target = False
            pending = q.archive_backlog(self.journal.db)
            report.say(
                f"buffer still {final:.1f} % used, above the low watermark {low:g} %: "
                f"{pending.files} movie(s) ({pending.bytes} bytes) are not verified on primary yet "
                "and cannot be purged; primary storage is behind (check `embuffer status`)",
                logging.ERROR,
            )
        report.say(
            f"{report.removed if not dry_run else 'no'} buffer copies removed"
            + (" (dry run)" if dry_run else f", {report.removed_bytes} bytes freed")
        )
        return report

    def _primary_problem(self, movie: Movie) -> str | None:
        """Why the primary copy cannot be trusted right now, or None when it can."""
        primary = Path(movie.primary_path or "")
        try:
            if nofollow.is_folder(primary):
                size = tree_size(primary)
                expected = movie.size
            else:
                size = nofollow.lstat(primary).st_size
                expected = movie.primary_size
        except OSError as error:
            return f"primary copy not reachable ({error})"
        if size != expected:
            return f"primary copy {primary} has {size} bytes, journal says {expected}"
        if self.paranoid:
            if primary.name.endswith(".bz2"):
                _, digest = hash_compressed(primary)
            else:
                _, digest = hash_path(primary, drop_cache=True)
            if digest != movie.hash:
                return f"primary copy {primary} re-hashed as {digest}, journal says {movie.hash}"
        return None

    def _remove(self, movie: Movie, why: str, buffer_check: BufferCheck) -> None:
        path = movie.dest
        evidence = json.dumps(
            {
                "primary_path": movie.primary_path,
                "hash": movie.hash,
                "primary_verified_at": movie.primary_verified_at,
                "why": why,
                "age_from": age_basis(movie),
                "paranoid": self.paranoid,
                "buffer_check": buffer_check.how,
            }
        )
        # The archive service commits without syncing each commit (journal/store.py): the primary
        # verification read for this movie must be on the device before its buffer copy goes.
        self.journal.make_durable()
        # Through the folder's descriptor: a session folder swapped for a link meanwhile
        # makes this fail, it never removes what the link points to.
        with (
            contextlib.suppress(FileNotFoundError, NotADirectoryError),
            nofollow.folder(path.parent) as folder_fd,
        ):
            with contextlib.suppress(FileNotFoundError):
                _still_as_checked(path, buffer_check.identity)
                nofollow.remove_in(folder_fd, path.name)
            # The removal made durable before the journal says "purged": a power cut would
            # otherwise bring the copy back as a stranger the archive adopts again.
            os.fsync(folder_fd)
        self.journal.update_movie(
            movie.id, state=j.PURGED, purged_at=time.time(), purge_evidence=evidence
        )
        self.journal.event(
            "purged", movie_id=movie.id, camera=movie.camera, nbytes=movie.size, detail=evidence
        )


def _still_as_checked(path: Path, checked: ident.BufferIdentity | None) -> None:
    """Raise ChangedSinceCheck unless the buffer copy is as its check found it (gone, when it
    found none); FileNotFoundError when it is gone. A few lstat calls, no byte read."""
    try:
        now = ident.current(path)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise ChangedSinceCheck(
            f"buffer copy {path} changed since it was checked ({error})"
        ) from None
    if checked is None or replace(now, ctime_trusted=checked.ctime_trusted) != checked:
        raise ChangedSinceCheck(
            f"buffer copy {path} changed since it was checked; kept for the next purge"
        )
