"""Adopt what the journal does not know: files on the buffer nobody copied (written by Leginon
itself during an outage, say, or left by the legacy tools) are hashed and queued for the
archive once they are settled."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

from embuffer import journal as j
from embuffer.config import CameraConfig, Config
from embuffer.journal import Journal
from embuffer.journal import queries as q
from embuffer.safecopy import nofollow
from embuffer.safecopy.formats import check_structure
from embuffer.safecopy.hashing import hash_path
from embuffer.safecopy.partials import is_partial_name

log = logging.getLogger("embuffer.archive")


def session_of(rel_path: str) -> str | None:
    """Leginon keeps a session's frames in `<...>/<session>/rawdata/`."""
    parts = Path(rel_path).parts[:-1]
    if len(parts) >= 2 and parts[-1] == "rawdata":
        return parts[-2]
    return parts[-1] if parts else None


class Reconciler:
    def __init__(self, config: Config, journal: Journal) -> None:
        self.config = config
        self.journal = journal
        self.unsettled_seen = False  # met a file still being written: look again soon

    def run(self) -> int:
        root = self.config.buffer_root
        known = q.known_rel_paths(self.journal.db)
        adopted = 0
        with nofollow.folder(root) as root_fd:
            # descriptor-based walk: a folder swapped for a link meanwhile is not entered
            for folder, dirs, files, folder_fd in os.fwalk(".", dir_fd=root_fd):
                dirs[:] = [d for d in dirs if d != "references" and not is_partial_name(d)]
                here = Path(os.path.normpath(root / folder))
                for name in list(dirs):
                    if name.endswith(".frames"):
                        dirs.remove(name)  # a DE movie folder is one movie
                        adopted += self._adopt(here / name, root, known, is_dir=True)
                for name in files:
                    info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
                    if not is_partial_name(name) and stat.S_ISREG(info.st_mode):
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
            if not self._settled(path, is_dir=is_dir):
                return 0  # still being written (by Leginon in an outage, say): next pass
            info = nofollow.lstat(path)
            size, digest = hash_path(path)
            if nofollow.lstat(path).st_mtime_ns != info.st_mtime_ns:
                return 0  # written to while it was hashed
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
            # A file found on the buffer has been there since it was last written (a
            # migration from the legacy tools, frames Leginon wrote here in an outage): its
            # age for purge counts from then, not from today (purge.py names which was used).
            verified_at=min(now, info.st_mtime),
            buffer_mtime_ns=info.st_mtime_ns,  # what purge re-checks before removing it
        )
        self.journal.event("adopted", movie_id=movie_id, nbytes=size, detail=str(path))
        known.add(rel)
        return 1

    def _settled(self, path: Path, *, is_dir: bool) -> bool:
        """The ingest's rule for a file nobody copied: unchanged for the longest settle
        window of any camera; one whose structure says incomplete, for the grace period
        (then it is taken as it is, as the ingest quarantines an abandoned movie whole)."""
        cameras = self.config.cameras
        # no camera cannot pass load_config; the defaults stand in all the same
        window = max(
            (c.unstructured_settle_seconds for c in cameras),
            default=CameraConfig.unstructured_settle_seconds,
        )
        newest = nofollow.lstat(path).st_mtime
        if is_dir:
            for member in nofollow.regular_files(path):
                newest = max(newest, nofollow.lstat(path / member).st_mtime)
        unchanged = time.time() - newest
        if unchanged >= window and (is_dir or check_structure(path).complete is not False):
            return True
        grace = max(
            (c.grace_minutes * 60 for c in cameras), default=CameraConfig.grace_minutes * 60
        )
        if unchanged >= max(window, grace):
            return True
        self.unsettled_seen = True  # look again soon, not at the next hourly reconcile
        return False
