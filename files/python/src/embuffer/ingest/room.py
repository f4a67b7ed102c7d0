"""Whether one camera file may be copied now, as far as room goes (safecopy/space.py).

A file that has no room waits on the camera share: nothing is written, nothing deleted, no
error is counted. Its journal row carries the reason (`embuffer status` and the metrics
count such rows), one `no_room` event marks the first time, and the camera goes on with
its next file; the waiting file is looked at again on the waiting files' backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from embuffer.ingest.rows import CameraRows
from embuffer.safecopy.space import NO_ROOM_PREFIX, room_problem, size_of

# The two kinds of wait, as the row's reason begins (journal/room_waits.py counts them).
QUARANTINE_WAITS = NO_ROOM_PREFIX + "quarantine stopped at the reserve: "
MOVIE_WAITS = NO_ROOM_PREFIX + "the movie does not fit: "


class RoomCheck:
    def __init__(self, rows: CameraRows, tell: Callable[[str, str], None]) -> None:
        self.rows = rows
        self.journal = rows.journal
        self.tell = tell

    def waits(
        self, movie_id: int, sources: Iterable[Path | None], folder: Path, *, placed: bool
    ) -> bool:
        """True when the copy of `sources` (a movie and its sidecar) into `folder` must not
        start now; the row then says why. False clears an earlier wait."""
        present = [source for source in sources if source is not None]
        nbytes = sum(size_of(source) for source in present)
        problem = room_problem(folder, nbytes, self.rows.config.reserve_percent, placed=placed)
        earlier = self.journal.movie(movie_id).reason or ""
        waited = earlier.startswith(NO_ROOM_PREFIX)
        if problem is None:
            if waited:
                self.journal.update_movie(movie_id, reason=None)
            return False
        reason = (MOVIE_WAITS if placed else QUARANTINE_WAITS) + problem
        record_wait(self.rows, movie_id, reason, present[0], nbytes)
        self.tell(str(present[0]), f"{present[0].name!r}: {reason}")
        return True


def record_wait(rows: CameraRows, movie_id: int, reason: str, source: Path, nbytes: int) -> None:
    """The row says why its file waits for room, and one `no_room` event marks the first
    time (a waiting file is looked at again and again): a wait, not a failure."""
    journal = rows.journal
    if (journal.movie(movie_id).reason or "").startswith(NO_ROOM_PREFIX):
        return
    with journal.transaction():
        journal.update_movie(movie_id, reason=reason)
        journal.event(
            "no_room",
            movie_id=movie_id,
            camera=rows.camera,
            nbytes=nbytes,
            detail=f"{source.name!r}: {reason}",
        )
