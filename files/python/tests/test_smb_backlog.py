"""Waiting files cost little through a real SMB share (issue 25's targets): the ingest service,
a process of its own as on a buffer server, polls a camera folder served by Samba while a
backlog of unmatched files grows from none to BACKLOG. Once the files have been judged, the
requests the share answers and the statements leginondb answers stay under bounds that do
not grow with the backlog, a movie dropped among the waiting files is on the buffer within
the poll, and after a restart with the backlog there the first movie moves within seconds."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from conftest import BufferHost
from support.ingest_service import IngestService, Load, StatementCounter, measure_load, wait_for
from support.movies import mrc_bytes
from support.smb_share import SmbCameraShare, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

BACKLOG = 300
SMB_REQUESTS_PER_SECOND = 50.0
LEGINONDB_STATEMENTS_PER_SECOND = 20.0
POLL_SECONDS = 1.0
# the 1 s poll kept: a movie closed a while ago is listed within 1.2 s (the service steps in
# 0.2 s), taken once a second look agrees, and a small one is copied and read back in a
# fraction of a second; over two and a half seconds the poll has slipped
PICKUP_SECONDS = 2.5
RESTART_SECONDS = 5.0
WINDOW_SECONDS = 12.0
# the load is sampled in slices this long until two in a row are under the bounds: the
# backlog has been judged once (a slice spans at least two of smbd's 1 s counter dumps)
SLICE_SECONDS = 2.0
JUDGED_WITHIN_SECONDS = 45.0
# the measurement waits this long for a movie, so that a slow one is reported with its time
MOVIE_TIMEOUT_SECONDS = 60.0


@pytest.fixture
def camera_share(host: BufferHost, tmp_path: Path) -> Iterator[SmbCameraShare]:
    """The camera folder served by its own smbd and read by embuffer through SMB, waiting
    files kept for an hour (grace) and the folder listed every second, as at a facility."""
    host.write_config(grace_minutes=60, poll_seconds=POLL_SECONDS)
    with SmbCameraShare(tmp_path / "smb", served=host.camera) as started:
        started.route_config(host.config_path)
        yield started


class CameraPC:
    """Writes on the camera PC's own disk (the served folder), as the camera software does."""

    def __init__(self, host: BufferHost, registered: dict[str, int]) -> None:
        self.host = host
        self.session, self.camera = registered["session"], registered["camera"]
        self.exposures = 0

    def unmatched_files(self, count: int) -> None:
        """`count` small settled movies that no image in leginondb names (yet)."""
        data = mrc_bytes(16, 16, 1, seed=3)
        then = time.time() - 300
        for index in range(count):
            path = self.host.camera / f"20261125_{index:06d}_00.mrc"
            path.write_bytes(data)
            os.utime(path, (then, then))

    def exposure(self) -> Path:
        """A movie Leginon has an image for, appearing whole (a copy in, renamed): returns
        where it will be on the buffer."""
        self.exposures += 1
        stem = f"20261127_{self.exposures:06d}_01"
        image = f"backlog_{self.exposures:05d}en"
        self.host.leginon.acquisition(self.session, self.camera, stem, image)
        staged = self.host.camera / f".{stem}.staged"
        staged.write_bytes(mrc_bytes(64, 64, 8, seed=self.exposures))
        then = time.time() - 30
        os.utime(staged, (then, then))
        os.rename(staged, self.host.camera / f"{stem}.mrc")
        return self.host.buffer_folder() / f"{image}.frames.mrc"


def on_buffer_within(camera_pc: CameraPC, service: IngestService) -> float:
    """Seconds from a matched movie's drop to its final name on the buffer."""
    landed = camera_pc.exposure()
    return wait_for(landed.exists, MOVIE_TIMEOUT_SECONDS, landed.name, service)


def judged(share: SmbCameraShare, statements: StatementCounter) -> tuple[float, Load]:
    """Seconds until two slices in a row were under the bounds (or the limit passed), and the
    last slice."""
    start, quiet = time.monotonic(), 0
    while True:
        load = measure_load(share, statements, SLICE_SECONDS)
        under = (
            load.requests_per_second < SMB_REQUESTS_PER_SECOND
            and load.statements_per_second < LEGINONDB_STATEMENTS_PER_SECOND
        )
        quiet = quiet + 1 if under else 0
        if quiet == 2 or time.monotonic() - start > JUDGED_WITHIN_SECONDS:
            return time.monotonic() - start, load


def test_a_growing_backlog_costs_a_bounded_load_and_movies_still_move_within_the_poll(
    host: BufferHost, registered: dict[str, int], camera_share: SmbCameraShare, tmp_path: Path
) -> None:
    camera_pc = CameraPC(host, registered)
    service = IngestService(host.config_path, tmp_path / "ingest.log")
    measured: dict[str, float] = {}
    with closing(StatementCounter(host.server)) as statements, service:
        service.start()
        measured["first movie, empty share s"] = on_buffer_within(camera_pc, service)
        empty = measure_load(camera_share, statements, WINDOW_SECONDS)

        camera_pc.unmatched_files(BACKLOG)
        measured["backlog judged s"], last_slice = judged(camera_share, statements)
        waiting = measure_load(camera_share, statements, WINDOW_SECONDS)
        pickups = []
        for _ in range(2):
            pickups.append(on_buffer_within(camera_pc, service))
            time.sleep(0.37)  # the next drop lands at another point of the poll cycle
        measured["movie among the backlog s"] = max(pickups)

        service.stop()
        started = service.start()
        landed = camera_pc.exposure()
        wait_for(landed.exists, MOVIE_TIMEOUT_SECONDS, landed.name, service)
        measured["first movie after a restart s"] = time.monotonic() - started

    report = "\n".join(
        [f"empty share: {empty}", f"{BACKLOG} waiting: {waiting}", f"last slice: {last_slice}"]
        + [f"{what}: {seconds:.2f}" for what, seconds in measured.items()]
    )
    print(report)
    for load in (empty, waiting):
        assert load.requests_per_second < SMB_REQUESTS_PER_SECOND, report
        assert load.statements_per_second < LEGINONDB_STATEMENTS_PER_SECOND, report
    assert measured["movie among the backlog s"] <= PICKUP_SECONDS, report
    assert measured["first movie after a restart s"] <= RESTART_SECONDS, report
