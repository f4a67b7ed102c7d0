"""Decide when a camera file is whole, and when one that never became whole was abandoned.

A candidate is "settled" when its size and mtime have not changed for the settle window AND
its structure (MRC header, TIFF/EER page chain) says it is whole; formats without a
structure check need the longer unstructured window. One whose structure says incomplete
while nobody writes to it any more (a camera program that crashed mid-movie) is "abandoned"
after the grace period. Symbolic links are never followed.

Every stat and structure open is counted (load.py): they are requests the camera PC's file
server answers. A file judged settled keeps its snapshot and verdict (`remember` seeds them
back after a restart), so it is opened again only when a later stat finds it changed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from embuffer.ingest.load import ShareOps
from embuffer.ingest.scan import Candidate
from embuffer.safecopy.formats import StructureVerdict, check_structure

# however long the grace period, embuffer's own looks must have agreed for at most this long
# before a file is taken for abandoned: the camera's clock alone does not decide
ABANDON_OWN_LOOKS_SECONDS = 60.0


@dataclass(frozen=True)
class Snapshot:
    """What a stat says about a candidate: for a folder, totals over its regular files."""

    size: int
    mtime_ns: int
    entries: int

    @property
    def mtime(self) -> float:
        return self.mtime_ns / 1e9

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

    def seconds_since_written(self) -> float:
        """By the camera's own clock (the file's mtime), which a look of ours cannot race."""
        return time.time() - self.snapshot.mtime


@dataclass
class SettleTracker:
    """Remembers what each candidate looked like, and says which ones are whole."""

    settle_seconds: float
    unstructured_settle_seconds: float
    grace_seconds: float
    watches: dict[str, Watch] = field(default_factory=dict)
    ops: ShareOps = field(default_factory=ShareOps)

    def observe(self, candidate: Candidate, now: float | None = None) -> Watch | None:
        now = time.monotonic() if now is None else now
        self.ops.stats += 1
        try:
            snapshot = Snapshot.of(candidate)
        except FileNotFoundError:
            self.watches.pop(candidate.name, None)
            return None
        if candidate.is_dir:  # the walk read each of its folders and stat'ed each member
            self.ops.listings += 1
            self.ops.stats += snapshot.entries
        watch = self.watches.get(candidate.name)
        if watch is None or watch.snapshot != snapshot:
            watch = Watch(
                candidate, snapshot, now, time.time() if watch is None else watch.first_seen_wall
            )
            self.watches[candidate.name] = watch
        else:
            watch.observations += 1
        return watch

    def remember(
        self,
        candidate: Candidate,
        snapshot: Snapshot,
        verdict: StructureVerdict | None,
        settled_at: float,
    ) -> None:
        """A file an earlier run judged settled (journal.waiting_files): the next stat that
        finds the same snapshot confirms it without opening the file again."""
        stable_for = max(0.0, time.time() - settled_at)
        self.watches[candidate.name] = Watch(
            candidate,
            snapshot,
            time.monotonic() - stable_for,
            settled_at,
            verdict,
            snapshot if verdict is not None else None,
            observations=2,  # the earlier run's looks agreed
        )

    def forget(self, name: str) -> None:
        self.watches.pop(name, None)

    def is_settled(self, watch: Watch, *, first_sight_ok: bool, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        window = self._window(watch)
        stable_for = now - watch.stable_since
        # A file last written longer ago than the window is done, as long as two looks agree
        # (a single look could race a writer that is mid-pause) or this is a one-shot pass
        # that is allowed to trust the first sight.
        old_enough = watch.seconds_since_written() >= window and (
            first_sight_ok or watch.observations >= 2
        )
        if stable_for < window and not old_enough:
            return False
        return self._structure_ok(watch)

    def is_abandoned(self, watch: Watch, now: float | None = None) -> bool:
        """An unsettled file nobody has written to for the grace period: it would sit on the
        camera share for ever, so the worker quarantines it, whole as it is, with the reason."""
        now = time.monotonic() if now is None else now
        limit = max(self.grace_seconds, self.unstructured_settle_seconds)
        own_looks = min(limit, ABANDON_OWN_LOOKS_SECONDS)
        return watch.seconds_since_written() >= limit and now - watch.stable_since >= own_looks

    def _window(self, watch: Watch) -> float:
        verdict = self._verdict(watch)
        if verdict.complete is None:
            return max(self.settle_seconds, self.unstructured_settle_seconds)
        return self.settle_seconds

    def _verdict(self, watch: Watch) -> StructureVerdict:
        if watch.candidate.is_dir:
            return StructureVerdict(None, "folder: timing only")
        if watch.verdict is None or watch.verdict_for != watch.snapshot:
            self.ops.opens += 1
            watch.verdict = check_structure(watch.candidate.path)
            watch.verdict_for = watch.snapshot
        return watch.verdict

    def _structure_ok(self, watch: Watch) -> bool:
        verdict = self._verdict(watch)
        return verdict.complete is not False

    def waiting_reason(self, watch: Watch) -> str:
        verdict = self._verdict(watch)
        return verdict.reason
