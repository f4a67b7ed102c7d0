"""Every key of embuffer.toml: its type, whether it is required, and its default.

This table is the one place a default is written: `load_config` fills a missing key from it
and the dataclasses in `model.py` take their field defaults from it, so the file and the
Python interface cannot disagree. It mirrors the documented interface (the role's
embuffer.toml template and README).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

DEFAULT_CONFIG_PATH = Path("/etc/embuffer/embuffer.toml")


class Key(NamedTuple):
    types: tuple[type, ...]
    required: bool
    default: Any


# key -> Key, one table per section of the file
Spec = dict[str, Key]
BUFFER_KEYS: Spec = {
    "root": Key((str,), True, None),
    "hostname": Key((str,), False, None),
    "quarantine": Key((str,), True, None),
    "journal": Key((str,), False, "/var/lib/embuffer/journal.sqlite"),
    # Percent of a filesystem kept free for movies that have a place: quarantine and every
    # other write that is not a placed movie stops before its filesystem falls below it
    # (safecopy/space.py); the files it would have written stay on the camera share.
    "reserve_percent": Key((int, float), False, 10),
}
DATABASE_KEYS: Spec = {"credentials": Key((str,), True, None)}
CAMERA_KEYS: Spec = {
    "host": Key((str,), True, None),
    "path": Key((str,), True, None),
    "check_days": Key((int,), False, 10),
    "grace_minutes": Key((int, float), False, 20),
    "settle_seconds": Key((int, float), False, 1),
    # Files whose format has no structure check (timing only) wait this much longer.
    "unstructured_settle_seconds": Key((int, float), False, 30),
    # A movie with fewer frames than its Leginon row counts waits this long unchanged before
    # it is taken as it is (a wrong count must not stop the camera).
    "frame_count_settle_seconds": Key((int, float), False, 30),
    "destination_head": Key((str,), False, ""),
    "poll_seconds": Key((int, float), False, 1),
}
ARCHIVE_KEYS: Spec = {
    "primary": Key((str,), False, None),
    "compress_mrc": Key((bool,), False, False),
    "poll_seconds": Key((int, float), False, 2),
}
PURGE_KEYS: Spec = {
    "retention_days": Key((int, float), False, 14),
    "high_watermark_percent": Key((int, float), False, 85),
    "low_watermark_percent": Key((int, float), False, 75),
}
METRICS_KEYS: Spec = {
    # `embuffer metrics serve`; loopback unless --allow-public
    "listen": Key((str,), False, "127.0.0.1:9814"),
    # `embuffer metrics textfile` default target (node_exporter *.prom)
    "textfile": Key((str,), False, ""),
}
SECTIONS = {"buffer", "database", "camera", "archive", "purge", "metrics"}
