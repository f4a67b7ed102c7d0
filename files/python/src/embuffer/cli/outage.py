"""`embuffer outage` (primary storage down: start, end, report) and `embuffer session`."""

from __future__ import annotations

import argparse
import json
import sys

from embuffer.config import Config
from embuffer.journal import Journal


def cmd_outage(config: Config, args: argparse.Namespace) -> int:
    journal = Journal(config.journal)
    if args.action == "start":
        return _outage_start(journal, args)
    if args.action == "end":
        return _outage_end(config, journal)
    return _outage_report(config, journal, as_json=args.json)


def _outage_start(journal: Journal, args: argparse.Namespace) -> int:
    from embuffer.cli.quarantine import caller
    from embuffer.journal.queries import OUTAGE_KEY
    from embuffer.report import outage

    if not args.reason.strip() or not args.location:
        print("embuffer outage start: --reason and --location are required", file=sys.stderr)
        return 2
    by = args.by or caller()
    changed = outage.start(journal, args.reason, by, args.location)
    print(json.dumps({"changed": changed, "outage": journal.get_setting(OUTAGE_KEY)}))
    return 0


def _outage_end(config: Config, journal: Journal) -> int:
    from embuffer.leginon.credentials import read_credentials
    from embuffer.leginon.db import LeginonDB
    from embuffer.leginon.frame_paths import register_outage_sessions
    from embuffer.report import outage

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
        json.dumps({"changed": ended is not None, "outage": ended, "buffer_frame_paths": recorded})
    )
    return 0


def _outage_report(config: Config, journal: Journal, *, as_json: bool) -> int:
    from embuffer.leginon.credentials import read_credentials
    from embuffer.leginon.db import LeginonDB
    from embuffer.report import outage

    report = outage.report(journal, LeginonDB(read_credentials(config.db_credentials)))
    if report is None:
        print(json.dumps({"outage": None}) if as_json else "no outage recorded")
        return 0
    print(json.dumps(report.as_dict(), indent=2) if as_json else report.render())
    return 0


def cmd_session(config: Config, args: argparse.Namespace) -> int:
    journal = Journal(config.journal)
    journal.set_session_keep(args.session, not args.off)
    state = "no longer kept" if args.off else "kept: purge will not remove its buffer copies"
    print(f"session {args.session}: {state}")
    return 0
