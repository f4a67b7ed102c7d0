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
    Database,
    LeginonDB,
    MariaDBServer,
    ModuleRun,
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


@pytest.fixture
def run_module(tmp_path: Path):
    """Run leginon_buffer_host once with the given arguments; returns a ModuleRun."""

    def runner(
        args: dict[str, Any],
        *,
        check: bool = False,
        diff: bool = False,
        env: dict[str, str] | None = None,
    ) -> ModuleRun:
        play = {
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [{"name": "Run the module", "leginon_buffer_host": args}],
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
