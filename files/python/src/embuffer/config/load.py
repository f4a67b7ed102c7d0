"""Read embuffer.toml into a `Config`, collecting every problem before giving up."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Any

from embuffer.config.checks import check_credentials, check_folder, read_table
from embuffer.config.keys import (
    ARCHIVE_KEYS,
    BUFFER_KEYS,
    CAMERA_KEYS,
    DATABASE_KEYS,
    DEFAULT_CONFIG_PATH,
    METRICS_KEYS,
    PURGE_KEYS,
    SECTIONS,
)
from embuffer.config.model import (
    ArchiveConfig,
    CameraConfig,
    Config,
    ConfigError,
    MetricsConfig,
    PurgeConfig,
)


def load_config(path: Path = DEFAULT_CONFIG_PATH, *, check_paths: bool = True) -> Config:
    """Parse and validate; raise ConfigError listing every problem."""
    raw = _parse(path)
    problems: list[str] = []
    for key in raw:
        if key not in SECTIONS:
            problems.append(f"unknown section '{key}' (known: {', '.join(sorted(SECTIONS))})")
    for section in ("buffer", "database"):
        if section not in raw:
            problems.append(f"missing section [{section}]")
    buffer = read_table(raw.get("buffer", {}), BUFFER_KEYS, "buffer", problems)
    database = read_table(raw.get("database", {}), DATABASE_KEYS, "database", problems)
    archive = read_table(raw.get("archive", {}), ARCHIVE_KEYS, "archive", problems)
    purge = read_table(raw.get("purge", {}), PURGE_KEYS, "purge", problems)
    metrics = read_table(raw.get("metrics", {}), METRICS_KEYS, "metrics", problems)
    cameras = _read_cameras(raw.get("camera", []), problems)
    _check_purge(purge, problems)
    reserve = buffer["reserve_percent"]
    if isinstance(reserve, int | float) and not 0 <= reserve < 100:
        problems.append(f"[buffer] 'reserve_percent' must be from 0 to below 100, got {reserve}")
    if check_paths:
        check_folder(buffer["root"], "[buffer] root", problems, writable=True)
        check_folder(buffer["quarantine"], "[buffer] quarantine", problems, writable=True)
        if buffer["journal"]:
            journal_folder = str(Path(buffer["journal"]).parent)
            check_folder(journal_folder, "[buffer] journal folder", problems, writable=True)
        check_credentials(database["credentials"], problems)
    _check_buffer_paths(buffer, archive, cameras, problems)
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
            high_watermark_percent=float(purge["high_watermark_percent"]),
            low_watermark_percent=float(purge["low_watermark_percent"]),
        ),
        metrics=MetricsConfig(listen=metrics["listen"], textfile=metrics["textfile"]),
        reserve_percent=float(buffer["reserve_percent"]),
    )


def _parse(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, [f"config file {path} does not exist"]) from None
    except PermissionError:
        raise ConfigError(path, [f"config file {path} is not readable by this user"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, [f"config file {path} is not valid TOML: {error}"]) from None


def _read_cameras(camera_tables: Any, problems: list[str]) -> list[CameraConfig]:
    if not isinstance(camera_tables, list):
        problems.append("cameras are written as [[camera]] blocks (an array of tables)")
        camera_tables = []
    if not camera_tables:
        problems.append("no [[camera]] block: embuffer needs at least one camera source")
    cameras: list[CameraConfig] = []
    for index, table in enumerate(camera_tables, start=1):
        camera = _read_camera(index, table, problems)
        if camera is not None:
            cameras.append(camera)
    hosts = [camera.host for camera in cameras]
    for host in sorted({h for h in hosts if hosts.count(h) > 1}):
        problems.append(f"camera host '{host}' is listed more than once")
    folders = [str(camera.path) for camera in cameras]
    for folder in sorted({f for f in folders if folders.count(f) > 1}):
        problems.append(f"camera folder '{folder}' is used by more than one [[camera]] block")
    return cameras


def _read_camera(index: int, table: Any, problems: list[str]) -> CameraConfig | None:
    """One [[camera]] block; None when it lacks a host or a path (already a problem)."""
    where = f"camera #{index}"
    values = read_table(table, CAMERA_KEYS, where, problems)
    if values["host"]:
        where = f"camera '{values['host']}'"
    for key in ("check_days", "settle_seconds", "poll_seconds"):
        if isinstance(values[key], int | float) and values[key] <= 0:
            problems.append(f"[{where}] '{key}' must be greater than 0")
    if isinstance(values["grace_minutes"], int | float) and values["grace_minutes"] < 0:
        problems.append(f"[{where}] 'grace_minutes' must not be negative")
    if not (values["host"] and values["path"]):
        return None
    return CameraConfig(
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


def _check_purge(purge: dict[str, Any], problems: list[str]) -> None:
    low, high = purge["low_watermark_percent"], purge["high_watermark_percent"]
    numbers = isinstance(low, int | float) and isinstance(high, int | float)
    if numbers and not 0 < low < high <= 100:
        problems.append(
            "[purge] watermarks must satisfy 0 < low_watermark_percent < "
            f"high_watermark_percent <= 100 (got low={low}, high={high})"
        )
    if isinstance(purge["retention_days"], int | float) and purge["retention_days"] < 0:
        problems.append("[purge] 'retention_days' must not be negative")


def _check_buffer_paths(
    buffer: dict[str, Any],
    archive: dict[str, Any],
    cameras: list[CameraConfig],
    problems: list[str],
) -> None:
    for key in ("root", "quarantine", "journal"):
        value = buffer[key]
        if value and any(str(c.path) == value for c in cameras):
            problems.append(f"[buffer] {key} must not be a camera folder")
    for key in ("root", "quarantine", "journal", "primary"):
        value = buffer.get(key) if key != "primary" else archive["primary"]
        if isinstance(value, str) and value and not value.startswith("/"):
            problems.append(f"'{key}' must be an absolute path, got {value!r}")
