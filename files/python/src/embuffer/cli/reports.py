"""`embuffer config check`, `status` and `metrics`: what embuffer reports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from embuffer.cli.process import EXIT_CONFIG, stop_on_signals
from embuffer.config import Config
from embuffer.journal import Journal


def cmd_config_check(config: Config, _args: argparse.Namespace) -> int:
    from embuffer.config import runtime_warnings
    from embuffer.leginon.frames_index import report_line
    from embuffer.report.registration import camera_registration_problems

    warnings = runtime_warnings(config) + camera_registration_problems(config)
    for warning in warnings:
        print(f"  - {warning}")
    # information, never a problem: embuffer works without the index
    print(f"  note: {report_line(config.db_credentials)}")
    verdict = "OK" if not warnings else f"{len(warnings)} problem(s) stop part of the work now"
    print(
        f"{config.path}: {verdict} ({len(config.cameras)} camera(s), buffer {config.buffer_root})"
    )
    return 0 if not warnings else 1


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
            export.serve(config, address, stop_on_signals())
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
        export.textfile_loop(config, Path(target), args.interval, stop_on_signals())
        return 0
    except (export.ExportSetupError, OSError) as error:
        print(f"embuffer metrics: {error}", file=sys.stderr)
        return EXIT_CONFIG
