"""A PyMySQL connection to leginondb that survives the database going away.

Every query goes through `rows()`/`insert()`. When the server is unreachable they raise
DatabaseUnavailable (after dropping the broken connection); the caller leaves its files
where they are and tries again after `backoff()`. Nothing is ever decided (matched,
quarantined, deleted) on the strength of a failed query.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import pymysql
import pymysql.cursors

from embuffer.dbcreds import Credentials

log = logging.getLogger("embuffer.db")


class DatabaseUnavailable(Exception):
    pass


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
        self._columns: dict[str, set[str]] = {}
        self.errors = 0

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
            with self._connection.cursor() as cursor:
                cursor.execute(sql, args)
                rows: list[dict[str, Any]] = list(cursor.fetchall())  # type: ignore[arg-type]
                return rows, int(cursor.lastrowid or 0)
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError, OSError) as error:
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
        """Column names of a table, cached per connection lifetime (databases differ)."""
        if table not in self._columns:
            found = self.rows(
                "SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                (table,),
            )
            self._columns[table] = {row["name"] for row in found}
        return self._columns[table]

    def ping(self) -> None:
        self.rows("SELECT 1 AS ok")

    def close(self) -> None:
        if self._connection is not None:
            # a broken socket may fail to close; it is gone either way
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
            self._columns.clear()
