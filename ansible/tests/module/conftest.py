"""Fixtures for the leginon_buffer_host tests: one private MariaDB per session, a fresh
leginondb per test, and a runner that executes the module through ansible-playbook.

The module runs exactly as in production (AnsiballZ, argument validation, check and diff
mode, no_log masking) against a real mariadbd started from Debian's mariadb-server package.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from buffer_host_harness import (
    COLLECTION,
    Database,
    LeginonDB,
    MariaDBServer,
    ModuleRun,
    create_site_leginondb,
    module_warnings,
    new_database_name,
    run_playbook,
    start_private_server,
)


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    server = start_private_server()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


def _make_database(server: MariaDBServer, *, with_append_full_head: bool) -> Iterator[Database]:
    name = new_database_name()
    server.create_leginondb(name, with_append_full_head=with_append_full_head)
    connection = server.root(name)
    try:
        yield Database(server=server, name=name, data=LeginonDB(connection))
    finally:
        connection.close()
        cleanup = server.root()
        try:
            with cleanup.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            cleanup.close()


@pytest.fixture
def leginondb(mariadb: MariaDBServer) -> Iterator[Database]:
    """A current leginondb (BufferHostData has `append full head`)."""
    yield from _make_database(mariadb, with_append_full_head=True)


@pytest.fixture
def old_leginondb(mariadb: MariaDBServer) -> Iterator[Database]:
    """A leginondb from before 2022: BufferHostData lacks `append full head`."""
    yield from _make_database(mariadb, with_append_full_head=False)


@pytest.fixture(
    params=[("MyISAM", "latin1", "utf8mb4"), ("InnoDB", "utf8mb3", "latin1")],
    ids=["MyISAM-latin1", "InnoDB-utf8"],
)
def site_leginondb(request, mariadb: MariaDBServer) -> Iterator[Database]:
    """A leginondb whose Leginon tables have a site's engine and character set (sinedon
    makes MyISAM unless told otherwise, in the database's character set at the time), in a
    database whose default character set has changed since, as a long-lived site's has."""
    engine, charset, database_default = request.param
    name = new_database_name()
    create_site_leginondb(mariadb, name, engine, charset, database_default)
    connection = mariadb.root(name)
    try:
        yield Database(server=mariadb, name=name, data=LeginonDB(connection))
    finally:
        connection.close()
        cleanup = mariadb.root()
        try:
            with cleanup.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            cleanup.close()


@pytest.fixture
def run_module(tmp_path: Path):
    """Run leginon_buffer_host (or `module`, a name in the collection) once with the given
    arguments; returns a ModuleRun."""

    def runner(
        args: dict[str, Any],
        *,
        check: bool = False,
        diff: bool = False,
        env: dict[str, str] | None = None,
        module: str = "leginon_buffer_host",
    ) -> ModuleRun:
        play = {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [{"name": "Run the module", f"{COLLECTION}.{module}": args}],
        }
        document = run_playbook(tmp_path, play, check=check, diff=diff, env=env)
        result = document["plays"][0]["tasks"][0]["hosts"]["localhost"]
        return ModuleRun(
            rc=document["_rc"],
            result=result,
            stdout=document["_stdout"],
            stderr=document["_stderr"],
            warnings=module_warnings(result),
        )

    return runner
