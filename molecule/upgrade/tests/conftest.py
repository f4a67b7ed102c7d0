"""What the upgrade scenario's steps share: its hosts, the camera's manifest, the journal as
the service account reads it, and the project's playbook run against the scenario's hosts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import testinfra

BUFFER_1, BUFFER_2, DB = (
    "embuffer-upgrade-buffer-1",
    "embuffer-upgrade-buffer-2",
    "embuffer-upgrade-leginondb",
)
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE
)
JOURNAL = "/var/lib/embuffer/journal.sqlite"
# Reads the journal read-only as the service account (never as root: a root-owned -shm or
# -wal file would lock the daemons out). Prints the user_version and the query's rows.
READ_JOURNAL = """
import json, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
db.row_factory = sqlite3.Row
rows = [dict(row) for row in db.execute(sys.argv[2])]
print(json.dumps({"user_version": db.execute("PRAGMA user_version").fetchone()[0], "rows": rows}))
"""


@pytest.fixture(scope="session")
def buffer_1() -> testinfra.host.Host:
    return testinfra.get_host(f"podman://{BUFFER_1}")


@pytest.fixture(scope="session")
def buffer_2() -> testinfra.host.Host:
    return testinfra.get_host(f"podman://{BUFFER_2}")


@pytest.fixture(scope="session")
def db_host() -> testinfra.host.Host:
    return testinfra.get_host(f"podman://{DB}")


def read_journal(host, query: str, path: str = JOURNAL) -> dict[str, Any]:
    """{'user_version': N, 'rows': [...]} of a journal on a test host."""
    result = host.run("runuser -u embuffer -- python3 -c %s %s %s", READ_JOURNAL, path, query)
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def sql(db_host, query: str) -> list[tuple[str, ...]]:
    result = db_host.run("mariadb --batch --skip-column-names leginondb -e %s", query)
    assert result.rc == 0, result.stderr
    return [tuple(line.split("\t")) for line in result.stdout.splitlines() if line]


def site_yml(*options: str) -> tuple[int, str, dict[str, dict[str, int]]]:
    """Run the current tree's site.yml against the scenario's hosts, as converge does."""
    command = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        str(EPHEMERAL / "inventory"),
        str(PROJECT / "ansible" / "site.yml"),
        *options,
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
    output = done.stdout + done.stderr
    print(
        f"\n$ ansible-playbook site.yml  ({time.monotonic() - started:.0f} s, rc {done.returncode})"
    )
    print(output[-5000:])
    recap = {
        host: {"ok": int(ok), "changed": int(changed), "failed": int(failed)}
        for host, ok, changed, _unreachable, failed in RECAP.findall(output)
    }
    return done.returncode, output, recap
