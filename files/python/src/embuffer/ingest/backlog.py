"""The backlog: files already on the camera share when the worker started that no earlier run
judged (an empty journal, a journal of a release that kept no camera_files, a share that
filled while the service was down).

Judging a file costs two stats, an open of its structure on the camera PC and a lookup in
leginondb; through SMB that is tens of milliseconds a file, so judging thousands of them in
one pass kept a movie written now waiting for minutes (91.6 s for 2000). So the backlog is
not judged in one go:

- names that appear in a later listing than the first are new: judged at every pass, before
  any of the backlog, as a movie being written now must be;
- each backlog file is first surveyed: one stat, at most SURVEY_STATS_PER_SECOND, in reverse
  name order (Leginon names frames by the time they were taken, so the newest come first).
  The stat is the first of the two agreeing looks that settling needs anyway;
- surveyed files are judged newest mtime first (a movie written now is the newest, a backlog
  is old), files an earlier release had already seen waiting last, at most
  JUDGEMENTS_PER_SECOND, so the catch-up loads the camera PC and leginondb at a bounded rate
  and ends: 2000 files take 2000 / JUDGEMENTS_PER_SECOND seconds;
- a judged file leaves the backlog: it waits (waiting.py), has gone to the buffer or to
  quarantine, or turned out to be written now and is watched as closely as a new one.

Nothing is skipped: a backlog file is judged as fully (settled, structure, lookup) as any
other before anything is done with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Mapping

from embuffer.ingest.scan import Candidate
from embuffer.ingest.settle import SettleTracker, Watch
from embuffer.ingest.waiting import LookRation

log = logging.getLogger("embuffer.ingest")

# a stat is 3 SMB requests (create, getinfo, close): the survey of a 2000-file backlog asks
# the camera PC for about 6000 once per start, over two seconds, as one `ls -l` would
SURVEY_STATS_PER_SECOND = 1000.0
# a judgement is ~10 SMB requests (two stats, an open that reads the header) and ~4 leginondb
# statements (one per image table): the catch-up stays near 100 requests/s and 40 queries/s
JUDGEMENTS_PER_SECOND = 10.0


class Backlog:
    """The backlog of one camera, from its worker's first listing of the camera folder."""

    def __init__(self) -> None:
        self.judging = LookRation(JUDGEMENTS_PER_SECOND)
        self.survey_stats = LookRation(SURVEY_STATS_PER_SECOND)
        self._names: set[str] | None = None  # None until the first listing
        self._seen_before: set[str] = set()

    @property
    def begun(self) -> bool:
        return self._names is not None

    def begin(self, names: Iterable[str], seen_before: Collection[str]) -> None:
        """The first listing: `names` no earlier run judged; `seen_before`, those of them with
        a journal row of a file that waited (a release before camera_files wrote it)."""
        self._names = set(names)
        self._seen_before = {name for name in seen_before if name in self._names}
        if self._names:
            log.info("%d files on the camera share to judge at first", len(self._names))

    def __len__(self) -> int:
        return 0 if self._names is None else len(self._names)

    def discard(self, *names: str) -> None:
        """These files were judged (or are gone): a later sight of them is not backlog."""
        if self._names is not None:
            self._names.difference_update(names)

    def split(
        self, pending: list[Candidate], watches: Mapping[str, Watch]
    ) -> tuple[list[Candidate], list[Candidate], list[Candidate]]:
        """(new files, surveyed backlog in the order to judge it, backlog still to survey)."""
        names = self._names or set()
        self._names = names & {candidate.name for candidate in pending}  # the gone go
        new: list[Candidate] = []
        surveyed: list[Candidate] = []
        unseen: list[Candidate] = []
        for candidate in pending:
            if candidate.name not in self._names:
                new.append(candidate)
            elif candidate.name in watches:
                surveyed.append(candidate)
            else:
                unseen.append(candidate)
        seen_before = self._seen_before

        def judge_order(candidate: Candidate) -> tuple[bool, int]:
            return candidate.name in seen_before, -watches[candidate.name].snapshot.mtime_ns

        surveyed.sort(key=judge_order)
        unseen.sort(key=lambda candidate: candidate.name, reverse=True)
        unseen.sort(key=lambda candidate: candidate.name in seen_before)  # stable: keeps names
        return new, surveyed, unseen

    def survey(self, unseen: list[Candidate], tracker: SettleTracker, ends: float) -> None:
        """Stat, in order, what the ration and the pass's time (`ends`) allow."""
        for candidate in unseen:
            if time.monotonic() >= ends or not self.survey_stats.take():
                return
            try:
                if tracker.observe(candidate) is None:
                    self.discard(candidate.name)  # gone meanwhile
            except OSError:
                # judged like a new file, where the error is reported and retried (worker.py)
                self.discard(candidate.name)
