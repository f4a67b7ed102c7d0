"""The journal: embuffer's crash-safe record of every movie (see store.py for durability).

The package owns every SQL statement on the journal's tables: `store` the connection, rows
and settings, `queries` the questions and updates several parts of embuffer share, `schema`
the tables, `migrations` the schema's version and how an older journal is brought to it,
`movie` the typed row and its states, `lock` one process per service.
"""

from embuffer.journal.lock import JournalLocked, ServiceLock
from embuffer.journal.migrations import SCHEMA_VERSION, JournalTooNew
from embuffer.journal.movie import (
    ACTIVE_INGEST_STATES,
    COPIED,
    COPYING,
    DONE,
    MATCHED,
    MOVIE_COLUMNS,
    PURGED,
    QUARANTINED,
    RELEASED,
    REMOVED,
    SEEN,
    VANISHED,
    VERIFIED,
    Movie,
)
from embuffer.journal.store import Journal, JournalReplaced, open_read_only

__all__ = [
    "ACTIVE_INGEST_STATES",
    "COPIED",
    "COPYING",
    "DONE",
    "MATCHED",
    "MOVIE_COLUMNS",
    "PURGED",
    "QUARANTINED",
    "RELEASED",
    "REMOVED",
    "SCHEMA_VERSION",
    "SEEN",
    "VANISHED",
    "VERIFIED",
    "open_read_only",
    "Journal",
    "JournalLocked",
    "JournalReplaced",
    "JournalTooNew",
    "Movie",
    "ServiceLock",
]
