"""Metrics that come from the host rather than the journal: buffer filesystem usage, settled
files waiting on the camera shares, and which services hold their journal lock."""

from __future__ import annotations

import math
import os
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric

from embuffer.config import Config
from embuffer.ingest.scan import is_candidate_name

# A camera file untouched this long is settled for the "ingest stalled" alert (ingest itself
# settles in seconds; a minute leaves room for slow writers without hiding a stall).
SETTLED_AGE_SECONDS = 60.0
# A candidate found settled is not stat'ed again at each scrape (every stat is a request to
# the camera PC, and thousands may wait there): its age is counted from the mtime then seen,
# and it is looked at again after this long, or when it leaves the listing and comes back.
SETTLED_RECHECK_SECONDS = 900.0
FOLDER_PROBE_TIMEOUT_SECONDS = 2.0
SERVICES = ("ingest", "archive", "purge")


def host_families(config: Config, folders: FolderProbe) -> Iterator[Metric]:
    """Gauges from the filesystem and /proc rather than the journal."""
    try:
        usage = shutil.disk_usage(config.buffer_root)
    except OSError:
        usage = None
    if usage is not None:
        yield _gauge("embuffer_buffer_size_bytes", "Buffer filesystem size", usage.total)
        yield _gauge("embuffer_buffer_used_bytes", "Buffer filesystem used", usage.used)
        yield _gauge("embuffer_buffer_free_bytes", "Buffer filesystem free", usage.free)
        yield _gauge(
            "embuffer_buffer_used_ratio",
            "Buffer filesystem used / size (0..1)",
            usage.used / usage.total if usage.total else 0.0,
        )
    yield _gauge(
        "embuffer_buffer_high_watermark_ratio",
        "Purge high watermark (0..1)",
        config.purge.high_watermark_percent / 100.0,
    )
    folder_up = GaugeMetricFamily(
        "embuffer_camera_folder_up",
        "1 when the camera folder could be listed",
        labels=["camera"],
    )
    settled = GaugeMetricFamily(
        "embuffer_camera_settled_files",
        f"Movie candidates on the camera folder untouched for {SETTLED_AGE_SECONDS:.0f} s",
        labels=["camera"],
    )
    settled_age = GaugeMetricFamily(
        "embuffer_camera_oldest_settled_age_seconds",
        "Age of the oldest settled candidate on the camera folder (0: none)",
        labels=["camera"],
    )
    for camera in config.cameras:
        result = folders.settled(camera.host, camera.path)
        folder_up.add_metric([camera.host], 0.0 if result is None else 1.0)
        if result is not None:
            settled.add_metric([camera.host], result[0])
            settled_age.add_metric([camera.host], result[1])
    yield folder_up
    yield settled
    yield settled_age
    running = service_locks(config.journal)
    if running is not None:
        family = GaugeMetricFamily(
            "embuffer_service_running",
            "1 while the service holds its journal lock (purge runs from a timer)",
            labels=["service"],
        )
        for service in SERVICES:
            family.add_metric([service], 1.0 if running[service] else 0.0)
        yield family


class FolderProbe:
    def __init__(self) -> None:
        self._pending: dict[str, Future[tuple[int, float]]] = {}

    def settled(self, host: str, folder: Path) -> tuple[int, float] | None:
        """(settled candidates, oldest age), or None when the folder cannot be listed in time.
        A hung CIFS mount must not hang the scrape: the listing runs in a worker, and a camera
        whose previous listing is still stuck is reported down without starting another."""
        pending = self._pending.get(host)
        if pending is not None and not pending.done():
            return None
        future: Future[tuple[int, float]] = Future()
        now = time.time()

        def probe() -> None:
            try:
                future.set_result(settled_candidates(folder, now))
            except BaseException as error:  # handed to the scrape, which reports the folder down
                future.set_exception(error)

        # a daemon thread: a listing stuck in the kernel must not keep the exporter from exiting
        threading.Thread(target=probe, name=f"metrics-folder-{host}", daemon=True).start()
        self._pending[host] = future
        try:
            return future.result(timeout=FOLDER_PROBE_TIMEOUT_SECONDS)
        except (FutureTimeout, OSError):
            return None


class SettledNames:
    """Per camera folder: name -> (mtime, when it was stat'ed) of candidates found settled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folders: dict[str, dict[str, tuple[float, float]]] = {}

    def get(self, folder: Path) -> dict[str, tuple[float, float]]:
        with self._lock:
            return dict(self._folders.get(str(folder), {}))

    def put(self, folder: Path, names: dict[str, tuple[float, float]]) -> None:
        with self._lock:
            self._folders[str(folder)] = names


_settled_names = SettledNames()


def settled_candidates(folder: Path, now: float) -> tuple[int, float]:
    """Top-level movie candidates whose mtime is older than SETTLED_AGE_SECONDS (one scandir,
    and a stat only for candidates not known to be settled yet; folders are judged by their
    own mtime, which is what the camera software touches)."""
    known = _settled_names.get(folder)
    settled: dict[str, tuple[float, float]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_symlink():
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if not is_dir and not entry.is_file(follow_symlinks=False):
                continue
            if not is_candidate_name(entry.name, is_dir):
                continue
            mtime, looked = known.get(entry.name, (0.0, -math.inf))
            if now - looked >= SETTLED_RECHECK_SECONDS:
                try:
                    mtime, looked = entry.stat(follow_symlinks=False).st_mtime, now
                except FileNotFoundError:
                    continue  # ingest moved it while we looked
            if now - mtime >= SETTLED_AGE_SECONDS:
                settled[entry.name] = (mtime, looked)
    _settled_names.put(folder, settled)
    ages = [now - mtime for mtime, _ in settled.values()]
    return len(ages), max(ages, default=0.0)


def service_locks(journal_path: Path) -> dict[str, bool] | None:
    """Which services hold their flock on the journal, read from /proc/locks (never by taking
    the lock, which could make a starting service fail). None when /proc/locks is unreadable."""
    try:
        held = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    keys: set[tuple[int, int, int]] = set()
    for line in held.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue  # POSIX/OFD locks and blocked waiters ("->") are not service locks
        try:
            major, minor, inode = fields[5].split(":")
            keys.add((int(major, 16), int(minor, 16), int(inode)))
        except ValueError:
            continue
    running: dict[str, bool] = {}
    for service in SERVICES:
        lock = journal_path.with_name(f"{journal_path.name}.{service}.lock")
        try:
            info = lock.stat()
        except OSError:
            running[service] = False
            continue
        running[service] = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino) in keys
    return running


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=float(value))
