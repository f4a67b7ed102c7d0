"""The `embuffer` command line.

`main` parses (parser), loads the configuration, and dispatches to a handler: reports
(config check, status, metrics), ingest (ingest, quarantine), archive (archive, purge,
verify), outage (outage, session); process holds the exit codes, logging and signals.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from embuffer.cli.parser import build_parser
from embuffer.cli.process import (
    EXIT_CONFIG,
    EXIT_INCOMPLETE,
    EXIT_JOURNAL_REPLACED,
    EXIT_JOURNAL_TOO_NEW,
    EXIT_LOCKED,
    EXIT_SOFTWARE,
    setup_logging,
)
from embuffer.config import Config, ConfigError, load_config
from embuffer.journal import JournalLocked, JournalReplaced, JournalTooNew

__all__ = [
    "EXIT_CONFIG",
    "EXIT_INCOMPLETE",
    "EXIT_JOURNAL_REPLACED",
    "EXIT_JOURNAL_TOO_NEW",
    "EXIT_LOCKED",
    "EXIT_SOFTWARE",
    "build_parser",
    "main",
]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
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
    except JournalTooNew as error:
        print(f"embuffer: {error}", file=sys.stderr)
        return EXIT_JOURNAL_TOO_NEW
