"""Fixtures shared by the default scenario's tests: the two test hosts and the leginondb rows."""

from __future__ import annotations

import pytest
import testinfra

BUFFER_HOST = "embuffer-buffer-01"
DB_HOST = "embuffer-leginondb"


@pytest.fixture(scope="module")
def db_host() -> testinfra.host.Host:
    return testinfra.get_host(f"podman://{DB_HOST}")


@pytest.fixture(scope="module")
def sql(db_host):
    """Run a query in leginondb on the database host and return its rows as tuples of str."""

    def run(query: str) -> list[tuple[str, ...]]:
        result = db_host.run("mariadb --batch --skip-column-names leginondb -e %s", query)
        assert result.rc == 0, result.stderr
        return [tuple(line.split("\t")) for line in result.stdout.splitlines() if line]

    return run
