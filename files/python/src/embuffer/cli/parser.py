"""The `embuffer` argument parser: one small function per sub-command, in `--help` order."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from embuffer import __version__
from embuffer.cli.archive import cmd_archive, cmd_purge, cmd_verify
from embuffer.cli.ingest import cmd_ingest, cmd_quarantine
from embuffer.cli.outage import cmd_outage, cmd_session
from embuffer.cli.reports import cmd_config_check, cmd_metrics, cmd_status
from embuffer.config import DEFAULT_CONFIG_PATH
from embuffer.journal.migrations import SCHEMA_VERSION

if TYPE_CHECKING:  # argparse's sub-command holder has no public name
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embuffer", description="The `embuffer` command line.")
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"configuration file (default {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.add_argument(
        "--version",
        action="version",
        version=f"embuffer {__version__} (journal schema version {SCHEMA_VERSION})",
        help="print the release and the journal schema version it reads and writes",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    # the order here is the order `embuffer --help` lists them in
    _add_config(commands)
    _add_ingest(commands)
    _add_status(commands)
    _add_verify(commands)
    _add_quarantine(commands)
    _add_archive(commands)
    _add_purge(commands)
    _add_outage(commands)
    _add_session(commands)
    _add_metrics(commands)
    return parser


def _add_config(commands: Commands) -> None:
    config = commands.add_parser("config", help="check the configuration file")
    config.add_argument("action", choices=["check"])
    config.set_defaults(handler=cmd_config_check)


def _add_ingest(commands: Commands) -> None:
    ingest = commands.add_parser("ingest", help="camera share -> buffer (service)")
    ingest.add_argument("--once", action="store_true", help="one pass over what is ready now")
    ingest.set_defaults(handler=cmd_ingest)


def _add_status(commands: Commands) -> None:
    status = commands.add_parser("status", help="what embuffer is doing")
    status.add_argument("--json", action="store_true")
    status.add_argument("--watch", type=float, metavar="SECONDS", default=0.0)
    status.set_defaults(handler=cmd_status)


def _add_verify(commands: Commands) -> None:
    verify = commands.add_parser("verify", help="re-hash files against the journal")
    verify.add_argument("path", nargs="?", help="a movie or a folder on the buffer")
    verify.add_argument("--primary", metavar="SESSION", help="re-hash a session on primary")
    verify.set_defaults(handler=cmd_verify)


def _add_quarantine(commands: Commands) -> None:
    quarantine = commands.add_parser("quarantine", help="files embuffer could not place")
    quarantine.add_argument("action", choices=["list", "retry", "release", "remove"])
    quarantine.add_argument("id", nargs="?", type=int, help="release/remove: the row's id (list)")
    quarantine.add_argument("--to", type=Path, help="release: a new path, or a folder to put it in")
    quarantine.add_argument("--reason", default="", help="why (required for remove)")
    quarantine.add_argument("--by", default="", help="who asked (default: the caller)")
    quarantine.set_defaults(handler=cmd_quarantine)


def _add_archive(commands: Commands) -> None:
    archive = commands.add_parser("archive", help="buffer -> primary storage (service)")
    archive.add_argument("action", nargs="?", choices=["pause", "resume"])
    archive.add_argument("--once", action="store_true")
    archive.add_argument("--reason", default="", help="why the archive is paused")
    archive.set_defaults(handler=cmd_archive)


def _add_purge(commands: Commands) -> None:
    purge = commands.add_parser("purge", help="remove buffer copies verified on primary")
    purge.add_argument("--dry-run", action="store_true", help="print what would go, remove none")
    purge.add_argument("--paranoid", action="store_true", help="re-hash the primary copy first")
    purge.set_defaults(handler=cmd_purge)


def _add_outage(commands: Commands) -> None:
    outage = commands.add_parser("outage", help="record an outage of primary storage")
    outage.add_argument("action", choices=["start", "end", "report"])
    outage.add_argument("--reason", default="")
    outage.add_argument("--by", default="", help="who declared it (default: the caller)")
    outage.add_argument("--location", default="", help="where Leginon writes new sessions")
    outage.add_argument("--json", action="store_true")
    outage.set_defaults(handler=cmd_outage)


def _add_session(commands: Commands) -> None:
    session = commands.add_parser("session", help="mark a session to keep on the buffer")
    session.add_argument("action", choices=["keep"])
    session.add_argument("session", help="Leginon session name")
    session.add_argument("--off", action="store_true", help="remove the keep mark")
    session.set_defaults(handler=cmd_session)


def _add_metrics(commands: Commands) -> None:
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
