"""Settled camera files that wait on the camera share: when each is looked at again, and how
many such looks one pass may make.

A file waits after it settled when no Leginon image matches it yet (Leginon may write the row
after the file; the camera's grace period bounds the wait), when its session has no buffer
folder, or when it belongs to another buffer's destination head. Looking at such a file costs
a stat on the camera share (a request the camera PC's SMB server answers: the folder listing
gives names and types, not sizes or times) and a lookup in leginondb (a few queries). So:

- between looks a waiting file costs nothing but its name in the listing: no stat, no open;
- looks follow a backoff, FIRST_LOOK_SECONDS doubling to LOOK_CAP_SECONDS, and the last one
  falls on the end of the grace period, so the quarantine that follows rests on a fresh
  lookup, never on a stale answer;
- each look starts with a stat; a file whose size or mtime changed is pending again (settle.py
  re-checks it, structure included); one that did not is not opened again;
- new and pending files come first in every pass, and looks at waiting files are rationed
  (BACKLOG_LOOKS_PER_SECOND, at most BACKLOG_SECONDS_PER_PASS of each pass), so a backlog of
  thousands neither delays a new movie nor loads leginondb and the camera PC with thousands
  of requests a second; files that just started waiting share the ration with the old ones,
  turn about, so that neither starves.

What was found (snapshot, structure verdict, backoff step) is kept in the journal
(journal/waiting_files.py): after a restart a waiting file whose stat still agrees is not
opened again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from embuffer.ingest.scan import Candidate
from embuffer.ingest.settle import SettleTracker, Snapshot, Watch
from embuffer.journal import Journal
from embuffer.journal.waiting_files import (
    WaitingRecord,
    forget_waiting,
    save_waiting,
    waiting_records,
)
from embuffer.safecopy.formats import StructureVerdict

FIRST_LOOK_SECONDS = 5.0
LOOK_CAP_SECONDS = 60.0
# ~4 statements per lookup (one per image table) keeps a backlog under ~16 queries/s, and one
# stat per look keeps its requests on the camera PC near a dozen a second, however many wait
BACKLOG_LOOKS_PER_SECOND = 4.0
BACKLOG_SECONDS_PER_PASS = 0.5
# the look at the end of a grace period comes this much after it, never a clock tick before
GRACE_END_SLACK_SECONDS = 1.0


def look_interval(looks: int) -> float:
    """Seconds before the next look, after `looks` looks that left the file waiting."""
    return float(min(LOOK_CAP_SECONDS, FIRST_LOOK_SECONDS * 2 ** max(0, looks - 1)))


@dataclass
class _Waiting:
    looks: int
    due: float  # monotonic
    settled_at: float  # wall clock


class LookRation:
    """A token bucket: BACKLOG_LOOKS_PER_SECOND, saved up for at most one second."""

    def __init__(self, per_second: float | None = None) -> None:
        self.per_second = BACKLOG_LOOKS_PER_SECOND if per_second is None else per_second
        self.tokens = self.per_second
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.per_second, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class WaitingFiles:
    """The waiting files of one camera."""

    def __init__(self, journal: Journal, camera: str, folder: Path, grace_seconds: float) -> None:
        self.journal = journal
        self.camera = camera
        self.folder = folder
        self.grace_seconds = grace_seconds
        self.ration = LookRation()
        self._waiting: dict[str, _Waiting] = {}

    def restore(self, tracker: SettleTracker) -> int:
        """Take up what an earlier run recorded; returns how many files wait."""
        stale: list[str] = []
        now, wall = time.monotonic(), time.time()
        for record in waiting_records(self.journal.db, self.camera):
            path = Path(record.source_path)
            if path.parent != self.folder:
                stale.append(record.source_path)  # the camera folder was moved in the config
                continue
            candidate = Candidate(path.name, path, record.kind == "dir")
            snapshot = Snapshot(record.size, record.mtime_ns, record.entries)
            verdict = None
            if record.kind != "dir" and record.verdict_reason:  # '': never checked, so open it
                verdict = StructureVerdict(
                    record.complete, record.verdict_reason, record.expected_size, record.frames
                )
            tracker.remember(candidate, snapshot, verdict, record.settled_at)
            due = now + min(record.next_look_at - wall, LOOK_CAP_SECONDS)
            self._waiting[path.name] = _Waiting(record.looks, due, record.settled_at)
        forget_waiting(self.journal, self.camera, stale)
        return len(self._waiting)

    def __contains__(self, name: str) -> bool:
        return name in self._waiting

    def __len__(self) -> int:
        return len(self._waiting)

    def plan(
        self, candidates: list[Candidate], *, all_due: bool
    ) -> tuple[list[Candidate], list[Candidate], int]:
        """(pending, due waiting files in the order to look at them, waiting files not due)."""
        now = time.monotonic()
        pending: list[Candidate] = []
        due: list[Candidate] = []
        for candidate in candidates:
            entry = self._waiting.get(candidate.name)
            if entry is None:
                pending.append(candidate)
            elif all_due or entry.due <= now:
                due.append(candidate)
        return pending, self._turn_about(due), len(candidates) - len(pending) - len(due)

    def _turn_about(self, due: list[Candidate]) -> list[Candidate]:
        """Files still early in their backoff and files at its cap, alternately, each kind
        longest-due first."""

        def key(candidate: Candidate) -> float:
            return self._waiting[candidate.name].due

        young = sorted((c for c in due if self._interval(c.name) < LOOK_CAP_SECONDS), key=key)
        old = sorted((c for c in due if self._interval(c.name) >= LOOK_CAP_SECONDS), key=key)
        turns: list[Candidate] = []
        for index in range(max(len(young), len(old))):
            turns.extend(kind[index] for kind in (young, old) if index < len(kind))
        return turns

    def _interval(self, name: str) -> float:
        return look_interval(self._waiting[name].looks)

    def defer(self, watch: Watch, grace_ends: float | None) -> None:
        """A settled file stays on the share after this look: record it, due again after the
        backoff, or at the end of its grace period (`grace_ends`, wall clock) if sooner."""
        candidate = watch.candidate
        entry = self._waiting.get(candidate.name)
        looks = 1 if entry is None else entry.looks + 1
        settled_at = time.time() if entry is None else entry.settled_at
        wait = look_interval(looks)
        wall = time.time()
        if grace_ends is not None and grace_ends > wall:
            wait = min(wait, grace_ends - wall + GRACE_END_SLACK_SECONDS)
        self._waiting[candidate.name] = _Waiting(looks, time.monotonic() + wait, settled_at)
        verdict = watch.verdict if watch.verdict_for == watch.snapshot else None
        save_waiting(
            self.journal,
            self.camera,
            WaitingRecord(
                str(candidate.path),
                "dir" if candidate.is_dir else "file",
                watch.snapshot.size,
                watch.snapshot.mtime_ns,
                watch.snapshot.entries,
                None if verdict is None else verdict.complete,
                "" if verdict is None else verdict.reason,
                None if verdict is None else verdict.expected_size,
                None if verdict is None else verdict.frames,
                settled_at,
                looks,
                wall + wait,
            ),
        )

    def forget(self, *names: str) -> None:
        """These files no longer wait (taken, changed, or gone from the share)."""
        known = [name for name in names if self._waiting.pop(name, None) is not None]
        forget_waiting(self.journal, self.camera, (str(self.folder / name) for name in known))
