"""The space budget's metrics (safecopy/space.py): files that wait on the camera shares for
room, each filesystem's free bytes and reserve, and the age of quarantine's oldest file.
Every camera gets a sample for both kinds of wait, 0 included, so an alert never has to
read "absent" as "zero"."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from embuffer.config import Config
from embuffer.journal import room_waits
from embuffer.report.space import filesystems

WAIT_KINDS = ("quarantine", "buffer")


def room_gauges(
    db: sqlite3.Connection, config: Config, cameras: list[str], now: float
) -> Iterator[Metric]:
    waiting = room_waits.waiting_for_room(db)
    files = GaugeMetricFamily(
        "embuffer_files_waiting_for_room",
        "Camera files left on the camera share for lack of room: kind quarantine (stopped at "
        "the reserve kept for placed movies) or buffer (a placed movie that does not fit)",
        labels=["camera", "kind"],
    )
    for camera in sorted({*cameras, *(c for c, _ in waiting)}):
        for kind in WAIT_KINDS:
            files.add_metric([camera, kind], waiting.get((camera, kind), 0))
    yield files
    oldest = room_waits.oldest_quarantined_at(db)
    yield GaugeMetricFamily(
        "embuffer_quarantine_oldest_age_seconds",
        "Time since the oldest file in quarantine went there (0: quarantine is empty)",
        value=0.0 if oldest is None else max(0.0, now - oldest),
    )
    free = GaugeMetricFamily(
        "embuffer_filesystem_free_bytes",
        "Free bytes of the filesystem holding the buffer or quarantine (unprivileged view)",
        labels=["holds"],
    )
    reserve = GaugeMetricFamily(
        "embuffer_filesystem_reserve_bytes",
        "Bytes of that filesystem kept for placed movies ([buffer] reserve_percent)",
        labels=["holds"],
    )
    for fs in filesystems(config):
        holds = "+".join(fs["holds"])
        free.add_metric([holds], fs["free_bytes"])
        reserve.add_metric([holds], fs["reserve_bytes"])
    yield free
    yield reserve
