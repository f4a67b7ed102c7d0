"""Failures per camera file: back off, retry, and after repeated failures hold.

A file whose handling fails (a bug, a corrupt header that trips a parser, a filesystem
answering oddly, an I/O error of any errno on the file or on one of its members, a database
error about its row) must not stop its camera, nor cost unbounded work: the worker logs it
with the file's name, counts it, and goes on with the next file. The failing file is retried
after a growing delay; after HOLD_AFTER_FAILURES failures it is *held*: it stays on the camera
share, `embuffer status` and the metrics name it (an alert rule fires), and it is retried
after HELD_RETRY_SECONDS, then after twice as long each time up to HELD_RETRY_CAP_SECONDS, so
that a fix (a new release, a database correction) lets it go without anyone touching it while
a file that never goes costs a few copies a day. A file is thus copied at most
HOLD_AFTER_FAILURES times before it is held. The record lives in the journal's `held_files`
table, so a restart neither forgets the hold nor loops on the file (it retries it once).

Errors that concern the whole buffer or the whole camera share are not counted here: the
worker backs off the whole camera for those (worker.py), as no file is to blame.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from embuffer.journal import Journal, held_files

log = logging.getLogger("embuffer.holds")

HOLD_AFTER_FAILURES = 5
FIRST_RETRY_SECONDS = 2.0
HELD_RETRY_SECONDS = 600.0
# a held file that keeps failing is tried at least this often (a fix lets it go by itself)
HELD_RETRY_CAP_SECONDS = 6 * 3600.0


# errors of the buffer's filesystem itself (full, over quota, read-only): no file is to blame
BUFFER_WIDE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def concerns_whole_camera(error: OSError, camera_folder: Path) -> bool:
    """Whether an error is the buffer's or the camera share's rather than one file's: the
    buffer full or read-only, or the camera folder unreadable now (a share that went away
    answers every file with EIO, ENOTCONN, EHOSTDOWN...). Those back off the whole camera and
    hold no file; the folder is read only after an error, so a working share pays nothing."""
    if error.errno in BUFFER_WIDE_ERRNOS:
        return True
    try:
        with os.scandir(camera_folder) as listing:
            next(listing, None)
    except OSError:
        return True
    return False


@dataclass(frozen=True)
class HeldFile:
    camera: str
    source_path: str
    failures: int
    held_since: float | None
    last_error: str
    last_failed_at: float


def stored_name(source: str) -> str:
    """The key a file's failures go by: its path as the journal can hold it (a name that is
    not UTF-8, which SQLite cannot store, with its odd bytes as \\xNN escapes, as
    odd_names.printable writes it), so that such a file is counted and held like any other."""
    return os.fsencode(source).decode("utf-8", "backslashreplace")


def retry_delay(failures: int) -> float:
    if failures >= HOLD_AFTER_FAILURES:
        held_tries = min(failures - HOLD_AFTER_FAILURES, 32)  # 2**32 is past any cap
        return float(min(HELD_RETRY_CAP_SECONDS, HELD_RETRY_SECONDS * 2**held_tries))
    return float(FIRST_RETRY_SECONDS * 2 ** max(0, failures - 1))


def failing_files(journal: Journal, camera: str | None = None) -> list[HeldFile]:
    return [HeldFile(*row) for row in held_files.held_rows(journal.db, camera)]


class FailureTracker:
    """The failing files of one camera, kept in the journal."""

    def __init__(self, journal: Journal, camera: str) -> None:
        self.journal = journal
        self.camera = camera
        self._lock = threading.Lock()  # the camera thread and its verifiers share it
        # source path -> (failures, monotonic time of the next try); a restart retries once
        self._due: dict[str, tuple[int, float]] = {
            held.source_path: (held.failures, 0.0) for held in failing_files(journal, camera)
        }

    def ready(self, source: str) -> bool:
        source = stored_name(source)
        with self._lock:
            entry = self._due.get(source)
        return entry is None or time.monotonic() >= entry[1]

    def failures(self, source: str) -> int:
        source = stored_name(source)
        with self._lock:
            entry = self._due.get(source)
        return entry[0] if entry else 0

    def failed(self, source: str, error: str) -> bool:
        """Count one failure; True when the file is (now) held."""
        source = stored_name(source)
        with self._lock:
            entry = self._due.get(source)
            failures = (entry[0] if entry else 0) + 1
            self._due[source] = (failures, time.monotonic() + retry_delay(failures))
        held_since = time.time() if failures >= HOLD_AFTER_FAILURES else None
        held_files.record_failure(
            self.journal,
            self.camera,
            source,
            failures,
            held_since,
            error,
            now_held=failures == HOLD_AFTER_FAILURES,
        )
        if failures == HOLD_AFTER_FAILURES:
            log.error(
                "%s failed %d times; held on the camera share (retried in %.0f min, then "
                "less and less often): %s",
                source,
                failures,
                HELD_RETRY_SECONDS / 60,
                error,
            )
        return failures >= HOLD_AFTER_FAILURES

    def succeeded(self, source: str) -> None:
        """The file left the camera share's queue: forget its failures."""
        source = stored_name(source)
        with self._lock:
            known = self._due.pop(source, None) is not None
        if known:
            held_files.forget_failures(self.journal, self.camera, source)

    def forget_missing(self, present: set[str]) -> None:
        """Files gone from the camera share (moved by someone, or done) are no longer held."""
        present = {stored_name(source) for source in present}
        with self._lock:
            gone = [source for source in self._due if source not in present]
        for source in gone:
            self.succeeded(source)
