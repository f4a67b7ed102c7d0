"""The my.cnf reader embuffer uses and the one its Ansible modules use read files alike."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

from embuffer.leginon.mycnf import client_options

MODULE_UTILS = Path(__file__).parents[3] / "plugins" / "module_utils" / "leginondb.py"


def ansible_reader():
    spec = importlib.util.spec_from_file_location("embuffer_module_utils_leginondb", MODULE_UTILS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read_client_options


@pytest.fixture
def option_files(tmp_path: Path) -> Path:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "20-late.cnf").write_text("[client]\nhost = late.example\n")
    (tmp_path / "conf.d" / "10-early.cnf").write_text("[client]\nhost = early.example\nport=3307\n")
    (tmp_path / "conf.d" / "ignored.txt").write_text("[client]\nuser = never\n")
    (tmp_path / "extra.cnf").write_text("[client]\n!include main.cnf\nsocket = /run/x.sock\n")
    (tmp_path / "main.cnf").write_text(
        textwrap.dedent(
            r"""
            # a comment line
            ; another
            [mysqld]
            user = not-the-client
            [client]
            user = embuffer   # trailing comment
            password = "p#ss \"quoted\" \s\t end"
            database='leginon db'
            connect-timeout = 12
            Default_Character_Set = utf8mb4
            skip-ssl
            odd = back\qslash
            !includedir conf.d
            !include extra.cnf
            [client-mariadb]
            user = other
            """
        )
    )
    return tmp_path / "main.cnf"


def test_both_readers_agree_on_a_file_with_every_rule(option_files):
    ours = client_options(option_files)
    assert ours == ansible_reader()(str(option_files))
    assert ours == {
        "user": "embuffer",
        "password": 'p#ss "quoted"  \t end',  # \s is a blank, \t a tab
        "database": "leginon db",
        "connect_timeout": "12",
        "default_character_set": "utf8mb4",
        "skip_ssl": "",
        "odd": "back\\qslash",
        "host": "late.example",
        "port": "3307",
        "socket": "/run/x.sock",
    }
