"""`embuffer ingest` (camera share -> buffer) and `embuffer quarantine`."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from typing import TYPE_CHECKING

from embuffer.cli.process import EXIT_INCOMPLETE, EXIT_SOFTWARE, log, stop_on_signals
from embuffer.config import Config
from embuffer.journal import Journal, ServiceLock

if TYPE_CHECKING:  # imported where used: `embuffer status` need not load the copy engine
    from embuffer.ingest.worker import CameraIngest


def cmd_ingest(config: Config, args: argparse.Namespace) -> int:
    from embuffer.ingest.worker import CameraIngest
    from embuffer.journal.waiting_files import forget_other_cameras

    stop = stop_on_signals()
    with ServiceLock(config.journal, "ingest"):
        journal = Journal(config.journal, sync_each_commit=False)  # see journal/store.py
        try:
            workers = [CameraIngest(config, camera, journal, stop) for camera in config.cameras]
            forget_other_cameras(journal, (camera.host for camera in config.cameras))
            return _ingest_once(workers) if args.once else _ingest_forever(workers, stop)
        finally:
            journal.make_durable()  # a clean exit leaves nothing for a power cut to take


def _ingest_once(workers: list[CameraIngest]) -> int:
    from embuffer.ingest.scan import list_candidates
    from embuffer.journal import room_waits
    from embuffer.report.progress import byte_progress

    waiting = 0
    if sys.stderr.isatty():  # the bar's total: what waits on the camera shares
        for worker in workers:
            with contextlib.suppress(OSError):
                for candidate in list_candidates(worker.camera.path, set()):
                    if not candidate.is_dir:
                        waiting += candidate.path.stat().st_size
    failed = False
    with byte_progress("ingest", waiting) as advance:
        for worker in workers:
            worker.transfer.progress = advance
            result = worker.run_once()
            log.info(
                "camera %s: %d handled, %d waiting",
                worker.camera.host,
                result.handled,
                result.waiting,
            )
            failed = failed or bool(result.errors)
    # a placed movie that does not fit waits on the camera share, no error: still, what was
    # asked for ("what is ready now") was not done, and a script must be able to tell
    journal = workers[0].journal if workers else None
    no_room = journal is not None and any(
        kind == "buffer" for _camera, kind in room_waits.waiting_for_room(journal.db)
    )
    if no_room:
        log.error("the buffer is full: movies wait on the camera share (embuffer status)")
    return EXIT_INCOMPLETE if failed or no_room else 0


def _ingest_forever(workers: list[CameraIngest], stop: threading.Event) -> int:
    """One thread per camera, so a hung share stalls only its own camera."""
    threads = [
        threading.Thread(target=worker.run_forever, name=f"ingest-{worker.camera.host}")
        for worker in workers
    ]
    for thread in threads:
        thread.start()
    log.info("ingest running for %s", ", ".join(worker.camera.host for worker in workers))
    while any(thread.is_alive() for thread in threads):
        stop.wait(1.0)
        for thread in threads:
            thread.join(timeout=0.01)
        dead = [thread.name for thread in threads if not thread.is_alive()]
        if dead and not stop.is_set():
            # A camera without its worker would look alive to systemd; end the process so
            # that Restart=on-failure brings every camera back.
            log.critical("%s ended unexpectedly; stopping so that systemd restarts", dead[0])
            stop.set()
            for thread in threads:
                thread.join()
            return EXIT_SOFTWARE
    return 0


def cmd_quarantine(config: Config, args: argparse.Namespace) -> int:
    from embuffer.ingest.quarantine import format_listing
    from embuffer.journal import queries as q

    journal = Journal(config.journal)
    if args.action == "list":
        print(format_listing(q.quarantined_movies(journal)))
        return 0
    if args.action in ("release", "remove"):
        from embuffer.cli.quarantine import take_out

        return take_out(config, journal, args)
    from embuffer.ingest.worker import CameraIngest

    # retry copies files like ingest does, so it must not run beside an ingest service
    with ServiceLock(config.journal, "ingest"):
        stop = stop_on_signals()
        for camera in config.cameras:
            placed, left = CameraIngest(config, camera, journal, stop).retry_quarantined()
            print(f"camera {camera.host}: {placed} placed, {left} still quarantined")
    return 0
