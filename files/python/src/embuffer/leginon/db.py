"""A PyMySQL connection to leginondb that survives the database going away.

Every query goes through `rows()`/`insert()`. When the server is unreachable they raise
DatabaseUnavailable (after dropping the broken connection); the caller leaves its files
where they are and tries again after `backoff()`. Nothing is ever decided (matched,
quarantined, deleted) on the strength of a failed query.

A real leginondb lacks tables and columns: Leginon's ORM creates a table only when its first
row is inserted (a site that never took a bright reference has no BrightImageData), and older
installations lack newer columns. A missing table (MySQL error 1146) or column (1054) means
"no rows from there": the query raises SchemaMissing, callers that can do without the answer
catch it, and `note_missing()` warns once per table or column with what is assumed. The gaps
are kept in `schema_gaps` for the journal (events, hence metrics).

Every statement is counted (`queries`, and `query_seconds` spent waiting for its answer,
failed ones included): the ingest adds these cumulative figures to the journal, and the
metrics export them per camera, so the load embuffer puts on a shared leginondb is seen.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, NoReturn

import pymysql
import pymysql.cursors

from embuffer.leginon.credentials import Credentials

log = logging.getLogger("embuffer.db")


class DatabaseUnavailable(Exception):
    pass


class SchemaMissing(LookupError):
    """A table or column that this leginondb does not have (MySQL errors 1146, 1054)."""


class NotInCharacterSet(LookupError):
    """A value the compared column's character set cannot hold (MySQL errors 1267, 1270,
    1271: a camera file name with characters a latin1 leginondb has no code for). No row
    can hold it either, so it matches nothing; the database itself is fine."""


# MySQL/MariaDB error numbers for a missing table and a missing column
ER_NO_SUCH_TABLE = 1146
ER_BAD_FIELD_ERROR = 1054
# "Illegal mix of collations" for two, three or more operands
ER_COLLATION_MIXES = (1267, 1270, 1271)
# Tables appear when Leginon inserts their first row: a cached "missing" is looked at again
# after this long, so a bright reference taken mid-session is found within a minute.
SCHEMA_CACHE_SECONDS = 60.0


class Backoff:
    """Exponential backoff between reconnect attempts: 1 s, 2 s, 4 s ... capped."""

    def __init__(self, first: float = 1.0, cap: float = 60.0) -> None:
        self.first = first
        self.cap = cap
        self.delay = 0.0
        self.not_before = 0.0

    def failed(self) -> float:
        self.delay = min(self.cap, self.delay * 2 if self.delay else self.first)
        self.not_before = time.monotonic() + self.delay
        return self.delay

    def succeeded(self) -> None:
        self.delay = 0.0
        self.not_before = 0.0

    def ready(self) -> bool:
        return time.monotonic() >= self.not_before


class LeginonDB:
    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._connection: pymysql.connections.Connection | None = None
        self._columns: dict[str, tuple[float, set[str]]] = {}
        self.errors = 0
        # "table X" / "column X.Y" -> what embuffer assumes without it; warned once each
        self.schema_gaps: dict[str, str] = {}
        self._unreported: list[str] = []
        # statements sent and seconds spent on them since this object was made (cumulative:
        # readers take differences, so a count is never lost between two of them)
        self.queries = 0
        self.query_seconds = 0.0

    def _connect(self) -> pymysql.connections.Connection:
        c = self.credentials
        return pymysql.connect(
            host=c.host or "localhost",
            port=c.port,
            unix_socket=c.socket,
            user=c.user,
            password=c.password,
            database=c.database,
            connect_timeout=c.connect_timeout,
            read_timeout=60,
            write_timeout=60,
            autocommit=True,
            charset="utf8mb4",
            cursorclass=pymysql.cursors.DictCursor,
        )

    def _run(self, sql: str, args: tuple[Any, ...] | list[Any]) -> tuple[list[dict[str, Any]], int]:
        try:
            if self._connection is None:
                self._connection = self._connect()
                log.info("connected to leginondb %s", self.credentials.describe())
            started = time.monotonic()
            self.queries += 1
            try:
                with self._connection.cursor() as cursor:
                    cursor.execute(sql, args)
                    rows: list[dict[str, Any]] = list(cursor.fetchall())  # type: ignore[arg-type]
                    return rows, int(cursor.lastrowid or 0)
            finally:
                self.query_seconds += time.monotonic() - started
        except pymysql.err.ProgrammingError as error:
            if error.args and error.args[0] in (ER_NO_SUCH_TABLE, ER_BAD_FIELD_ERROR):
                self._columns.clear()  # the schema is not what the cache said
                raise SchemaMissing(str(error.args[-1])) from error
            raise
        except pymysql.err.OperationalError as error:
            if error.args and error.args[0] in ER_COLLATION_MIXES:
                raise NotInCharacterSet(str(error.args[-1])) from error
            self._unavailable(error)
        except (pymysql.err.InterfaceError, OSError) as error:
            self._unavailable(error)

    def _unavailable(self, error: Exception) -> NoReturn:
        """Drop the broken connection and say so: nothing is decided on a failed query."""
        self.errors += 1
        self.close()
        raise DatabaseUnavailable(
            f"leginondb {self.credentials.describe()} unavailable: {error}"
        ) from error

    def rows(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[dict[str, Any]]:
        return self._run(sql, args)[0]

    def insert(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> int:
        return self._run(sql, args)[1]

    def columns(self, table: str) -> set[str]:
        """Column names of a table (empty: no such table), cached for a minute."""
        cached = self._columns.get(table)
        if cached is None or time.monotonic() - cached[0] > SCHEMA_CACHE_SECONDS:
            found = self.rows(
                "SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                (table,),
            )
            cached = (time.monotonic(), {row["name"] for row in found})
            self._columns[table] = cached
        return cached[1]

    def has_table(self, table: str, *, assumed: str) -> bool:
        """True when the table exists; else note the gap (with what is assumed) and False."""
        if self.columns(table):
            return True
        self.note_missing(f"table {table}", assumed)
        return False

    def column_or_null(self, table: str, alias: str, column: str, *, assumed: str) -> str:
        """`alias`.`column` when the table has it, else NULL (and the gap noted), for
        SELECT lists that must work on databases older than the column."""
        if column in self.columns(table):
            return f"{alias}.`{column}`"
        self.note_missing(f"column {table}.`{column}`", assumed)
        return "NULL"

    def note_missing(self, what: str, assumed: str) -> None:
        if what in self.schema_gaps:
            return
        self.schema_gaps[what] = assumed
        self._unreported.append(what)
        log.warning("leginondb has no %s (not created yet on this site): %s", what, assumed)

    def take_new_gaps(self) -> list[tuple[str, str]]:
        """Gaps noted since the last call, for the journal's events."""
        new, self._unreported = self._unreported, []
        return [(what, self.schema_gaps[what]) for what in new]

    def ping(self) -> None:
        self.rows("SELECT 1 AS ok")

    def close(self) -> None:
        if self._connection is not None:
            # a broken socket may fail to close; it is gone either way
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
            self._columns.clear()
