"""Prometheus metrics computed from the journal, not from counters inside the services.

The journal already records every state change, so the exporter is a separate reader: it needs
no hook in ingest/archive/purge, survives their restarts (and its own) with the same numbers,
and counters never go backwards because events are never deleted. Counters and histograms are
folded in incrementally: the collector remembers the last event id it has seen and each scrape
aggregates only newer events in SQL (the first scrape of a large journal pays once). Gauges
come from indexed queries on `movies` (state index, archive index) and from the filesystem.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from embuffer import __version__
from embuffer import journal as j
from embuffer import journal_queries as q
from embuffer.config import Config
from embuffer.metrics_host import FolderProbe, host_families

# Camera close -> copy start: seconds normally, minutes when ingest lags or waits for Leginon.
DETECTION_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Camera close -> verified on primary: minutes normally, days across a primary outage.
TIME_TO_PRIMARY_BUCKETS = (
    60.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    43200.0,
    86400.0,
    259200.0,
    604800.0,
)
# event action -> metric stem for the per-camera movie and byte counters
FLOW_ACTIONS = {
    "ingested": "ingested",
    "archived": "archived",
    "purged": "purged",
    "quarantined": "quarantined",
    "adopted": "adopted",
}
# event action -> (counter name, help)
FAILURE_ACTIONS = {
    "verify_failed": ("embuffer_verification_failures", "Buffer copies that re-read differently"),
    "db_error": ("embuffer_db_errors", "Leginon database unavailable during ingest"),
    "error": ("embuffer_ingest_errors", "Ingest attempts that failed (file stays on camera)"),
    "archive_error": ("embuffer_archive_errors", "Archive attempts that failed"),
    "unexpected_error": (
        "embuffer_unexpected_errors",
        "Failures nobody foresaw (a bug); the file was kept and is retried",
    ),
    "schema_missing": (
        "embuffer_leginondb_schema_gaps",
        "Tables or columns this leginondb lacks (each counted once per service start)",
    ),
    "placement_refused": (
        "embuffer_placements_refused",
        "Sessions whose frames have no buffer folder (they stay on the camera share)",
    ),
    "source_busy": (
        "embuffer_source_busy",
        "Camera copies the camera software still held at removal (retried)",
    ),
    "archive_skipped": (
        "embuffer_archive_skipped",
        "Buffer movies the archive could not read (missing, changed); the others go on",
    ),
    "unsafe_name": (
        "embuffer_unsafe_names",
        "Leginon rows whose file name would leave its folder (quarantined, not followed)",
    ),
    "frame_count_short": (
        "embuffer_frame_count_short",
        "Movies taken with fewer frames than Leginon counted, after the wait",
    ),
}


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)  # the last slot is +Inf

    def add(self, slot: int, observations: int, total: float) -> None:
        """`observations` fell in bucket `slot` (len(bounds) for above the last bound)."""
        for index in range(slot, len(self.counts)):
            self.counts[index] += observations  # cumulative: every bucket from here up
        self.total += total

    def buckets(self) -> list[tuple[str, float]]:
        edges = [_le(bound) for bound in self.bounds] + ["+Inf"]
        return list(zip(edges, (float(count) for count in self.counts), strict=True))


def _le(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else str(bound)


@dataclass
class _Totals:
    """Everything folded in from events up to `last_event_id`."""

    last_event_id: int = 0
    movies: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    nbytes: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    last_at: dict[tuple[str, str], float] = field(default_factory=dict)
    detection: dict[str, _Histogram] = field(default_factory=dict)
    to_primary: dict[str, _Histogram] = field(default_factory=dict)


class JournalCollector(Collector):
    """A prometheus_client custom collector over one embuffer journal."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._totals = _Totals()
        self._folders = FolderProbe()

    def describe(self) -> Iterator[Metric]:
        return iter(())  # metric names depend on the journal; registries must not pre-collect

    # ---- journal access ------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # read-only: the exporter can never disturb the services' transactions
        uri = f"file:{self.config.journal}?mode=ro"
        connection = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None)
        connection.execute("PRAGMA busy_timeout=10000")
        return connection

    def _fold_events(self, db: sqlite3.Connection) -> None:
        """Fold events newer than the last scrape into the totals, all or nothing: a query
        that fails halfway must not leave counts that the next scrape would add again."""
        newest = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])
        if newest == self._totals.last_event_id:
            return
        # a journal with fewer events is a different (restored or recreated) one: start over
        totals = copy.deepcopy(self._totals) if newest > self._totals.last_event_id else _Totals()
        low, high = totals.last_event_id, newest
        # the movie is looked up only for events written without a camera (adoptions)
        camera = "COALESCE(e.camera, (SELECT m.camera FROM movies m WHERE m.id = e.movie_id), '')"
        actions = (*FLOW_ACTIONS, *FAILURE_ACTIONS)
        marks = ", ".join("?" for _ in actions)
        for action, name, count, nbytes, last_at in db.execute(
            f"SELECT e.action, {camera}, COUNT(*), COALESCE(SUM(e.bytes), 0), MAX(e.at) "
            f"FROM events e WHERE e.id > ? AND e.id <= ? AND e.action IN ({marks}) GROUP BY 1, 2",
            (low, high, *actions),
        ):
            key = (action, name)
            totals.movies[key] += int(count)
            totals.nbytes[key] += int(nbytes)
            totals.last_at[key] = max(float(last_at), totals.last_at.get(key, 0.0))
        self._fold_histogram(
            db,
            totals.detection,
            DETECTION_BUCKETS,
            ("ingested", "quarantined"),
            "m.copy_started_at - m.closed_at",
            (low, high),
        )
        self._fold_histogram(
            db,
            totals.to_primary,
            TIME_TO_PRIMARY_BUCKETS,
            ("archived",),
            "m.primary_verified_at - COALESCE(m.closed_at, m.verified_at)",
            (low, high),
        )
        totals.last_event_id = high
        self._totals = totals

    @staticmethod
    def _fold_histogram(
        db: sqlite3.Connection,
        target: dict[str, _Histogram],
        bounds: tuple[float, ...],
        actions: tuple[str, ...],
        duration: str,
        window: tuple[int, int],
    ) -> None:
        # One CASE per row picks the bucket (it stops at the first bound that holds); the
        # buckets are made cumulative here. Camera clocks (mtime over CIFS) can run ahead of
        # the buffer's, hence the clamp at zero.
        slot = " ".join(f"WHEN v <= ? THEN {index}" for index in range(len(bounds)))
        marks = ", ".join("?" for _ in actions)
        sql = (
            f"SELECT camera, CASE {slot} ELSE {len(bounds)} END, COUNT(*), TOTAL(v) FROM ("
            f"  SELECT COALESCE(e.camera, m.camera, '') AS camera, MAX(0.0, {duration}) AS v"
            "   FROM events e JOIN movies m ON m.id = e.movie_id"
            f"  WHERE e.id > ? AND e.id <= ? AND e.action IN ({marks})"
            f"  AND ({duration}) IS NOT NULL"
            ") GROUP BY 1, 2"
        )
        for camera, index, count, total in db.execute(sql, (*bounds, *window, *actions)):
            histogram = target.setdefault(str(camera), _Histogram(bounds))
            histogram.add(int(index), int(count), float(total))

    # ---- the scrape ----------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        started = time.time()
        with self._lock:
            families: list[Metric] = []
            up = 1.0
            try:
                if not self.config.journal.exists():
                    raise sqlite3.OperationalError(f"journal {self.config.journal} does not exist")
                db = self._connect()
                try:
                    db.execute("BEGIN")  # one snapshot for every query of this scrape
                    self._fold_events(db)
                    families.extend(self._journal_gauges(db, started))
                    db.execute("COMMIT")
                finally:
                    db.close()
            except sqlite3.Error:
                up = 0.0  # the counters below keep their last values: no false reset
            families.extend(self._event_families())
            families.extend(host_families(self.config, self._folders))
        yield from families
        yield _gauge("embuffer_up", "1 when the journal could be read for this scrape", up)
        info = GaugeMetricFamily(
            "embuffer_build_info", "The embuffer version serving these metrics", labels=["version"]
        )
        info.add_metric([__version__], 1.0)
        yield info
        yield _gauge(
            "embuffer_collect_timestamp_seconds", "When these metrics were computed", started
        )
        yield _gauge(
            "embuffer_collect_duration_seconds", "Time this scrape took", time.time() - started
        )

    def _cameras(self) -> list[str]:
        names = {c.host for c in self.config.cameras}
        names.update(name for _, name in self._totals.movies)
        return sorted(names)

    def _event_families(self) -> Iterator[Metric]:
        totals = self._totals
        cameras = self._cameras()
        for action, stem in FLOW_ACTIONS.items():
            movies = CounterMetricFamily(
                f"embuffer_{stem}_movies", f"Movies {stem} (journal events)", labels=["camera"]
            )
            nbytes = CounterMetricFamily(
                f"embuffer_{stem}_bytes", f"Bytes {stem} (journal events)", labels=["camera"]
            )
            for camera in cameras:
                movies.add_metric([camera], totals.movies.get((action, camera), 0))
                nbytes.add_metric([camera], totals.nbytes.get((action, camera), 0))
            yield movies
            yield nbytes
        for action, (name, text) in FAILURE_ACTIONS.items():
            counter = CounterMetricFamily(name, text, labels=["camera"])
            for camera in cameras:
                counter.add_metric([camera], totals.movies.get((action, camera), 0))
            yield counter
        for action, name in (("ingested", "ingest"), ("archived", "archive")):
            last = GaugeMetricFamily(
                f"embuffer_last_{name}_timestamp_seconds",
                f"Time of the last successful {name} (absent: never)",
                labels=["camera"],
            )
            for camera in cameras:
                if (action, camera) in totals.last_at:
                    last.add_metric([camera], totals.last_at[(action, camera)])
            yield last
        for name, text, histograms, bounds in (
            (
                "embuffer_detection_latency_seconds",
                "Camera's last write to copy start",
                totals.detection,
                DETECTION_BUCKETS,
            ),
            (
                "embuffer_time_to_primary_seconds",
                "Camera's last write to verified on primary",
                totals.to_primary,
                TIME_TO_PRIMARY_BUCKETS,
            ),
        ):
            family = HistogramMetricFamily(name, text, labels=["camera"])
            for camera in cameras:
                histogram = histograms.get(camera) or _Histogram(bounds)
                family.add_metric([camera], histogram.buckets(), histogram.total)
            yield family
        yield _gauge(
            "embuffer_journal_last_event_id", "Newest journal event folded in", totals.last_event_id
        )

    @staticmethod
    def _held_gauge(db: sqlite3.Connection, cameras: list[str]) -> Metric:
        held = GaugeMetricFamily(
            "embuffer_held_files",
            "Camera files held on the camera share after repeated unexpected failures",
            labels=["camera"],
        )
        counts: dict[str, int] = {}
        exists = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'held_files'"
        ).fetchone()
        if exists:  # a journal from before holds existed has none
            for camera, count in db.execute(
                "SELECT camera, COUNT(*) FROM held_files WHERE held_since IS NOT NULL GROUP BY 1"
            ):
                counts[str(camera)] = int(count)
        for camera in sorted({*cameras, *counts}):
            held.add_metric([camera], counts.get(camera, 0))
        return held

    def _journal_gauges(self, db: sqlite3.Connection, now: float) -> Iterator[Metric]:
        cameras = self._cameras()
        flight: dict[tuple[str, str], int] = defaultdict(int)
        marks = ", ".join("?" for _ in j.ACTIVE_INGEST_STATES)
        for camera, state, count in db.execute(
            f"SELECT camera, state, COUNT(*) FROM movies WHERE state IN ({marks}) GROUP BY 1, 2",
            j.ACTIVE_INGEST_STATES,
        ):
            flight[(camera, state)] = int(count)
        in_flight = GaugeMetricFamily(
            "embuffer_in_flight_movies",
            "Movies between first sight and camera copy removal",
            labels=["camera", "state"],
        )
        for camera in sorted({*cameras, *(c for c, _ in flight)}):
            for state in j.ACTIVE_INGEST_STATES:
                in_flight.add_metric([camera, state], flight[(camera, state)])
        yield in_flight

        yield self._held_gauge(db, cameras)

        backlog_files = GaugeMetricFamily(
            "embuffer_archive_backlog_files",
            "Buffer movies not yet verified on primary",
            labels=["camera"],
        )
        backlog_bytes = GaugeMetricFamily(
            "embuffer_archive_backlog_bytes",
            "Bytes not yet verified on primary",
            labels=["camera"],
        )
        backlog = q.archive_backlog_by_camera(db)
        firsts = [
            b.oldest_verified_at for b in backlog.values() if b.oldest_verified_at is not None
        ]
        oldest = min(firsts, default=None)
        for camera in sorted({*cameras, *backlog}):
            waiting = backlog.get(camera, q.Backlog())
            backlog_files.add_metric([camera], waiting.files)
            backlog_bytes.add_metric([camera], waiting.bytes)
        yield backlog_files
        yield backlog_bytes
        yield _gauge(
            "embuffer_archive_backlog_oldest_age_seconds",
            "Age of the oldest movie waiting for primary (0: none waiting)",
            0.0 if oldest is None else max(0.0, now - oldest),
        )

        quarantine_files = GaugeMetricFamily(
            "embuffer_quarantine_movies", "Movies in quarantine now", labels=["camera"]
        )
        quarantine_bytes = GaugeMetricFamily(
            "embuffer_quarantine_bytes", "Bytes in quarantine now", labels=["camera"]
        )
        held = {
            camera: (int(count), int(nbytes))
            for camera, count, nbytes in db.execute(
                "SELECT camera, COUNT(*), COALESCE(SUM(size), 0) FROM movies WHERE state = ? "
                "GROUP BY camera",
                (j.QUARANTINED,),
            )
        }
        for camera in sorted({*cameras, *held}):
            count, nbytes = held.get(camera, (0, 0))
            quarantine_files.add_metric([camera], count)
            quarantine_bytes.add_metric([camera], nbytes)
        yield quarantine_files
        yield quarantine_bytes

        settings = {
            key: value
            for key, value in db.execute(
                "SELECT key, value FROM settings WHERE key IN (?, ?)",
                (q.ARCHIVE_PAUSE_KEY, q.OUTAGE_KEY),
            )
        }
        pause = _json(settings.get(q.ARCHIVE_PAUSE_KEY))
        yield _gauge(
            "embuffer_archive_paused",
            "1 while `embuffer archive pause` is in force",
            1.0 if pause else 0.0,
        )
        if pause:
            yield _gauge(
                "embuffer_archive_paused_since_timestamp_seconds",
                "When the archive was paused",
                float(pause.get("since") or 0.0),
            )
        outage = _json(settings.get(q.OUTAGE_KEY))
        yield _gauge(
            "embuffer_outage_active",
            "1 while a primary-storage outage is declared",
            1.0 if outage and not outage.get("end") else 0.0,
        )

        per_hour = q.intake_bytes_per_hour(db, now)
        yield _gauge(
            "embuffer_buffer_intake_bytes_per_hour",
            f"Mean intake over the last {q.FORECAST_WINDOW_SECONDS / 3600:.0f} h",
            per_hour,
        )
        try:
            free = float(shutil.disk_usage(self.config.buffer_root).free)
        except OSError:
            return
        yield _gauge(
            "embuffer_buffer_hours_until_full",
            "Free space over the recent intake rate (+Inf: no intake)",
            free / per_hour if per_hour > 0 else math.inf,
        )


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=float(value))


def _json(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    loaded = json.loads(value)
    return loaded if isinstance(loaded, dict) else None
