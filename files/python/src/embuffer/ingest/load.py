"""What one camera's ingest costs the two systems it shares with others: leginondb (statements
sent, seconds waited for them) and the camera share (folder listings, stats, opens).

A camera PC serves its movie folder over SMB while it acquires, and every stat or open of a
file there is a request its server answers; leginondb is the database Leginon writes to during
collection. The counts are kept in memory by the worker and added to the journal's
`camera_load` table every LOAD_FLUSH_SECONDS (and when the worker stops), where the metrics
exporter reads them as Prometheus counters: cumulative, so `rate()` works and a restart of
either service loses nothing but the last interval.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass

from embuffer.journal import Journal, waiting_files
from embuffer.leginon.db import LeginonDB

log = logging.getLogger("embuffer.ingest")

LOAD_FLUSH_SECONDS = 15.0

# counter names in the journal's camera_load table (the metrics name them after these)
LEGINONDB_QUERIES = "leginondb_queries"
LEGINONDB_QUERY_SECONDS = "leginondb_query_seconds"
SHARE_LISTINGS = "share_listings"
SHARE_STATS = "share_stats"
SHARE_OPENS = "share_opens"
LOAD_COUNTERS = (
    LEGINONDB_QUERIES,
    LEGINONDB_QUERY_SECONDS,
    SHARE_LISTINGS,
    SHARE_STATS,
    SHARE_OPENS,
)


@dataclass
class ShareOps:
    """Requests made of one camera share since the worker started (cumulative). Only the
    camera's own thread counts here."""

    listings: int = 0  # folder reads (one scandir of the camera folder, or of a DE folder)
    stats: int = 0  # lstat of a file or folder member
    opens: int = 0  # a file opened to read its structure


class LoadRecorder:
    """Adds one camera's new counts to the journal now and then."""

    def __init__(self, journal: Journal, camera: str, db: LeginonDB, share: ShareOps) -> None:
        self.journal = journal
        self.camera = camera
        self.db = db
        self.share = share
        self._recorded = {name: 0.0 for name in LOAD_COUNTERS}
        self._last_flush = time.monotonic()

    def current(self) -> dict[str, float]:
        return {
            LEGINONDB_QUERIES: float(self.db.queries),
            LEGINONDB_QUERY_SECONDS: self.db.query_seconds,
            SHARE_LISTINGS: float(self.share.listings),
            SHARE_STATS: float(self.share.stats),
            SHARE_OPENS: float(self.share.opens),
        }

    def flush_if_due(self, now: float) -> None:
        if now - self._last_flush >= LOAD_FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Record what was counted since the last flush. A failed write keeps the counts for
        the next one: nothing is counted twice or lost."""
        self._last_flush = time.monotonic()
        now = self.current()
        new = {name: now[name] - self._recorded[name] for name in LOAD_COUNTERS}
        new = {name: amount for name, amount in new.items() if amount > 0}
        if not new:
            return
        try:
            waiting_files.add_load(self.journal, self.camera, new)
        except sqlite3.Error as error:
            log.warning("load counters of %s not recorded yet: %s", self.camera, error)
            return
        self._recorded.update({name: now[name] for name in new})
