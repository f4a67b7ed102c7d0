"""Completeness by frame count: a movie is whole when it holds the frames Leginon counted.

The structure checks (safecopy/formats) cannot tell a TIFF or EER writer that paused at a page
boundary, or an MRC writer that raises nz as it goes, from a finished file; the Leginon row
can exist before the movie is written (Gatan's early return, Falcon's camera queue,
BatchAcquisition). The row's CameraEMData `nframes` says how many frames to expect, but what
it counts depends on the camera (Leginon's in-tree pyscope, commit 5c1adaf3 of
leginon-org/leginon, branch myami-python3):

- Gatan K2/K3, TIFF or MRC: `pyscope/dmsem.py:837-841` computes round(exposure / frame time)
  from an exposure already rounded to whole frame times (`dmsem.py:691-709`); it is never
  read back from the camera. Appion recomputes int(exposure / frame time)
  (`appion/appionlib/apK2process.py:23-26`), which can be one lower. Near-exact.
- Falcon, MRC: `pyscope/feicam.py:770-784` returns the number of dose-fraction bins it asked
  the camera for (`pyscope/falconframe.py:144-151, 203-220`), which is the MRC's nz. Exact.
- DE: `pyscope/de.py:271-274` reads the server's "Frames Written in Last Exposure". Exact.
- Falcon 4/4i, EER: `pyscope/feicam.py:755-784` returns the computed count times the
  configured `eer_render` (7 or 9), not the file's IFD count. No signal.

So MRC and TIFF movies are compared with `nframes`: fewer pages (or nz) than counted means
the writer is not finished, and the movie waits; a movie that reaches the count is complete.
EER files, DE `.frames` folders (whose files are not one per counted frame), and rows without
a count (NULL, or pyscope's default of 1 when frames were not saved) keep the timing rule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from embuffer.config import CameraConfig
from embuffer.ingest.scan import Candidate
from embuffer.ingest.settle import Snapshot, Watch
from embuffer.journal import Journal
from embuffer.safecopy.formats import StructureVerdict, format_of

log = logging.getLogger("embuffer.frame_count")

# formats whose page or section count Leginon's nframes predicts (see above)
COUNTED_FORMATS = ("mrc", "tiff")


@dataclass(frozen=True)
class FrameCount:
    expected: int
    found: int

    @property
    def short(self) -> bool:
        return self.found < self.expected

    def describe(self) -> str:
        return f"{self.found} of the {self.expected} frames Leginon counted"


def frame_count(
    name: str, is_dir: bool, verdict: StructureVerdict | None, nframes: int | None
) -> FrameCount | None:
    """The count to judge a movie by, or None where the count is not a signal."""
    if is_dir or verdict is None or verdict.frames is None:
        return None
    if nframes is None or nframes <= 1:
        return None
    if format_of(name) not in COUNTED_FORMATS:
        return None
    return FrameCount(expected=int(nframes), found=int(verdict.frames))


@dataclass
class FrameCountWait:
    """The movies of one camera that wait for their frames: a movie short of its count
    waits until it reaches it, or is taken as it is (with a warning naming both counts) once
    it has been unchanged for frame_count_settle_seconds."""

    camera: CameraConfig
    journal: Journal
    tell: Callable[[str, str], None]  # logs a waiting reason once per file
    waiting: dict[str, tuple[Snapshot, float]] = field(default_factory=dict)

    def pending(self, candidate: Candidate, watch: Watch) -> bool:
        """True while a movie found short earlier waits (nothing changed, time not up)."""
        short = self.waiting.get(candidate.name)
        if short is None:
            return False
        snapshot, deadline = short
        if snapshot != watch.snapshot:
            del self.waiting[candidate.name]  # it grew: judge it again
            return False
        return time.time() < deadline

    def short(self, candidate: Candidate, watch: Watch | None, nframes: int | None) -> bool:
        """Judge a matched movie by its Leginon frame count; True: it waits."""
        if watch is None:
            return False
        count = frame_count(candidate.name, candidate.is_dir, watch.verdict, nframes)
        if count is None or not count.short:
            return False
        wait = self.camera.frame_count_settle_seconds
        deadline = watch.snapshot.mtime + wait
        if time.time() < deadline:
            self.waiting[candidate.name] = (watch.snapshot, deadline)
            self.tell(
                str(candidate.path),
                f"{candidate.name!r}: {count.describe()}; waiting for the rest (taken as it "
                f"is after {wait:g} s without a change)",
            )
            return True
        detail = f"{candidate.name!r} holds {count.describe()} and has not changed for {wait:g} s"
        log.warning("%s: taken as it is", detail)
        self.journal.event(
            "frame_count_short", camera=self.camera.host, detail=f"{detail}: taken as it is"
        )
        return False

    def waits_for(self, name: str) -> bool:
        return name in self.waiting

    def forget(self, name: str) -> None:
        self.waiting.pop(name, None)
