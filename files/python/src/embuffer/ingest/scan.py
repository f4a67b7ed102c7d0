"""List the movie candidates at the top level of a camera folder, and decide when each is whole.

Camera shares are CIFS mounts, which deliver no inotify events, so embuffer polls with one
os.scandir per interval (cheap: one directory read) and re-stats only the pending files in
between. A candidate is "settled" when its size and mtime have not changed for the settle
window AND its structure (MRC header, TIFF/EER page chain) says it is whole; formats without
a structure check need the longer unstructured window. Symbolic links are never followed.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from embuffer.safecopy.formats import StructureVerdict, check_structure
from embuffer.safecopy.partials import is_partial_name

log = logging.getLogger("embuffer.scan")

MOVIE_SUFFIXES = (".tif", ".tiff", ".eer")
SIDECAR_SUFFIX = ".xml"


@dataclass(frozen=True)
class Candidate:
    name: str
    path: Path
    is_dir: bool


def is_candidate_name(name: str, is_dir: bool) -> bool:
    if name == ".DS_Store" or is_partial_name(name):
        return False
    if is_dir:
        return name.endswith(".frames") or name.startswith("20")
    lower = name.lower()
    return ".mrc" in lower or lower.endswith(MOVIE_SUFFIXES)


def list_candidates(folder: Path, warned: set[str]) -> list[Candidate]:
    """Top-level candidates; symlinks are skipped (and reported once each)."""
    found: list[Candidate] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_symlink():
                if entry.name not in warned:
                    warned.add(entry.name)
                    log.warning(
                        "skip symlink %r in %s: embuffer never follows links", entry.name, folder
                    )
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if not is_dir and not entry.is_file(follow_symlinks=False):
                continue
            if is_candidate_name(entry.name, is_dir):
                found.append(Candidate(entry.name, Path(entry.path), is_dir))
    found.sort(key=lambda candidate: candidate.name)
    return found


def sidecar_for(candidate: Candidate) -> Path | None:
    """A Falcon `.xml` sidecar with the same stem travels with its movie."""
    if candidate.is_dir:
        return None
    stem = candidate.name.rsplit(".", 1)[0]
    sidecar = candidate.path.with_name(stem + SIDECAR_SUFFIX)
    if sidecar.is_file() and not sidecar.is_symlink():
        return sidecar
    return None


@dataclass(frozen=True)
class Snapshot:
    """What a stat says about a candidate: for a folder, totals over its regular files."""

    size: int
    mtime_ns: int
    entries: int

    @classmethod
    def of(cls, candidate: Candidate) -> Snapshot:
        if not candidate.is_dir:
            info = os.stat(candidate.path, follow_symlinks=False)
            return cls(info.st_size, info.st_mtime_ns, 1)
        size = entries = 0
        newest = os.stat(candidate.path, follow_symlinks=False).st_mtime_ns
        for root, dirs, files in os.walk(candidate.path, followlinks=False):
            for name in files + dirs:
                info = os.stat(os.path.join(root, name), follow_symlinks=False)
                newest = max(newest, info.st_mtime_ns)
                entries += 1
                if name in files:
                    size += info.st_size
        return cls(size, newest, entries)


@dataclass
class Watch:
    candidate: Candidate
    snapshot: Snapshot
    stable_since: float  # monotonic time the snapshot was first seen unchanged
    first_seen_wall: float
    verdict: StructureVerdict | None = None
    verdict_for: Snapshot | None = None
    observations: int = 1


@dataclass
class SettleTracker:
    """Remembers what each candidate looked like, and says which ones are whole."""

    settle_seconds: float
    unstructured_settle_seconds: float
    watches: dict[str, Watch] = field(default_factory=dict)

    def observe(self, candidate: Candidate, now: float | None = None) -> Watch | None:
        now = time.monotonic() if now is None else now
        try:
            snapshot = Snapshot.of(candidate)
        except FileNotFoundError:
            self.watches.pop(candidate.name, None)
            return None
        watch = self.watches.get(candidate.name)
        if watch is None or watch.snapshot != snapshot:
            watch = Watch(
                candidate, snapshot, now, time.time() if watch is None else watch.first_seen_wall
            )
            self.watches[candidate.name] = watch
        else:
            watch.observations += 1
        return watch

    def forget(self, name: str) -> None:
        self.watches.pop(name, None)

    def is_settled(self, watch: Watch, *, first_sight_ok: bool, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        window = self._window(watch)
        stable_for = now - watch.stable_since
        # The camera's own clock: a file last written longer ago than the window is done, as
        # long as two looks agree (a single look could race a writer that is mid-pause) or
        # this is a one-shot pass that is allowed to trust the first sight.
        mtime_age = time.time() - watch.snapshot.mtime_ns / 1e9
        old_enough = mtime_age >= window and (first_sight_ok or watch.observations >= 2)
        if stable_for < window and not old_enough:
            return False
        return self._structure_ok(watch)

    def _window(self, watch: Watch) -> float:
        verdict = self._verdict(watch)
        if verdict.complete is None:
            return max(self.settle_seconds, self.unstructured_settle_seconds)
        return self.settle_seconds

    def _verdict(self, watch: Watch) -> StructureVerdict:
        if watch.candidate.is_dir:
            return StructureVerdict(None, "folder: timing only")
        if watch.verdict is None or watch.verdict_for != watch.snapshot:
            watch.verdict = check_structure(watch.candidate.path)
            watch.verdict_for = watch.snapshot
        return watch.verdict

    def _structure_ok(self, watch: Watch) -> bool:
        verdict = self._verdict(watch)
        return verdict.complete is not False

    def waiting_reason(self, watch: Watch) -> str:
        verdict = self._verdict(watch)
        return verdict.reason
