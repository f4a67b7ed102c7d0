"""Shared fixtures: a real MariaDB with the leginondb tables, and a buffer host laid out in a
temporary folder (camera share, buffer root, quarantine, journal, primary storage)."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.leginon_data import LeginonDB  # noqa: E402
from support.mariadb_server import (  # noqa: E402
    CORE_TABLES,
    TEST_PASSWORD,
    TEST_USER,
    MariaDBServer,
    start_private_server,
    table_ddl,
)

_database_names = itertools.count(1)
CAMERA_HOST = "k3-cam-01"
BUFFER_HOSTNAME = "buffer-01"


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    server = start_private_server()
    yield server
    server.stop()


@dataclass
class BufferHost:
    """One simulated buffer server: folders, config file, and its leginondb."""

    root: Path
    server: MariaDBServer
    database: str
    leginon: LeginonDB

    @property
    def camera(self) -> Path:
        return self.root / "camera"

    @property
    def buffer(self) -> Path:
        return self.root / "bufferdata" / "frames"

    @property
    def quarantine(self) -> Path:
        return self.root / "bufferdata" / "quarantine"

    @property
    def journal(self) -> Path:
        return self.root / "state" / "journal.sqlite"

    @property
    def primary(self) -> Path:
        return self.root / "primary" / "frames"

    @property
    def credentials(self) -> Path:
        return self.root / "leginondb.cnf"

    @property
    def config_path(self) -> Path:
        return self.root / "embuffer.toml"

    def write_config(
        self,
        camera_extra: str = "",
        extra: str = "",
        reserve_percent: float | None = 0,
        **camera: object,
    ) -> Path:
        """embuffer.toml for this host; `reserve_percent=None` leaves the code's default.

        The reserve is 0 unless a test asks: these buffers lie on the test machine's own disk,
        whose free share no test chooses (CI's was 9.9 % free, under the default 10 % reserve,
        and every quarantine waited for room). The reserve is tested on filesystems of a known
        size (test_space_budget.py).
        """
        reserve = "" if reserve_percent is None else f"reserve_percent = {reserve_percent}\n"
        settings = {
            "check_days": 10,
            "grace_minutes": 20,
            "settle_seconds": 1,
            "unstructured_settle_seconds": 3,
            "poll_seconds": 0.2,
        }
        settings.update(camera)
        lines = "\n".join(f"{key} = {value!r}".replace("'", '"') for key, value in settings.items())
        self.config_path.write_text(
            textwrap.dedent(f"""\
            [buffer]
            root = "{self.buffer}"
            hostname = "{BUFFER_HOSTNAME}"
            quarantine = "{self.quarantine}"
            journal = "{self.journal}"
            {reserve}
            [database]
            credentials = "{self.credentials}"

            [[camera]]
            host = "{CAMERA_HOST}"
            path = "{self.camera}"
            """)
            + lines
            + "\n"
            + camera_extra
            + textwrap.dedent(f"""
            [archive]
            primary = "{self.primary}"
            """)
            + extra
        )
        return self.config_path

    def session(self, name: str = "26nov26a", user: str = "joe", **options: object) -> int:
        image_path = self.root / "data" / "leginon" / user / name / "rawdata"
        image_path.mkdir(parents=True, exist_ok=True)
        return self.leginon.session(name, str(image_path), **options)  # type: ignore[arg-type]

    def image_path(self, name: str = "26nov26a", user: str = "joe") -> Path:
        return self.root / "data" / "leginon" / user / name / "rawdata"

    def buffer_folder(self, name: str = "26nov26a", user: str = "joe") -> Path:
        return self.buffer / user / name / "rawdata"


# Columns that older leginondb installations lack (added to Leginon over the years).
NEWER_COLUMNS = (
    ("CameraEMData", "align frames"),
    ("CameraEMData", "eer frames"),
    ("CameraEMData", "frame flip"),
    ("CameraEMData", "frame rotate"),
    ("AcquisitionImageData", "REF|CorrectorPlanData|corrector plan"),
    ("SessionData", "frame path"),
    ("SessionData", "uid"),
    ("SessionData", "gid"),
    ("BufferHostData", "append full head"),
)


def make_host(
    tmp_path: Path, mariadb: MariaDBServer, *, older_site: bool = False
) -> tuple[BufferHost, pymysql.connections.Connection]:
    """A buffer host whose leginondb holds only the core tables, as a real one made by
    Leginon's ORM does until a row of another kind is inserted (the test helpers then create
    the table, as the ORM would). `older_site`: without the newer columns as well."""
    database = f"leginondb_{os.getpid()}_{next(_database_names)}"
    ddl = table_ddl()
    if older_site:
        ddl = {table: _without(statement, table) for table, statement in ddl.items()}
    mariadb.create_leginondb(
        database,
        tables=CORE_TABLES,
        without_columns=NEWER_COLUMNS if older_site else (),
    )
    connection = pymysql.connect(
        host="127.0.0.1",
        port=mariadb.port,
        user=TEST_USER,
        password=TEST_PASSWORD,
        database=database,
        autocommit=True,
    )
    buffer_host = BufferHost(tmp_path, mariadb, database, LeginonDB(connection, ddl))
    for folder in (
        buffer_host.camera,
        buffer_host.buffer,
        buffer_host.quarantine,
        buffer_host.journal.parent,
        buffer_host.primary,
    ):
        folder.mkdir(parents=True)
    mariadb.write_credentials(buffer_host.credentials, database)
    buffer_host.write_config()
    return buffer_host, connection


def _without(statement: str, table: str) -> str:
    """A CREATE TABLE statement without the newer columns (an older site's ORM)."""
    dropped = {column for owner, column in NEWER_COLUMNS if owner == table}
    lines = [
        line
        for line in statement.splitlines()
        if not any(line.strip().startswith(f"`{column}`") for column in dropped)
    ]
    return "\n".join(lines)


@pytest.fixture
def host(tmp_path: Path, mariadb: MariaDBServer) -> Iterator[BufferHost]:
    """A fresh buffer host with its own database, camera registered like Leginon does."""
    buffer_host, connection = make_host(tmp_path, mariadb)
    yield buffer_host
    connection.close()


@pytest.fixture
def old_host(tmp_path: Path, mariadb: MariaDBServer) -> Iterator[BufferHost]:
    """A buffer host whose leginondb predates the newer columns (and has only core tables)."""
    buffer_host, connection = make_host(tmp_path, mariadb, older_site=True)
    yield buffer_host
    connection.close()


def register(host: BufferHost) -> dict[str, int]:
    """The camera and this buffer host registered in leginondb, as the registration role
    does: it creates BufferHostData and BufferFramePathData when the site never had them."""
    host.leginon.ensure_table("BufferFramePathData")
    camera_id = host.leginon.instrument("K3", CAMERA_HOST)
    host_row = host.leginon.buffer_host(camera_id, BUFFER_HOSTNAME, str(host.buffer))
    session_id = host.session(uid=os.getuid() + 1000, gid=os.getgid() + 1000)
    return {"camera": camera_id, "host_row": host_row, "session": session_id}


@pytest.fixture
def registered(host: BufferHost) -> dict[str, int]:
    """The camera and this buffer host registered in leginondb (BufferHostData enabled)."""
    return register(host)


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """`folder` on a small tmpfs of its own, to fill a filesystem for real; skips the test
    where mounting is not allowed (not root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "embuffer-test", str(folder)],
        capture_output=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {result.stderr.decode()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def hours_ago(hours: float) -> dt.datetime:
    return dt.datetime.now() - dt.timedelta(hours=hours)
