"""`embuffer quarantine release ID --to PATH` and `embuffer quarantine remove ID --reason`:
a quarantined file taken out on a person's word (ingest/quarantine_exit.py)."""

from __future__ import annotations

import argparse
import getpass
import json
import os

from embuffer.cli.process import EXIT_CONFIG, EXIT_INCOMPLETE, log
from embuffer.config import Config
from embuffer.journal import Journal

EXIT_USAGE = 2  # as argparse: the request itself is wrong (a `--to` inside quarantine)


def caller() -> str:
    """Who runs the command: sudo keeps the person's name (the service account alone says
    nothing about who asked); an account without a passwd entry by its uid."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def take_out(config: Config, journal: Journal, args: argparse.Namespace) -> int:
    from embuffer.ingest import quarantine_exit as qe

    if args.id is None:
        log.error("quarantine %s needs the row's id (see `embuffer quarantine list`)", args.action)
        return EXIT_CONFIG
    request = qe.Request(by=args.by or caller(), why=args.reason)
    try:
        if args.action == "release":
            if args.to is None:
                log.error("quarantine release needs --to PATH (a new path or a folder)")
                return EXIT_CONFIG
            evidence = qe.release(config, journal, args.id, args.to, request)
        else:
            evidence = qe.remove(config, journal, args.id, request)
    except qe.RefusedTarget as error:
        log.error("quarantine %s %d: %s", args.action, args.id, error)
        return EXIT_USAGE
    except (qe.QuarantineExitError, OSError) as error:
        log.error("quarantine %s %d: %s", args.action, args.id, error)
        return EXIT_INCOMPLETE
    print(json.dumps(evidence, indent=2, sort_keys=True))
    return 0
