"""`embuffer archive pause|resume`: a durable pause the archive service honours mid-copy."""

from __future__ import annotations

import logging
import os
import time

from embuffer.journal import Journal
from embuffer.journal import queries as q

log = logging.getLogger("embuffer.archive")


def pause(journal: Journal, reason: str) -> bool:
    """Pause the archive durably; False when it was already paused for this reason."""
    current = journal.get_setting(q.ARCHIVE_PAUSE_KEY)
    if current and current.get("reason") == reason:
        return False  # keep the original start time
    journal.set_setting(
        q.ARCHIVE_PAUSE_KEY,
        {
            "reason": reason,
            "since": time.time(),
            "by": os.environ.get("SUDO_USER") or os.environ.get("USER"),
        },
    )
    journal.event("archive_paused", detail=reason)
    log.warning("archive paused: %s", reason)
    return True


def resume(journal: Journal) -> bool:
    if journal.get_setting(q.ARCHIVE_PAUSE_KEY) is None:
        return False
    journal.delete_setting(q.ARCHIVE_PAUSE_KEY)
    journal.event("archive_resumed")
    log.info("archive resumed")
    return True
