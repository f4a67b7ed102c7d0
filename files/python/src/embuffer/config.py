"""Load and validate /etc/embuffer/embuffer.toml.

Every problem is collected (not just the first) and phrased for the sysadmin who edits the
file: which key, what is wrong, what was expected. A config with problems never starts a
daemon; `embuffer config check` prints the same list.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = Path("/etc/embuffer/embuffer.toml")


class ConfigError(Exception):
    """The configuration file cannot be used; `problems` lists every reason."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


@dataclass(frozen=True)
class CameraConfig:
    host: str
    path: Path
    check_days: int = 10
    grace_minutes: float = 20.0
    settle_seconds: float = 1.0
    # Files whose format has no structure check (timing only) wait this much longer.
    unstructured_settle_seconds: float = 30.0
    # A movie with fewer frames than its Leginon row counts waits this long unchanged before
    # it is taken as it is (a wrong count must not stop the camera).
    frame_count_settle_seconds: float = 30.0
    destination_head: str = ""
    poll_seconds: float = 1.0


@dataclass(frozen=True)
class ArchiveConfig:
    primary: Path | None = None
    compress_mrc: bool = False
    poll_seconds: float = 2.0


@dataclass(frozen=True)
class PurgeConfig:
    retention_days: float = 14.0
    high_watermark_percent: float = 85.0
    low_watermark_percent: float = 75.0


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = "127.0.0.1:9814"  # `embuffer metrics serve`; loopback unless --allow-public
    textfile: str = ""  # `embuffer metrics textfile` default target (node_exporter *.prom)


@dataclass(frozen=True)
class Config:
    path: Path
    buffer_root: Path
    buffer_hostname: str
    quarantine: Path
    journal: Path
    db_credentials: Path
    cameras: tuple[CameraConfig, ...]
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    purge: PurgeConfig = field(default_factory=PurgeConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # A file mode applied to every movie and folder embuffer creates (group-readable so the
    # facility group and Appion can read frames; never world-writable).
    file_mode: int = 0o664
    dir_mode: int = 0o2775

    @property
    def state_dir(self) -> Path:
        return self.journal.parent


# key -> (type(s), required, default); the tables below mirror the documented interface.
_Spec = dict[str, tuple[tuple[type, ...], bool, Any]]
_BUFFER_KEYS: _Spec = {
    "root": ((str,), True, None),
    "hostname": ((str,), False, None),
    "quarantine": ((str,), True, None),
    "journal": ((str,), False, "/var/lib/embuffer/journal.sqlite"),
}
_DATABASE_KEYS: _Spec = {"credentials": ((str,), True, None)}
_CAMERA_KEYS: _Spec = {
    "host": ((str,), True, None),
    "path": ((str,), True, None),
    "check_days": ((int,), False, 10),
    "grace_minutes": ((int, float), False, 20),
    "settle_seconds": ((int, float), False, 1),
    "unstructured_settle_seconds": ((int, float), False, 30),
    "frame_count_settle_seconds": ((int, float), False, 30),
    "destination_head": ((str,), False, ""),
    "poll_seconds": ((int, float), False, 1),
}
_ARCHIVE_KEYS: _Spec = {
    "primary": ((str,), False, None),
    "compress_mrc": ((bool,), False, False),
    "poll_seconds": ((int, float), False, 2),
}
_PURGE_KEYS: _Spec = {
    "retention_days": ((int, float), False, 14),
    "high_watermark_percent": ((int, float), False, 85),
    "low_watermark_percent": ((int, float), False, 75),
}
_METRICS_KEYS: _Spec = {
    "listen": ((str,), False, "127.0.0.1:9814"),
    "textfile": ((str,), False, ""),
}
_TOP_LEVEL = {"buffer", "database", "camera", "archive", "purge", "metrics"}


def _type_name(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _read_table(table: Any, spec: _Spec, where: str, problems: list[str]) -> dict[str, Any]:
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


def _check_folder(path: str | None, what: str, problems: list[str], *, writable: bool) -> None:
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


def _check_credentials(path: str | None, problems: list[str]) -> None:
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
        _check_folder(
            str(camera.path), f"[camera '{camera.host}'] camera folder", warnings, writable=True
        )
    if config.archive.primary is not None:
        _check_folder(str(config.archive.primary), "[archive] primary", warnings, writable=True)
    return warnings


def load_config(path: Path = DEFAULT_CONFIG_PATH, *, check_paths: bool = True) -> Config:
    """Parse and validate; raise ConfigError listing every problem."""
    problems: list[str] = []
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, [f"config file {path} does not exist"]) from None
    except PermissionError:
        raise ConfigError(path, [f"config file {path} is not readable by this user"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, [f"config file {path} is not valid TOML: {error}"]) from None

    for key in raw:
        if key not in _TOP_LEVEL:
            problems.append(f"unknown section '{key}' (known: {', '.join(sorted(_TOP_LEVEL))})")
    for section in ("buffer", "database"):
        if section not in raw:
            problems.append(f"missing section [{section}]")
    buffer = _read_table(raw.get("buffer", {}), _BUFFER_KEYS, "buffer", problems)
    database = _read_table(raw.get("database", {}), _DATABASE_KEYS, "database", problems)
    archive = _read_table(raw.get("archive", {}), _ARCHIVE_KEYS, "archive", problems)
    purge = _read_table(raw.get("purge", {}), _PURGE_KEYS, "purge", problems)
    metrics = _read_table(raw.get("metrics", {}), _METRICS_KEYS, "metrics", problems)

    camera_tables = raw.get("camera", [])
    if not isinstance(camera_tables, list):
        problems.append("cameras are written as [[camera]] blocks (an array of tables)")
        camera_tables = []
    if not camera_tables:
        problems.append("no [[camera]] block: embuffer needs at least one camera source")
    cameras: list[CameraConfig] = []
    for index, table in enumerate(camera_tables, start=1):
        where = f"camera #{index}"
        values = _read_table(table, _CAMERA_KEYS, where, problems)
        if values["host"]:
            where = f"camera '{values['host']}'"
        for key in ("check_days", "settle_seconds", "poll_seconds"):
            if isinstance(values[key], int | float) and values[key] <= 0:
                problems.append(f"[{where}] '{key}' must be greater than 0")
        if isinstance(values["grace_minutes"], int | float) and values["grace_minutes"] < 0:
            problems.append(f"[{where}] 'grace_minutes' must not be negative")
        if values["host"] and values["path"]:
            cameras.append(
                CameraConfig(
                    host=values["host"],
                    path=Path(values["path"]),
                    check_days=int(values["check_days"]),
                    grace_minutes=float(values["grace_minutes"]),
                    settle_seconds=float(values["settle_seconds"]),
                    unstructured_settle_seconds=float(values["unstructured_settle_seconds"]),
                    frame_count_settle_seconds=float(values["frame_count_settle_seconds"]),
                    destination_head=values["destination_head"],
                    poll_seconds=float(values["poll_seconds"]),
                )
            )
    hosts = [camera.host for camera in cameras]
    for host in sorted({h for h in hosts if hosts.count(h) > 1}):
        problems.append(f"camera host '{host}' is listed more than once")
    folders = [str(camera.path) for camera in cameras]
    for folder in sorted({f for f in folders if folders.count(f) > 1}):
        problems.append(f"camera folder '{folder}' is used by more than one [[camera]] block")

    low, high = purge["low_watermark_percent"], purge["high_watermark_percent"]
    numbers = isinstance(low, int | float) and isinstance(high, int | float)
    if numbers and not 0 < low < high <= 100:
        problems.append(
            "[purge] watermarks must satisfy 0 < low_watermark_percent < "
            f"high_watermark_percent <= 100 (got low={low}, high={high})"
        )
    if isinstance(purge["retention_days"], int | float) and purge["retention_days"] < 0:
        problems.append("[purge] 'retention_days' must not be negative")

    if check_paths:
        _check_folder(buffer["root"], "[buffer] root", problems, writable=True)
        _check_folder(buffer["quarantine"], "[buffer] quarantine", problems, writable=True)
        if buffer["journal"]:
            _check_folder(
                str(Path(buffer["journal"]).parent),
                "[buffer] journal folder",
                problems,
                writable=True,
            )
        _check_credentials(database["credentials"], problems)
    for key in ("root", "quarantine", "journal"):
        value = buffer[key]
        if value and any(str(c.path) == value for c in cameras):
            problems.append(f"[buffer] {key} must not be a camera folder")
    for key in ("root", "quarantine", "journal", "primary"):
        value = buffer.get(key) if key != "primary" else archive["primary"]
        if isinstance(value, str) and value and not value.startswith("/"):
            problems.append(f"'{key}' must be an absolute path, got {value!r}")

    if problems:
        raise ConfigError(path, problems)
    return Config(
        path=path,
        buffer_root=Path(buffer["root"]),
        buffer_hostname=buffer["hostname"] or socket.gethostname(),
        quarantine=Path(buffer["quarantine"]),
        journal=Path(buffer["journal"]),
        db_credentials=Path(database["credentials"]),
        cameras=tuple(cameras),
        archive=ArchiveConfig(
            primary=Path(archive["primary"]) if archive["primary"] else None,
            compress_mrc=bool(archive["compress_mrc"]),
            poll_seconds=float(archive["poll_seconds"]),
        ),
        purge=PurgeConfig(
            retention_days=float(purge["retention_days"]),
            high_watermark_percent=float(high),
            low_watermark_percent=float(low),
        ),
        metrics=MetricsConfig(listen=metrics["listen"], textfile=metrics["textfile"]),
    )
