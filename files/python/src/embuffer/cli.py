"""The `embuffer` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from embuffer import __version__
from embuffer.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from embuffer.journal import Journal, JournalLocked, JournalReplaced, ServiceLock

if TYPE_CHECKING:  # imported where used: `embuffer status` need not load the copy engine
    from embuffer.archive.worker import Archiver
    from embuffer.ingest.worker import CameraIngest

log = logging.getLogger("embuffer")
EXIT_CONFIG = 78  # EX_CONFIG: the configuration is unusable
EXIT_LOCKED = 75  # EX_TEMPFAIL: another instance holds the journal
EXIT_INCOMPLETE = 1  # the command ran but could not finish its job (told in the log)
EXIT_SOFTWARE = 70  # EX_SOFTWARE: a worker thread died; systemd restarts the service
EXIT_JOURNAL_REPLACED = 74  # EX_IOERR: the journal was deleted or replaced under the service


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "received %s: finishing or rolling back the file in flight", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def cmd_config_check(config: Config, _args: argparse.Namespace) -> int:
    from embuffer.config import runtime_warnings
    from embuffer.report.registration import camera_registration_problems

    warnings = runtime_warnings(config) + camera_registration_problems(config)
    for warning in warnings:
        print(f"  - {warning}")
    verdict = "OK" if not warnings else f"{len(warnings)} problem(s) stop part of the work now"
    print(
        f"{config.path}: {verdict} ({len(config.cameras)} camera(s), buffer {config.buffer_root})"
    )
    return 0 if not warnings else 1


def cmd_ingest(config: Config, args: argparse.Namespace) -> int:
    from embuffer.ingest.worker import CameraIngest

    stop = _stop_on_signals()
    with ServiceLock(config.journal, "ingest"):
        journal = Journal(config.journal, sync_each_commit=False)  # see journal.py
        try:
            workers = [CameraIngest(config, camera, journal, stop) for camera in config.cameras]
            return _ingest_once(workers) if args.once else _ingest_forever(workers, stop)
        finally:
            journal.make_durable()  # a clean exit leaves nothing for a power cut to take


def _ingest_once(workers: list[CameraIngest]) -> int:
    from embuffer.ingest.scan import list_candidates
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
    return EXIT_INCOMPLETE if failed else 0


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


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    from embuffer.report.console import show_status

    return show_status(config, Journal(config.journal), as_json=args.json, watch=args.watch)


def cmd_metrics(config: Config, args: argparse.Namespace) -> int:
    from embuffer.report.metrics import export

    try:
        if args.action == "serve":
            address = export.check_listen(
                args.listen or config.metrics.listen, allow_public=args.allow_public
            )
            export.serve(config, address, _stop_on_signals())
            return 0
        target = args.path or config.metrics.textfile
        if not target:
            print(
                "embuffer metrics textfile: give a PATH or set [metrics] textfile", file=sys.stderr
            )
            return 2
        export.check_textfile(Path(target))
        if args.once:
            export.write_textfile(Path(target), export.registry_for(config, process=False))
            return 0
        export.textfile_loop(config, Path(target), args.interval, _stop_on_signals())
        return 0
    except (export.ExportSetupError, OSError) as error:
        print(f"embuffer metrics: {error}", file=sys.stderr)
        return EXIT_CONFIG


def cmd_verify(config: Config, args: argparse.Namespace) -> int:
    from embuffer.archive.rehash import verify_path, verify_primary_session

    journal = Journal(config.journal)
    if args.primary:
        problems = verify_primary_session(config, journal, args.primary)
    else:
        if not args.path:
            print("embuffer verify: give a PATH or --primary SESSION", file=sys.stderr)
            return 2
        problems = verify_path(journal, Path(args.path))
    for line in problems.lines:
        print(line)
    return 0 if problems.ok else 1


def cmd_quarantine(config: Config, args: argparse.Namespace) -> int:
    from embuffer.ingest.quarantine import format_listing
    from embuffer.journal import queries as q

    journal = Journal(config.journal)
    if args.action == "list":
        print(format_listing(q.quarantined_movies(journal)))
        return 0
    from embuffer.ingest.worker import CameraIngest

    # retry copies files like ingest does, so it must not run beside an ingest service
    with ServiceLock(config.journal, "ingest"):
        stop = _stop_on_signals()
        for camera in config.cameras:
            placed, left = CameraIngest(config, camera, journal, stop).retry_quarantined()
            print(f"camera {camera.host}: {placed} placed, {left} still quarantined")
    return 0


def cmd_archive(config: Config, args: argparse.Namespace) -> int:
    from embuffer.archive.worker import Archiver, pause, resume

    journal = Journal(config.journal)
    if args.action == "pause":
        changed = pause(journal, args.reason)
        print(
            f"archive paused: {args.reason}"
            if changed
            else f"archive already paused: {args.reason}"
        )
        return 0
    if args.action == "resume":
        print("archive resumed" if resume(journal) else "archive was not paused")
        return 0
    if config.archive.primary is None:
        print(
            f"{config.path}: [archive] primary is not set; nothing to archive to", file=sys.stderr
        )
        return EXIT_CONFIG
    stop = _stop_on_signals()
    with ServiceLock(config.journal, "archive"):
        journal = Journal(config.journal, sync_each_commit=False)  # see journal.py
        try:
            return _archive(Archiver(config, journal, stop), once=args.once)
        finally:
            journal.make_durable()


def _archive(archiver: Archiver, *, once: bool) -> int:
    if not once:
        archiver.run_forever()
        return 0
    from embuffer.journal.queries import backlog_movies
    from embuffer.report.progress import byte_progress

    pending = sum(int(movie.size or 0) for movie in backlog_movies(archiver.journal))
    with byte_progress("archive", pending) as advance:
        archiver.progress = advance
        return 0 if archiver.run_once() else EXIT_INCOMPLETE


def cmd_purge(config: Config, args: argparse.Namespace) -> int:
    from embuffer.archive.purge import Purger

    with ServiceLock(config.journal, "purge"):
        purger = Purger(config, Journal(config.journal), paranoid=args.paranoid)
        report = purger.run(dry_run=args.dry_run)
    for line in report.lines:
        print(line)
    return 0 if report.reached_target else EXIT_INCOMPLETE


def cmd_outage(config: Config, args: argparse.Namespace) -> int:
    import getpass

    from embuffer.journal.queries import OUTAGE_KEY
    from embuffer.leginon.credentials import read_credentials
    from embuffer.leginon.db import LeginonDB
    from embuffer.report import outage

    journal = Journal(config.journal)
    if args.action == "start":
        if not args.reason.strip() or not args.location:
            print("embuffer outage start: --reason and --location are required", file=sys.stderr)
            return 2
        by = args.by or os.environ.get("SUDO_USER") or getpass.getuser()
        changed = outage.start(journal, args.reason, by, args.location)
        print(json.dumps({"changed": changed, "outage": journal.get_setting(OUTAGE_KEY)}))
        return 0
    if args.action == "end":
        from embuffer.leginon.frame_paths import register_outage_sessions

        ended = outage.end(journal)
        # frames placed while BufferHostData was disabled: record where they are for Appion
        db = LeginonDB(read_credentials(config.db_credentials))
        try:
            registration = register_outage_sessions(db, journal)
            recorded: object = {
                "recorded": registration.recorded,
                "still_disabled": registration.pending,
                "conflicts": registration.conflicts,
            }
        except Exception as error:  # noqa: BLE001 - the ingest records them within a minute
            recorded = {"error": f"not recorded now ({error}); the ingest retries every minute"}
        finally:
            db.close()
        print(
            json.dumps(
                {"changed": ended is not None, "outage": ended, "buffer_frame_paths": recorded}
            )
        )
        return 0
    report = outage.report(journal, LeginonDB(read_credentials(config.db_credentials)))
    if report is None:
        print(json.dumps({"outage": None}) if args.json else "no outage recorded")
        return 0
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.render())
    return 0


def cmd_session(config: Config, args: argparse.Namespace) -> int:
    journal = Journal(config.journal)
    journal.set_session_keep(args.session, not args.off)
    state = "no longer kept" if args.off else "kept: purge will not remove its buffer copies"
    print(f"session {args.session}: {state}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embuffer", description=__doc__)
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"configuration file (default {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.add_argument("--version", action="version", version=f"embuffer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    config = commands.add_parser("config", help="check the configuration file")
    config.add_argument("action", choices=["check"])
    config.set_defaults(handler=cmd_config_check)

    ingest = commands.add_parser("ingest", help="camera share -> buffer (service)")
    ingest.add_argument("--once", action="store_true", help="one pass over what is ready now")
    ingest.set_defaults(handler=cmd_ingest)

    status = commands.add_parser("status", help="what embuffer is doing")
    status.add_argument("--json", action="store_true")
    status.add_argument("--watch", type=float, metavar="SECONDS", default=0.0)
    status.set_defaults(handler=cmd_status)

    verify = commands.add_parser("verify", help="re-hash files against the journal")
    verify.add_argument("path", nargs="?", help="a movie or a folder on the buffer")
    verify.add_argument("--primary", metavar="SESSION", help="re-hash a session on primary")
    verify.set_defaults(handler=cmd_verify)

    quarantine = commands.add_parser("quarantine", help="files embuffer could not place")
    quarantine.add_argument("action", choices=["list", "retry"])
    quarantine.set_defaults(handler=cmd_quarantine)

    archive = commands.add_parser("archive", help="buffer -> primary storage (service)")
    archive.add_argument("action", nargs="?", choices=["pause", "resume"])
    archive.add_argument("--once", action="store_true")
    archive.add_argument("--reason", default="", help="why the archive is paused")
    archive.set_defaults(handler=cmd_archive)

    purge = commands.add_parser("purge", help="remove buffer copies verified on primary")
    purge.add_argument("--dry-run", action="store_true", help="print what would go, remove none")
    purge.add_argument("--paranoid", action="store_true", help="re-hash the primary copy first")
    purge.set_defaults(handler=cmd_purge)

    outage = commands.add_parser("outage", help="record an outage of primary storage")
    outage.add_argument("action", choices=["start", "end", "report"])
    outage.add_argument("--reason", default="")
    outage.add_argument("--by", default="", help="who declared it (default: the caller)")
    outage.add_argument("--location", default="", help="where Leginon writes new sessions")
    outage.add_argument("--json", action="store_true")
    outage.set_defaults(handler=cmd_outage)

    session = commands.add_parser("session", help="mark a session to keep on the buffer")
    session.add_argument("action", choices=["keep"])
    session.add_argument("session", help="Leginon session name")
    session.add_argument("--off", action="store_true", help="remove the keep mark")
    session.set_defaults(handler=cmd_session)

    metrics = commands.add_parser("metrics", help="Prometheus metrics from the journal")
    metrics.add_argument("action", choices=["serve", "textfile"])
    metrics.add_argument("path", nargs="?", help="textfile: the .prom file to write")
    metrics.add_argument("--listen", help="serve: HOST:PORT (default [metrics] listen)")
    metrics.add_argument(
        "--allow-public", action="store_true", help="serve: allow a non-loopback listen address"
    )
    metrics.add_argument(
        "--interval",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="textfile: rewrite period (default 15)",
    )
    metrics.add_argument("--once", action="store_true", help="textfile: write once and exit")
    metrics.set_defaults(handler=cmd_metrics)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    if args.command == "archive" and args.action == "pause" and not args.reason.strip():
        print(
            "embuffer archive pause: --reason is required (it is shown in status)", file=sys.stderr
        )
        return 2
    try:
        config = load_config(args.config, check_paths=args.command not in ("status", "metrics"))
    except ConfigError as error:
        print(f"{error.path}: {len(error.problems)} problem(s):", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG
    handler: Callable[[Config, argparse.Namespace], int] = args.handler
    try:
        return handler(config, args)
    except JournalLocked as error:
        print(f"embuffer: {error}", file=sys.stderr)
        return EXIT_LOCKED
    except JournalReplaced as error:
        print(f"embuffer: {error}", file=sys.stderr)
        return EXIT_JOURNAL_REPLACED


if __name__ == "__main__":
    sys.exit(main())
