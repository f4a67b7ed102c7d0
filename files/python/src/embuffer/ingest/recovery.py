"""Recovery at start: finish or undo what a previous run of one camera left mid-flight.

Most rows are repaired by `Transfer.recover` (which only ever finishes a step or undoes a
partial one) and the next scan of the camera folder offers their file again. Two kinds of
row have a file that no scan offers again, so they are finished here: a sidecar whose movie
has already left the camera share, and an earlier copy set aside from the buffer (their rows,
with where they go, are written before the step that would make them unreachable).

A row still `seen` (a file that waited: nothing was written for it anywhere) needs nothing
but a look at whether its file is still there, and the first listing of the camera folder
answers that for all of them at once: a stat of each of thousands of waiting files at every
start would delay the first movie by as many requests to the camera PC.
"""

from __future__ import annotations

import logging
from pathlib import Path

from embuffer import journal as j
from embuffer.config import CameraConfig, Config
from embuffer.ingest.odd_names import names_no_file, recover_unstored_name
from embuffer.ingest.rows import CameraRows
from embuffer.ingest.verifiers import Verifiers
from embuffer.journal import Movie
from embuffer.journal import queries as q
from embuffer.safecopy import leftovers
from embuffer.safecopy.copy import CopyAborted, Ownership
from embuffer.safecopy.transfer import SourceRewritten

log = logging.getLogger("embuffer.recovery")


def recover_camera(camera: CameraConfig, rows: CameraRows, verifiers: Verifiers) -> list[Movie]:
    """Repair what needs it; returns the waiting rows to check against the first listing
    (`vanished_from_listing`)."""
    waiting: list[Movie] = []
    for movie in q.unfinished_movies(rows.journal, camera.host):
        if waits_on_the_share(camera, movie):
            waiting.append(movie)
            continue
        try:
            if names_no_file(movie):  # its source_path is no path on the share: not recover()
                outcome = recover_unstored_name(rows, camera.path, movie)
                log.info("recover %r: %s", movie.source_path, outcome)
                continue
            outcome = rows.transfer.recover(movie)
            log.info("recover %r: %s (was %s)", movie.source_path, outcome, movie.state)
            if outcome == "retry" and not_rescanned(rows.config, camera, movie):
                finish_orphan(camera, rows, verifiers, movie)
        except SourceRewritten as rewritten:
            try:
                verifiers.set_aside_earlier_copy(rewritten)
            except Exception as error:  # noqa: BLE001 - the camera starts anyway
                log.error("earlier copy of %r not set aside: %r", movie.source_path, error)
        except CopyAborted:
            # stopped while re-reading a copy: each row left is repaired at the next start
            log.info("stopping during recovery of camera %s", camera.host)
            break
        except Exception as error:  # noqa: BLE001 - the camera starts anyway; retried later
            log.error("recover %r failed: %r; will retry", movie.source_path, error)
    return waiting


def waits_on_the_share(camera: CameraConfig, movie: Movie) -> bool:
    """A row of a file that only waited: seen, nothing written for it, a scan offers it."""
    source = Path(movie.source_path or "")
    return (
        movie.state == j.SEEN
        and not movie.dest_path
        and movie.kind != "sidecar"
        and source.parent == camera.path
    )


def vanished_from_listing(rows: CameraRows, waiting: list[Movie], listed: set[str]) -> None:
    """Rows of waiting files that are not in the camera folder any more: recorded as gone."""
    for movie in waiting:
        if movie.source_path not in listed:
            outcome = leftovers.source_gone(rows.journal, movie)
            log.info("recover %r: %s (was %s)", movie.source_path, outcome, movie.state)


def not_rescanned(config: Config, camera: CameraConfig, movie: Movie) -> bool:
    """Rows whose file no scan of the camera folder offers again: sidecars (they travel
    with their movie) and earlier copies set aside from the buffer. Files retried out of
    quarantine are not among them: `quarantine retry` offers those again."""
    source = Path(movie.source_path or "")
    if movie.target not in ("buffer", "quarantine"):
        return False  # nothing recorded about where it goes: not ours to finish
    sidecar = movie.kind == "sidecar" and source.parent == camera.path
    return sidecar or config.buffer_root in source.parents


def finish_orphan(
    camera: CameraConfig, rows: CameraRows, verifiers: Verifiers, movie: Movie
) -> None:
    """Finish a sidecar or set-aside copy that a crash interrupted."""
    if movie.target == "buffer" and movie.rel_path:
        source = movie.source
        if _movie_still_there(camera, source):
            # its movie is still on the camera share and takes it along with a row of its own
            rows.journal.update_movie(
                movie.id, state=j.VANISHED, reason="superseded: copied with its movie"
            )
            return
        config = rows.config
        dest = config.buffer_root / movie.rel_path
        ownership = Ownership(movie.uid, movie.gid, config.file_mode, config.dir_mode)
        if not rows.transfer.copy(movie.id, source, dest, ownership):
            rows.quarantine(movie.id, f"a different file already exists at {dest}")
            return
        verifiers.submit(movie.id)
        return
    rows.quarantine(movie.id, movie.reason or "set aside; its move was interrupted by a crash")


def _movie_still_there(camera: CameraConfig, sidecar: Path) -> bool:
    stem = sidecar.name.rsplit(".", 1)[0]
    return any(
        path != sidecar and path.name.startswith(stem + ".") for path in camera.path.iterdir()
    )
