"""The checked configuration as the daemons use it; field defaults come from `keys.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from embuffer.config.keys import (
    ARCHIVE_KEYS,
    BUFFER_KEYS,
    CAMERA_KEYS,
    METRICS_KEYS,
    PURGE_KEYS,
)


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
    check_days: int = int(CAMERA_KEYS["check_days"].default)
    grace_minutes: float = float(CAMERA_KEYS["grace_minutes"].default)
    settle_seconds: float = float(CAMERA_KEYS["settle_seconds"].default)
    unstructured_settle_seconds: float = float(CAMERA_KEYS["unstructured_settle_seconds"].default)
    frame_count_settle_seconds: float = float(CAMERA_KEYS["frame_count_settle_seconds"].default)
    destination_head: str = str(CAMERA_KEYS["destination_head"].default)
    poll_seconds: float = float(CAMERA_KEYS["poll_seconds"].default)


@dataclass(frozen=True)
class ArchiveConfig:
    primary: Path | None = None
    compress_mrc: bool = bool(ARCHIVE_KEYS["compress_mrc"].default)
    poll_seconds: float = float(ARCHIVE_KEYS["poll_seconds"].default)


@dataclass(frozen=True)
class PurgeConfig:
    retention_days: float = float(PURGE_KEYS["retention_days"].default)
    high_watermark_percent: float = float(PURGE_KEYS["high_watermark_percent"].default)
    low_watermark_percent: float = float(PURGE_KEYS["low_watermark_percent"].default)


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = str(METRICS_KEYS["listen"].default)
    textfile: str = str(METRICS_KEYS["textfile"].default)


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
    # kept free on each filesystem for placed movies (safecopy/space.py)
    reserve_percent: float = float(BUFFER_KEYS["reserve_percent"].default)

    @property
    def state_dir(self) -> Path:
        return self.journal.parent
