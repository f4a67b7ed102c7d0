"""Checks shared by `load_config` and `embuffer config check`: one table's keys and types,
a folder's existence and access, the credentials file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from embuffer.config.keys import Spec
from embuffer.config.model import Config


def _type_name(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def read_table(table: Any, spec: Spec, where: str, problems: list[str]) -> dict[str, Any]:
    """The table's values by key, a key's default where it is missing or of the wrong type."""
    values: dict[str, Any] = {}
    if not isinstance(table, dict):
        problems.append(f"[{where}] must be a table, not {type(table).__name__}")
        return {key: default for key, (_, _, default) in spec.items()}
    for key in table:
        if key not in spec:
            known = ", ".join(sorted(spec))
            problems.append(f"[{where}] unknown key '{key}' (known keys: {known})")
    for key, (types, required, default) in spec.items():
        if key not in table:
            if required:
                problems.append(f"[{where}] missing required key '{key}'")
            values[key] = default
            continue
        value = table[key]
        # bool is an int in Python; a number field must not silently accept true/false.
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            problems.append(
                f"[{where}] '{key}' must be {_type_name(types)}, "
                f"got {type(value).__name__} {value!r}"
            )
            values[key] = default
        else:
            values[key] = value
    return values


def check_folder(path: str | None, what: str, problems: list[str], *, writable: bool) -> None:
    if not path:
        return
    folder = Path(path)
    if not folder.is_absolute():
        problems.append(f"{what} '{path}' must be an absolute path")
    elif not folder.is_dir():
        problems.append(f"{what} '{path}' does not exist or is not a folder")
    elif not os.access(folder, os.R_OK | os.X_OK):
        problems.append(f"{what} '{path}' is not readable by this user")
    elif writable and not os.access(folder, os.W_OK):
        problems.append(f"{what} '{path}' is not writable by this user")


def check_credentials(path: str | None, problems: list[str]) -> None:
    if not path:
        return
    from embuffer.leginon.credentials import CredentialsError, read_credentials

    try:
        read_credentials(Path(path))
    except CredentialsError as error:
        problems.append(str(error))


def runtime_warnings(config: Config) -> list[str]:
    """Conditions that are not configuration errors but stop part of the work right now:
    an unmounted camera share or primary store. The daemons keep retrying these (one camera
    down must not stop the others); `config check` reports them."""
    warnings: list[str] = []
    for camera in config.cameras:
        check_folder(
            str(camera.path), f"[camera '{camera.host}'] camera folder", warnings, writable=True
        )
    if config.archive.primary is not None:
        check_folder(str(config.archive.primary), "[archive] primary", warnings, writable=True)
    return warnings
