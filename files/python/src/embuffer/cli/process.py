"""What every `embuffer` command shares with its process: exit codes, logging, signals."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

log = logging.getLogger("embuffer")
EXIT_CONFIG = 78  # EX_CONFIG: the configuration is unusable
EXIT_LOCKED = 75  # EX_TEMPFAIL: another instance holds the journal
EXIT_INCOMPLETE = 1  # the command ran but could not finish its job (told in the log)
EXIT_SOFTWARE = 70  # EX_SOFTWARE: a worker thread died; systemd restarts the service
EXIT_JOURNAL_REPLACED = 74  # EX_IOERR: the journal was deleted or replaced under the service


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info(
            "received %s: finishing or rolling back the file in flight", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop
