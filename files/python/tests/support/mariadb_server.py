"""A private, throw-away MariaDB server for the test suite.

The tests talk to a real mariadbd (Debian's mariadb-server package) so that SQL, quoting of
column names with spaces and `|`, reconnects and server restarts behave as they do at a
facility. The server lives in a temporary folder with its own socket and TCP port, and
nothing on the machine's own MariaDB (if any) is touched.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pymysql

SCHEMA = Path(__file__).with_name("leginondb.sql")
TEST_USER = "embuffer"
TEST_PASSWORD = "test-password with spaces & quotes'"


# The tables every leginondb that has seen one exposure holds; the rest appear when used.
CORE_TABLES = ("InstrumentData", "SessionData", "CameraEMData", "AcquisitionImageData")


def table_ddl() -> dict[str, str]:
    """Table name -> its CREATE TABLE statement, from leginondb.sql."""
    found: dict[str, str] = {}
    for statement in SCHEMA.read_text().split(";"):
        lines = [line for line in statement.splitlines() if not line.startswith("--")]
        text = "\n".join(lines).strip()
        if text:
            found[text.split("`")[1]] = text
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _find(binary: str) -> str:
    for candidate in (shutil.which(binary), f"/usr/sbin/{binary}", f"/usr/bin/{binary}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        f"{binary} not found: install Debian's mariadb-server package (bash .ci/run does)"
    )


@dataclass
class MariaDBServer:
    """One mariadbd process with a private datadir; `start()` then `stop()`."""

    base: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.base / "mysqld.sock"

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    def start(self) -> None:
        run_user = pwd.getpwuid(os.getuid()).pw_name
        if not self.datadir.exists():
            subprocess.run(
                [
                    _find("mariadb-install-db"),
                    f"--datadir={self.datadir}",
                    f"--user={run_user}",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        self.port = self.port or _free_port()
        log = open(self.base / "mariadbd.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [
                _find("mariadbd"),
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--socket={self.socket_path}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--user={run_user}",
                f"--pid-file={self.base / 'mariadbd.pid'}",
                "--innodb-buffer-pool-size=32M",
                "--innodb-flush-log-at-trx-commit=2",
                "--skip-name-resolve",
                "--max-connections=200",
            ],
            stdout=log,
            stderr=log,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                log = (self.base / "mariadbd.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"mariadbd exited early:\n{log}")
            try:
                self.root().close()
                return
            except pymysql.err.OperationalError:
                time.sleep(0.2)
        raise RuntimeError("mariadbd did not accept connections within 60 s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def root(self, database: str | None = None) -> pymysql.connections.Connection:
        return pymysql.connect(
            unix_socket=str(self.socket_path),
            user="root",
            database=database,
            autocommit=True,
            connect_timeout=2,
        )

    def create_leginondb(
        self,
        name: str,
        *,
        with_append_full_head: bool = True,
        tables: tuple[str, ...] | None = None,
        without_columns: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Create a fresh leginondb-like database and grant the test user on it.

        `tables`: only these tables (None: all). Leginon's ORM creates a table when its first
        row is inserted, so a real site has the core tables and any others only once used;
        `without_columns`: (table, column) pairs an older installation does not have."""
        connection = self.root()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
                cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET latin1")
                cursor.execute(f"USE `{name}`")
                for table, statement in table_ddl().items():
                    if tables is None or table in tables:
                        cursor.execute(statement)
                dropped = list(without_columns)
                if not with_append_full_head:
                    dropped.append(("BufferHostData", "append full head"))
                for table, column in dropped:
                    if tables is None or table in tables:
                        cursor.execute(f"ALTER TABLE `{table}` DROP COLUMN `{column}`")
                for host in ("localhost", "127.0.0.1"):
                    cursor.execute(
                        "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s",
                        (TEST_USER, host, TEST_PASSWORD),
                    )
                    cursor.execute(f"GRANT ALL ON `{name}`.* TO %s@%s", (TEST_USER, host))
        finally:
            connection.close()

    def write_credentials(self, path: Path, database: str, *, via_socket: bool = False) -> Path:
        """A my.cnf-style credentials file as the roles install it (mode 0600)."""
        lines = ["[client]", f"user = {TEST_USER}", f'password = "{TEST_PASSWORD}"']
        if via_socket:
            lines.append(f"socket = {self.socket_path}")
        else:
            lines += ["host = 127.0.0.1", f"port = {self.port}"]
        lines.append(f"database = {database}")
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path


def start_private_server() -> MariaDBServer:
    base = Path(tempfile.mkdtemp(prefix="embuffer-mariadb-"))
    server = MariaDBServer(base=base)
    server.start()
    return server
