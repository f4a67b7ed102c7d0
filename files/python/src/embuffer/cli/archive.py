"""`embuffer archive` (buffer -> primary, pause, resume), `purge` and `verify`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from embuffer.cli.process import EXIT_CONFIG, EXIT_INCOMPLETE, stop_on_signals
from embuffer.config import Config
from embuffer.journal import Journal, ServiceLock

if TYPE_CHECKING:  # imported where used: `embuffer status` need not load the copy engine
    from embuffer.archive.worker import Archiver


def cmd_archive(config: Config, args: argparse.Namespace) -> int:
    from embuffer.archive.pause import pause, resume
    from embuffer.archive.worker import Archiver

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
    stop = stop_on_signals()
    with ServiceLock(config.journal, "archive"):
        journal = Journal(config.journal, sync_each_commit=False)  # see journal/store.py
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
