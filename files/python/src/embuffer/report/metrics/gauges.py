"""The metrics gauges read from the journal at each scrape: what is true of the journal now.

Each family (or pair of families) has one function; `journal_gauges` runs them all on one
read-only snapshot. Every camera of the configuration gets a sample, 0 included, so that an
alert on "absent" never stands in for "zero".
"""

from __future__ import annotations

import math
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from embuffer import journal as j
from embuffer.ingest import load
from embuffer.journal import events, held_files, waiting_files
from embuffer.journal import queries as q


def journal_gauges(
    db: sqlite3.Connection, cameras: list[str], buffer_root: Path, now: float
) -> Iterator[Metric]:
    yield in_flight_gauge(db, cameras)
    yield held_gauge(db, cameras)
    yield waiting_gauge(db, cameras)
    yield from backlog_gauges(db, cameras, now)
    yield from quarantine_gauges(db, cameras)
    yield from switch_gauges(db)
    yield from forecast_gauges(db, buffer_root, now)


def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=float(value))


def in_flight_gauge(db: sqlite3.Connection, cameras: list[str]) -> Metric:
    flight = q.in_flight_counts(db)
    family = GaugeMetricFamily(
        "embuffer_in_flight_movies",
        "Movies between first sight and camera copy removal",
        labels=["camera", "state"],
    )
    for camera in sorted({*cameras, *(c for c, _ in flight)}):
        for state in j.ACTIVE_INGEST_STATES:
            family.add_metric([camera, state], flight.get((camera, state), 0))
    return family


def held_gauge(db: sqlite3.Connection, cameras: list[str]) -> Metric:
    counts = held_files.held_counts(db)
    family = GaugeMetricFamily(
        "embuffer_held_files",
        "Camera files held on the camera share after repeated unexpected failures",
        labels=["camera"],
    )
    for camera in sorted({*cameras, *counts}):
        family.add_metric([camera], counts.get(camera, 0))
    return family


def waiting_gauge(db: sqlite3.Connection, cameras: list[str]) -> Metric:
    counts = waiting_files.waiting_counts(db)
    family = GaugeMetricFamily(
        "embuffer_camera_waiting_files",
        "Settled files ingest leaves waiting on the camera share (no Leginon image yet, no "
        "buffer folder for their session)",
        labels=["camera"],
    )
    for camera in sorted({*cameras, *counts}):
        family.add_metric([camera], counts.get(camera, 0))
    return family


# journal counter (ingest/load.py) -> (metric name without _total, help)
LOAD_METRICS = {
    load.LEGINONDB_QUERIES: (
        "embuffer_leginondb_queries",
        "Statements the camera's ingest sent to leginondb",
    ),
    load.LEGINONDB_QUERY_SECONDS: (
        "embuffer_leginondb_query_seconds",
        "Seconds the camera's ingest waited for leginondb's answers",
    ),
    load.SHARE_LISTINGS: (
        "embuffer_camera_share_listings",
        "Folder listings ingest read from the camera share",
    ),
    load.SHARE_STATS: (
        "embuffer_camera_share_stats",
        "Files and folder members ingest stat'ed on the camera share",
    ),
    load.SHARE_OPENS: (
        "embuffer_camera_share_opens",
        "Camera files ingest opened to check their structure",
    ),
}


def load_counters(totals: dict[tuple[str, str], float], cameras: list[str]) -> Iterator[Metric]:
    """What each camera's ingest cost leginondb and the camera share: the cumulative totals
    the ingest adds to the journal every few seconds (waiting_files.load_totals)."""
    named = sorted({*cameras, *(camera for camera, _ in totals)})
    for counter, (name, text) in LOAD_METRICS.items():
        family = CounterMetricFamily(name, text, labels=["camera"])
        for camera in named:
            family.add_metric([camera], totals.get((camera, counter), 0.0))
        yield family


def backlog_gauges(db: sqlite3.Connection, cameras: list[str], now: float) -> Iterator[Metric]:
    backlog = q.archive_backlog_by_camera(db)
    files = GaugeMetricFamily(
        "embuffer_archive_backlog_files",
        "Buffer movies not yet verified on primary",
        labels=["camera"],
    )
    nbytes = GaugeMetricFamily(
        "embuffer_archive_backlog_bytes",
        "Bytes not yet verified on primary",
        labels=["camera"],
    )
    for camera in sorted({*cameras, *backlog}):
        waiting = backlog.get(camera, q.Backlog())
        files.add_metric([camera], waiting.files)
        nbytes.add_metric([camera], waiting.bytes)
    yield files
    yield nbytes
    firsts = [b.oldest_verified_at for b in backlog.values() if b.oldest_verified_at is not None]
    oldest = min(firsts, default=None)
    yield gauge(
        "embuffer_archive_backlog_oldest_age_seconds",
        "Age of the oldest movie waiting for primary (0: none waiting)",
        0.0 if oldest is None else max(0.0, now - oldest),
    )


def quarantine_gauges(db: sqlite3.Connection, cameras: list[str]) -> Iterator[Metric]:
    held = q.quarantine_totals(db)
    files = GaugeMetricFamily(
        "embuffer_quarantine_movies", "Movies in quarantine now", labels=["camera"]
    )
    nbytes = GaugeMetricFamily(
        "embuffer_quarantine_bytes", "Bytes in quarantine now", labels=["camera"]
    )
    for camera in sorted({*cameras, *held}):
        count, size = held.get(camera, (0, 0))
        files.add_metric([camera], count)
        nbytes.add_metric([camera], size)
    yield files
    yield nbytes


def switch_gauges(db: sqlite3.Connection) -> Iterator[Metric]:
    """The archive pause and the outage declaration."""
    settings = q.settings_read(db, q.ARCHIVE_PAUSE_KEY, q.OUTAGE_KEY)
    pause = _record(settings.get(q.ARCHIVE_PAUSE_KEY))
    yield gauge(
        "embuffer_archive_paused",
        "1 while `embuffer archive pause` is in force",
        1.0 if pause else 0.0,
    )
    if pause:
        yield gauge(
            "embuffer_archive_paused_since_timestamp_seconds",
            "When the archive was paused",
            float(pause.get("since") or 0.0),
        )
    outage = _record(settings.get(q.OUTAGE_KEY))
    yield gauge(
        "embuffer_outage_active",
        "1 while a primary-storage outage is declared",
        1.0 if outage and not outage.get("end") else 0.0,
    )


def forecast_gauges(db: sqlite3.Connection, buffer_root: Path, now: float) -> Iterator[Metric]:
    """When the buffer fills at the recent intake: the same forecast as `embuffer status`.
    The intake itself is not exported as a rate: Prometheus computes it from the
    embuffer_{ingested,adopted}_bytes_total counters with rate()."""
    per_second = events.intake_bytes_per_hour(db, now) / 3600.0
    try:
        free = float(shutil.disk_usage(buffer_root).free)
    except OSError:
        return
    yield gauge(
        "embuffer_buffer_time_to_full_seconds",
        f"Free space over the mean intake of the last "
        f"{events.FORECAST_WINDOW_SECONDS / 3600:.0f} h (+Inf: no intake)",
        free / per_second if per_second > 0 else math.inf,
    )


def _record(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None
