"""Read the my.cnf-style credentials file for leginondb.

The same file format the MySQL client and the Ansible role use (read by `mycnf`): a
`[client]` section with host, port, socket, user, password and database. It holds a
password, so it must not be readable by group or others; embuffer refuses a file that is.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from embuffer.leginon.mycnf import OptionFileError, client_options

_KNOWN_KEYS = {"host", "port", "socket", "user", "password", "database", "connect_timeout"}


class CredentialsError(Exception):
    pass


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str
    database: str
    host: str | None = None
    port: int = 3306
    socket: str | None = None
    connect_timeout: int = 10

    def describe(self) -> str:
        where = f"socket {self.socket}" if self.socket else f"{self.host}:{self.port}"
        return f"{self.user}@{where}/{self.database}"


def read_credentials(path: Path) -> Credentials:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CredentialsError(f"database credentials file {path} does not exist") from None
    except PermissionError:
        raise CredentialsError(
            f"database credentials file {path} cannot be reached by this user"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(
            f"database credentials file {path} has mode {stat.S_IMODE(mode):04o}; it holds a "
            "password, so make it 0600 (chmod 600)"
        )
    try:
        section = client_options(path)
    except OptionFileError as error:
        raise CredentialsError(f"database credentials file {path}: {error}") from None
    if not section:
        raise CredentialsError(
            f"database credentials file {path} has no [client] section (or it is empty)"
        )
    problems = [f"unknown key '{key}'" for key in section if key not in _KNOWN_KEYS]
    for required in ("user", "database"):
        if not section.get(required):
            problems.append(f"missing '{required}'")
    if not section.get("host") and not section.get("socket"):
        problems.append("needs 'host' (with optional 'port') or 'socket'")
    port = 3306
    if section.get("port"):
        try:
            port = int(section["port"])
        except ValueError:
            problems.append(f"'port' must be a number, got {section['port']!r}")
    if problems:
        raise CredentialsError(f"database credentials file {path}: " + "; ".join(problems))
    return Credentials(
        user=section["user"],
        password=section.get("password", ""),
        database=section["database"],
        host=section.get("host") or None,
        port=port,
        socket=section.get("socket") or None,
        connect_timeout=int(section.get("connect_timeout", "10") or 10),
    )
