"""No worker dies of one file: an exception nobody foresaw, inside matching, copying or
verifying, is logged, counted and retried while the camera goes on; repeated failures hold
the file on the camera share, named by status and metrics; a fix lets it go by itself."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import CAMERA_HOST, BufferHost
from support.movies import mrc_bytes
from test_faults import wait_for
from test_metrics import collect_once

from embuffer.cli import EXIT_SOFTWARE, main
from embuffer.config import load_config
from embuffer.ingest import holds, intake
from embuffer.ingest import worker as ingest
from embuffer.journal import Journal
from embuffer.report.metrics import collector as metrics
from embuffer.report.status import collect
from embuffer.safecopy import transfer


@contextmanager
def running_ingest(host: BufferHost) -> Iterator[Journal]:
    """The ingest service's camera worker, in this process (so a fault can be injected)."""
    config = load_config(host.config_path)
    journal = Journal(config.journal, sync_each_commit=False)
    stop = threading.Event()
    worker = ingest.CameraIngest(config, config.cameras[0], journal, stop)
    thread = threading.Thread(target=worker.run_forever, name="ingest-under-test")
    thread.start()
    try:
        yield journal
        assert thread.is_alive(), "the camera worker died"
    finally:
        stop.set()
        thread.join(timeout=60)


def acquire(host: BufferHost, registered: dict[str, int], frames: str, image: str) -> bytes:
    host.leginon.acquisition(registered["session"], registered["camera"], frames, image)
    data = mrc_bytes(16, 16, 4, seed=hash(frames) % 1000)
    path = host.camera / f"{frames}.mrc"
    path.write_bytes(data)
    then = time.time() - 5
    os.utime(path, (then, then))
    return data


def fault(original: Callable[..., Any], hit: Callable[..., bool]) -> Callable[..., Any]:
    """`original`, except that it raises an error nobody foresaw when `hit(*args)` says so."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if hit(*args):
            raise RuntimeError("injected fault: a bug nobody foresaw")
        return original(*args, **kwargs)

    return wrapper


BAD = "20261126_120000_66"


def inject(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    if step == "match":
        monkeypatch.setattr(
            intake, "find_image", fault(intake.find_image, lambda _db, key, *_: key == BAD)
        )
    elif step == "copy":
        monkeypatch.setattr(
            transfer,
            "write_partial",
            fault(transfer.write_partial, lambda source, *_: BAD in str(source)),
        )
    else:  # the re-read of the published copy
        monkeypatch.setattr(
            transfer,
            "hash_path",
            fault(transfer.hash_path, lambda path, *_: "bad_img" in str(path)),
        )


@pytest.mark.parametrize("step", ["match", "copy", "verify"])
def test_an_unexpected_exception_never_stops_the_camera_and_the_file_is_held(
    host, registered, monkeypatch, step
):
    monkeypatch.setattr(holds, "FIRST_RETRY_SECONDS", 0.05)
    monkeypatch.setattr(holds, "HELD_RETRY_SECONDS", 1.0)
    host.write_config(settle_seconds=0.3)
    bad = acquire(host, registered, BAD, "bad_img")
    inject(monkeypatch, step)
    folder = host.buffer_folder()
    with running_ingest(host) as journal:
        first = acquire(host, registered, "20261126_120000_01", "good_1")
        wait_for(lambda: (folder / "good_1.frames.mrc").exists(), 30, "the first good movie")
        wait_for(lambda: any(h.held_since for h in holds.failing_files(journal)), 30, "the hold")
        second = acquire(host, registered, "20261126_120000_02", "good_2")
        wait_for(
            lambda: not (host.camera / "20261126_120000_02.mrc").exists(), 30, "the next movie"
        )
        assert (folder / "good_1.frames.mrc").read_bytes() == first
        assert (folder / "good_2.frames.mrc").read_bytes() == second
        # the bad file is kept, whole, on the camera share
        assert (host.camera / f"{BAD}.mrc").read_bytes() == bad

        config = load_config(host.config_path)
        [camera] = collect(config, journal).cameras
        [held] = camera.held
        assert held["file"].endswith(f"{BAD}.mrc")
        assert held["failures"] >= holds.HOLD_AFTER_FAILURES
        assert "injected fault" in held["error"]
        assert "injected fault" in (camera.last_error or "")
        scrape = collect_once(metrics.JournalCollector(config))
        assert scrape.value("embuffer_held_files", camera=CAMERA_HOST) == 1
        assert scrape.value("embuffer_unexpected_errors_total", camera=CAMERA_HOST) >= 5

        # the fix is deployed (here: the fault goes away); the held file leaves by itself
        monkeypatch.undo()
        wait_for(
            lambda: not (host.camera / f"{BAD}.mrc").exists(), 30, "the held file after the fix"
        )
        assert (folder / "bad_img.frames.mrc").read_bytes() == bad
        # the hold is forgotten right after the camera copy's removal, by the same thread
        wait_for(lambda: holds.failing_files(journal) == [], 10, "the hold to be forgotten")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_camera_worker_that_dies_ends_the_service_with_a_failure(host, registered, monkeypatch):
    def broken(_self: object) -> None:
        raise RuntimeError("injected fault outside any file")

    monkeypatch.setattr(ingest.CameraIngest, "recover", broken)
    # Restart=on-failure restarts on a non-zero exit only: a live process without its
    # camera worker would never be restarted.
    assert main(["--config", str(host.config_path), "ingest"]) == EXIT_SOFTWARE


def test_restart_keeps_the_hold_and_does_not_loop_on_the_file(host, registered, monkeypatch):
    monkeypatch.setattr(holds, "FIRST_RETRY_SECONDS", 0.05)
    host.write_config(settle_seconds=0.3)
    acquire(host, registered, BAD, "bad_img")
    inject(monkeypatch, "match")
    with running_ingest(host) as journal:
        wait_for(lambda: any(h.held_since for h in holds.failing_files(journal)), 30, "the hold")
    with running_ingest(host) as journal:
        time.sleep(2.0)  # a restarted service retries the held file once, then waits
        [held] = holds.failing_files(journal)
        assert held.failures == holds.HOLD_AFTER_FAILURES + 1
    assert Path(host.camera / f"{BAD}.mrc").exists()
