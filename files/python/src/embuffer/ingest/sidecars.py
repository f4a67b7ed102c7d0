"""A Falcon `.xml` sidecar travels with its movie: beside it on the buffer, or with it into
quarantine.

Its row is opened before the movie can leave the camera share (and made durable by the same
journal barrier), so that recovery finishes the sidecar should a crash come in between
(recovery.py): once the movie is gone, no scan offers the sidecar again.
"""

from __future__ import annotations

from embuffer.ingest.placing import Placed, match_fields
from embuffer.ingest.rows import CameraRows
from embuffer.ingest.scan import Candidate, sidecar_for
from embuffer.ingest.verifiers import Verifiers
from embuffer.leginon.matching import ImageMatch, destination_name


def copy_beside_movie(
    rows: CameraRows,
    verifiers: Verifiers,
    candidate: Candidate,
    match: ImageMatch,
    placed: Placed,
) -> None:
    """Called once the movie's copy has begun; the verifiers publish and release both."""
    sidecar = sidecar_for(candidate)
    if sidecar is None:
        return
    dest = placed.folder / destination_name(match.filename, sidecar.name, is_dir=False)
    fields = match_fields(rows.config.buffer_root, match, dest, placed)
    sidecar_id = rows.open(str(sidecar), "sidecar", dest_path=str(dest), **fields)
    if rows.transfer.copy(sidecar_id, sidecar, dest, placed.ownership, **fields):
        verifiers.submit(sidecar_id)
    else:
        rows.quarantine(sidecar_id, f"a different sidecar already exists at {dest}")


def quarantine_with_movie(
    rows: CameraRows, candidate: Candidate, movie_id: int, movie_reason: str
) -> None:
    sidecar = sidecar_for(candidate)
    reason = f"sidecar of quarantined {candidate.name!r}"
    sidecar_id = None
    if sidecar is not None:
        sidecar_id = rows.open(str(sidecar), "sidecar", target="quarantine", reason=reason)
    rows.quarantine(movie_id, movie_reason)
    if sidecar_id is not None:
        rows.quarantine(sidecar_id, reason)
