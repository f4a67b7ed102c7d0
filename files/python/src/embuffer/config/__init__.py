"""Load and validate /etc/embuffer/embuffer.toml.

Every problem is collected (not just the first) and phrased for the sysadmin who edits the
file: which key, what is wrong, what was expected. A config with problems never starts a
daemon; `embuffer config check` prints the same list.

keys (each key's type and the one table of defaults), model (the dataclasses), checks
(a table, a folder, the credentials file; runtime warnings), load (`load_config`).
"""

from __future__ import annotations

from embuffer.config.checks import runtime_warnings
from embuffer.config.keys import DEFAULT_CONFIG_PATH
from embuffer.config.load import load_config
from embuffer.config.model import (
    ArchiveConfig,
    CameraConfig,
    Config,
    ConfigError,
    MetricsConfig,
    PurgeConfig,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ArchiveConfig",
    "CameraConfig",
    "Config",
    "ConfigError",
    "MetricsConfig",
    "PurgeConfig",
    "load_config",
    "runtime_warnings",
]
