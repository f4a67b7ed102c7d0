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
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from embuffer import __version__
from embuffer import journal as j
from embuffer.config import Config
from embuffer.journal import events, waiting_files
from embuffer.report.metrics.gauges import gauge, journal_gauges, load_counters
from embuffer.report.metrics.host import FolderProbe, host_families
from embuffer.report.metrics.space import room_gauges

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
        # the ingest's load counters as last read (kept through a failed scrape, like _totals)
        self._load: dict[tuple[str, str], float] = {}
        self._folders = FolderProbe()

    def describe(self) -> Iterator[Metric]:
        return iter(())  # metric names depend on the journal; registries must not pre-collect

    # ---- journal access ------------------------------------------------------------------
    def _fold_events(self, db: sqlite3.Connection) -> None:
        """Fold events newer than the last scrape into the totals, all or nothing: a query
        that fails halfway must not leave counts that the next scrape would add again."""
        newest = events.newest_event_id(db)
        if newest == self._totals.last_event_id:
            return
        # a journal with fewer events is a different (restored or recreated) one: start over
        totals = copy.deepcopy(self._totals) if newest > self._totals.last_event_id else _Totals()
        window = (totals.last_event_id, newest)
        for action, camera, count, nbytes, last_at in events.action_totals(
            db, (*FLOW_ACTIONS, *FAILURE_ACTIONS), window
        ):
            key = (action, camera)
            totals.movies[key] += count
            totals.nbytes[key] += nbytes
            totals.last_at[key] = max(last_at, totals.last_at.get(key, 0.0))
        self._fold_histogram(
            db,
            totals.detection,
            DETECTION_BUCKETS,
            ("ingested", "quarantined"),
            events.DETECTION_DURATION,
            window,
        )
        self._fold_histogram(
            db,
            totals.to_primary,
            TIME_TO_PRIMARY_BUCKETS,
            ("archived",),
            events.TIME_TO_PRIMARY_DURATION,
            window,
        )
        totals.last_event_id = newest
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
        for camera, index, count, total in events.duration_buckets(
            db, duration, bounds, actions, window
        ):
            histogram = target.setdefault(camera, _Histogram(bounds))
            histogram.add(index, count, total)

    # ---- the scrape ----------------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        started = time.time()
        with self._lock:
            families: list[Metric] = []
            up = 1.0
            try:
                if not self.config.journal.exists():
                    raise sqlite3.OperationalError(f"journal {self.config.journal} does not exist")
                db = j.open_read_only(self.config.journal)
                try:
                    db.execute("BEGIN")  # one snapshot for every query of this scrape
                    self._fold_events(db)
                    families.extend(
                        journal_gauges(db, self._cameras(), self.config.buffer_root, started)
                    )
                    families.extend(room_gauges(db, self.config, self._cameras(), started))
                    load = waiting_files.load_totals(db)
                    db.execute("COMMIT")
                    self._load = load
                finally:
                    db.close()
            except sqlite3.Error:
                up = 0.0  # the counters below keep their last values: no false reset
            families.extend(self._event_families())
            families.extend(load_counters(self._load, self._cameras()))
            families.extend(host_families(self.config, self._folders))
        yield from families
        yield gauge("embuffer_up", "1 when the journal could be read for this scrape", up)
        info = GaugeMetricFamily(
            "embuffer_build_info", "The embuffer version serving these metrics", labels=["version"]
        )
        info.add_metric([__version__], 1.0)
        yield info
        yield gauge(
            "embuffer_collect_timestamp_seconds", "When these metrics were computed", started
        )
        yield gauge(
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
        yield gauge(
            "embuffer_journal_last_event_id", "Newest journal event folded in", totals.last_event_id
        )
