"""What every `embuffer` command shares with its process: exit codes, logging, signals."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from embuffer.journal.escape import one_line

log = logging.getLogger("embuffer")
EXIT_CONFIG = 78  # EX_CONFIG: the configuration is unusable
EXIT_LOCKED = 75  # EX_TEMPFAIL: another instance holds the journal
EXIT_INCOMPLETE = 1  # the command ran but could not finish its job (told in the log)
EXIT_SOFTWARE = 70  # EX_SOFTWARE: a worker thread died; systemd restarts the service
EXIT_JOURNAL_REPLACED = 74  # EX_IOERR: the journal was deleted or replaced under the service
# EX_DATAERR: the journal was written by a newer embuffer; nothing was written to it. The units
# do not restart on it (RestartPreventExitStatus): only installing that release helps.
EXIT_JOURNAL_TOO_NEW = 65


class OneLineFormatter(logging.Formatter):
    """Every record is one line: names from the camera share and leginondb, a traceback,
    anything else a message carries is escaped (journal/escape.py). Under systemd stderr goes
    to journald, where each newline starts a new entry, so a newline in a file name could
    otherwise forge a whole entry of its own."""

    def format(self, record: logging.LogRecord) -> str:
        return one_line(super().format(record))


def setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


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
