# -*- coding: utf-8 -*-
# Copyright: embuffer contributors
# SPDX-License-Identifier: BSD-3-Clause
"""Connection helpers shared by the embuffer modules that talk to leginondb.

The modules accept the same ``login_*`` options as community.mysql, read the ``[client]``
section of a my.cnf-style file, and connect with PyMySQL. PyMySQL is imported only when a
connection is needed, so argument validation (and ``ansible-doc``) works on hosts without it.
The my.cnf rules are embuffer's (``embuffer/leginon/mycnf.py``, which this file cannot import on a
host without the package); ``files/python/tests/test_mycnf.py`` holds the two to the same file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import traceback

from ansible.module_utils.basic import missing_required_lib

DEFAULT_CONFIG_FILE = "~/.my.cnf"
DEFAULT_DATABASE = "leginondb"
DEFAULT_PORT = 3306
DEFAULT_HOST = "localhost"

# The my.cnf escape sequences MySQL and MariaDB clients understand in option values.
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "r": "\r", "s": " ", "\\": "\\", '"': '"', "'": "'"}
# Options of the [client] group the modules use; others (ssl-*, default-character-set...)
# are read but ignored.
CLIENT_OPTIONS = ("host", "port", "socket", "user", "password", "database")
# PyMySQL/MySQL client error numbers that deserve a hint instead of the bare server text.
_ACCESS_DENIED = 1045
_DB_ACCESS_DENIED = 1044
_UNKNOWN_DATABASE = 1049
_CANNOT_CONNECT = 2003
_NO_SOCKET = 2002
_LOST_CONNECTION = 2013


class LeginonDBError(Exception):
    """A problem a user can fix (bad credentials, unreachable server, unreadable file)."""


def leginondb_argument_spec():
    """The connection options every leginondb module accepts (community.mysql names)."""
    return dict(
        login_host=dict(type="str"),
        login_port=dict(type="int"),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        login_unix_socket=dict(type="str"),
        login_db=dict(type="str"),
        config_file=dict(type="path", default=DEFAULT_CONFIG_FILE),
        connect_timeout=dict(type="int", default=30),
    )


def load_pymysql():
    """Import PyMySQL on first use; ImportError propagates for the caller's fail_json."""
    import pymysql  # pylint: disable=import-outside-toplevel

    return pymysql


def run_against_leginondb(module, table, work):
    """Connect to leginondb with the module's login options, return `work(pymysql,
    connection, settings)`'s result dict through exit_json, and turn a missing PyMySQL, a
    refused connection and database errors (naming `table`) into task failures."""
    try:
        pymysql = load_pymysql()
    except ImportError:
        module.fail_json(
            msg=missing_required_lib(
                "PyMySQL",
                reason="to reach leginondb (install python3-pymysql on the host running this task)",
            ),
            exception=traceback.format_exc(),
        )
    try:
        settings = connection_settings(module.params)
        connection = connect(pymysql, settings)
    except LeginonDBError as exc:
        module.fail_json(msg=str(exc))
    try:
        result = work(pymysql, connection, settings)
    except LeginonDBError as exc:
        module.fail_json(msg=str(exc))
    except pymysql.err.MySQLError as exc:
        module.fail_json(
            msg=f"database error on {table} ({describe_target(settings)}): {exc}",
            exception=traceback.format_exc(),
        )
    finally:
        connection.close()
    module.exit_json(**result)


def _option_value(text):
    """Decode one my.cnf value: optional quotes, escape sequences, trailing # comment."""
    text = text.strip()
    quote = text[0] if text[:1] in ("'", '"') else None
    position = 1 if quote else 0
    out = []
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text):
            following = text[position + 1]
            out.append(_ESCAPES.get(following, "\\" + following))
            position += 2
            continue
        if quote and char == quote:
            break
        if not quote and char == "#":
            break
        out.append(char)
        position += 1
    value = "".join(out)
    return value if quote else value.rstrip()


def read_client_options(path, _seen=None):
    """Options of the [client] group of a my.cnf file, following !include/!includedir.

    Option names are lower-cased with dashes turned into underscores, as the MySQL client
    treats ``connect-timeout`` and ``connect_timeout`` alike. Later values win.
    """
    seen = set() if _seen is None else _seen
    real = os.path.realpath(path)
    if real in seen:
        return {}
    seen.add(real)
    try:
        with open(path, "r") as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError) as exc:
        raise LeginonDBError(
            "cannot read the config file %s: %s" % (path, exc.strerror or exc)
        ) from exc
    options = {}
    section = None
    for raw in lines:
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("!include "):
            target = os.path.join(os.path.dirname(path), line.split(None, 1)[1].strip())
            options.update(read_client_options(target, seen))
            continue
        if line.startswith("!includedir "):
            folder = os.path.join(os.path.dirname(path), line.split(None, 1)[1].strip())
            for included in sorted(glob.glob(os.path.join(folder, "*.cnf"))):
                options.update(read_client_options(included, seen))
            continue
        if line.startswith("["):
            end = line.find("]")
            section = line[1:end].strip().lower() if end > 0 else None
            continue
        if section != "client":
            continue
        name, separator, value = line.partition("=")
        name = name.strip().lower().replace("-", "_")
        options[name] = _option_value(value) if separator else ""
    return options


def connection_settings(params):
    """Merge the module's login_* options with the config file; explicit options win.

    Returns a dict with host, port, unix_socket, user, password, database, connect_timeout
    and config_file (the file actually read, or None).
    """
    config_file = params.get("config_file")
    file_options = {}
    used_file = None
    if config_file:
        expanded = os.path.expanduser(config_file)
        if os.path.exists(expanded):
            file_options = read_client_options(expanded)
            used_file = expanded
        elif os.path.expanduser(DEFAULT_CONFIG_FILE) != expanded:
            # The default ~/.my.cnf is optional; a file named on purpose must exist.
            raise LeginonDBError("the config file %s does not exist" % expanded)

    def pick(option, file_key):
        value = params.get(option)
        if value is not None and value != "":
            return value
        value = file_options.get(file_key)
        return value if value not in (None, "") else None

    port = pick("login_port", "port")
    try:
        port = int(port) if port is not None else DEFAULT_PORT
    except ValueError:
        raise LeginonDBError("the port %r in %s is not a number" % (port, used_file)) from None
    explicit_host = params.get("login_host")
    # A socket from the config file is used unless login_host asks for TCP explicitly.
    unix_socket = params.get("login_unix_socket") or (
        None if explicit_host else file_options.get("socket") or None
    )
    password = params.get("login_password")
    if password is None:
        password = file_options.get("password")
    return dict(
        host=pick("login_host", "host") or DEFAULT_HOST,
        port=port,
        unix_socket=unix_socket,
        user=pick("login_user", "user"),
        password=password,
        database=pick("login_db", "database") or DEFAULT_DATABASE,
        connect_timeout=params.get("connect_timeout") or 30,
        config_file=used_file,
    )


def describe_target(settings):
    """Where a connection goes, for messages: user@host:port/db or user@socket/db."""
    place = (
        "socket %s" % settings["unix_socket"]
        if settings.get("unix_socket")
        else "%s:%s" % (settings["host"], settings["port"])
    )
    return "%s@%s, database %s" % (
        settings.get("user") or "(default user)",
        place,
        settings["database"],
    )


def connect(pymysql, settings):
    """Open a PyMySQL connection (autocommit off) or raise LeginonDBError with a hint."""
    kwargs = dict(
        host=settings["host"],
        port=settings["port"],
        user=settings["user"],
        password=settings["password"] or "",
        database=settings["database"],
        connect_timeout=settings["connect_timeout"],
        charset="utf8mb4",
        autocommit=False,
    )
    if settings.get("unix_socket"):
        kwargs["unix_socket"] = settings["unix_socket"]
    try:
        return pymysql.connect(**kwargs)
    except pymysql.err.MySQLError as exc:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        detail = exc.args[1] if len(exc.args) > 1 else str(exc)
        target = describe_target(settings)
        hints = {
            _ACCESS_DENIED: "access denied: check login_user/login_password or the config file",
            _DB_ACCESS_DENIED: "the user may not use this database: check its GRANTs",
            _UNKNOWN_DATABASE: "the database does not exist: check login_db (default leginondb)",
            _CANNOT_CONNECT: "the server is not reachable: check login_host/login_port",
            _NO_SOCKET: "no server on that socket: check login_unix_socket",
            _LOST_CONNECTION: "the connection dropped: check connect_timeout and the server's log",
        }
        hint = hints.get(code, "cannot connect")
        raise LeginonDBError(
            "cannot connect to MySQL/MariaDB (%s): %s. Server said: %s" % (target, hint, detail)
        ) from exc
    except (IOError, OSError) as exc:
        raise LeginonDBError(
            "cannot connect to MySQL/MariaDB (%s): %s" % (describe_target(settings), exc)
        ) from exc


def quote_identifier(name):
    """Backtick-quote a table or column name; leginondb names contain spaces and '|'."""
    return "`%s`" % name.replace("`", "``")
