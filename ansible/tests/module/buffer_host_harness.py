"""Helpers for the leginon_buffer_host tests: the repository's paths, a throw-away leginondb
on the private MariaDB server, and ansible-playbook runs parsed from the json callback.

Kept out of conftest.py so that the test module can import it by a name no other test folder
uses (the embuffer package's tests have a conftest.py of their own).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
SUPPORT = REPO / "files" / "python" / "tests" / "support"
sys.path.insert(0, str(SUPPORT))

from leginon_data import LeginonDB  # noqa: E402
from mariadb_server import (  # noqa: E402
    TEST_PASSWORD,
    TEST_USER,
    MariaDBServer,
    start_private_server,
    table_ddl,
)

__all__ = [
    "COLLECTION",
    "COLLECTIONS_PATH",
    "MODULES",
    "TEST_PASSWORD",
    "TEST_USER",
    "Database",
    "LeginonDB",
    "MariaDBServer",
    "ModuleRun",
    "create_site_leginondb",
    "module_warnings",
    "new_database_name",
    "run_playbook",
    "start_private_server",
]

# The modules and roles are run as the collection embuffer.buffer, through the checkout's own
# collections path (ansible/checkout/ansible_collections/embuffer/buffer links to REPO).
COLLECTION = "embuffer.buffer"
COLLECTIONS_PATH = REPO / "ansible" / "checkout"
MODULES = REPO / "plugins" / "modules"
_numbers = itertools.count(1)


def ansible_tool(name: str) -> str:
    """ansible-playbook next to the interpreter running pytest (the tools venv), else PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: run the tests with the tools venv (.venv/bin/pytest)")
    return found


@dataclass
class Database:
    """One throw-away leginondb on the session's server."""

    server: MariaDBServer
    name: str
    data: LeginonDB

    @property
    def login(self) -> dict[str, Any]:
        return {
            "login_host": "127.0.0.1",
            "login_port": self.server.port,
            "login_user": TEST_USER,
            "login_password": TEST_PASSWORD,
            "login_db": self.name,
        }

    def buffer_rows(self) -> list[dict[str, Any]]:
        """Every BufferHostData row, oldest first, all columns (timestamps included)."""
        return self.data.rows("SELECT * FROM `BufferHostData` ORDER BY `DEF_id`")

    def buffer_columns(self) -> dict[str, dict[str, Any]]:
        rows = self.data.rows(
            "SELECT COLUMN_NAME AS name, COLUMN_TYPE AS type, IS_NULLABLE AS nullable,"
            " COLUMN_DEFAULT AS col_default FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'BufferHostData'",
            (self.name,),
        )
        return {row["name"]: row for row in rows}


@dataclass
class ModuleRun:
    """The outcome of one ansible-playbook run of a single task on localhost."""

    rc: int
    result: dict[str, Any]
    stdout: str
    stderr: str
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))


def _ansible_env(tmp_path: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_PATH),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"),
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_HOST_KEY_CHECKING="0",
    )
    # A stray ansible.cfg (the repository's, the user's) must not change what is tested.
    env.pop("ANSIBLE_CONFIG", None)
    env.update(extra or {})
    return env


def run_playbook(
    tmp_path: Path,
    play: dict[str, Any],
    *,
    check: bool = False,
    diff: bool = False,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run one play on localhost and return the json callback's document."""
    playbook = tmp_path / f"play-{next(_numbers)}.yml"
    playbook.write_text(json.dumps([play]))
    command = [
        ansible_tool("ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        json.dumps({"ansible_python_interpreter": sys.executable}),
        str(playbook),
    ]
    if check:
        command.append("--check")
    if diff:
        command.append("--diff")
    completed = subprocess.run(
        command,
        cwd=tmp_path,
        env=_ansible_env(tmp_path, env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        document = json.loads(completed.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"ansible-playbook printed no JSON (rc={completed.returncode}):\n"
            f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
    document["_rc"] = completed.returncode
    document["_stderr"] = completed.stderr
    document["_stdout"] = completed.stdout
    return document


def module_warnings(result: dict[str, Any]) -> list[str]:
    """Module warnings (module.warn) as the json callback reports them."""
    return [str(warning) for warning in result.get("warnings", [])]


def create_site_leginondb(
    server: MariaDBServer, name: str, engine: str, charset: str, database_default: str
) -> None:
    """A leginondb whose tables use `engine` and `charset`, in a database whose default
    character set is `database_default`; the test user may do anything in it."""
    connection = server.root()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET {database_default}")
            cursor.execute(f"USE `{name}`")
            for statement in table_ddl().values():
                cursor.execute(f"{statement} ENGINE={engine} DEFAULT CHARSET={charset}")
            for host in ("localhost", "127.0.0.1"):
                cursor.execute(
                    "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s",
                    (TEST_USER, host, TEST_PASSWORD),
                )
                cursor.execute(f"GRANT ALL ON `{name}`.* TO %s@%s", (TEST_USER, host))
    finally:
        connection.close()


def new_database_name() -> str:
    return f"leginondb_test_{next(_numbers)}"
