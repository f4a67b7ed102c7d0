"""Prometheus metrics from the journal: the real HTTP endpoint and the real textfile, scraped
while movies flow through ingest, archive and purge; the dashboard and the alert rules may only
name metrics a real scrape exports."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CAMERA_HOST, BufferHost
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from support.movies import mrc_bytes, tiff_bytes
from test_alert_rules import promtool
from test_faults import start_daemon, wait_for

from embuffer.cli import main
from embuffer.config import load_config
from embuffer.journal import Journal, ServiceLock
from embuffer.report.console import recent_errors, screen, show_status
from embuffer.report.metrics import collector as metrics
from embuffer.report.metrics import host as metrics_host
from embuffer.report.metrics.export import check_listen, parse_listen, registry_for
from embuffer.report.status import collect

REPO = Path(__file__).resolve().parents[3]
DASHBOARD = REPO / "files" / "grafana" / "embuffer-dashboard.json"
RULES = REPO / "files" / "prometheus" / "embuffer.rules.yml"


class Scrape:
    """One exposition, as {(sample name, sorted labels): value}."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        assert key in self.samples, f"{name}{labels} not exported; have: {sorted(self.names)}"
        return self.samples[key]

    def bucket(self, name: str, le: str, camera: str = CAMERA_HOST) -> float:
        return self.value(f"{name}_bucket", camera=camera, le=le)

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def counters(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            key: value
            for key, value in self.samples.items()
            if key[0].startswith("embuffer_")
            and key[0].endswith(("_total", "_bucket", "_count", "_sum"))
        }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return Scrape(response.read().decode())


def start_exporter(host: BufferHost, port: int) -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "embuffer.cli",
            "--config",
            str(host.config_path),
            "metrics",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def answers() -> bool:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            scrape(url)
        except OSError:
            return False
        return True

    wait_for(answers, timeout=30, what="the metrics endpoint to answer")
    return process, url


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def drop_movies(
    host: BufferHost, registered: dict[str, int], count: int, age: float, first: int = 0
) -> dict[str, bytes]:
    """Movies registered in leginondb and closed `age` seconds ago on the camera share."""
    dropped: dict[str, bytes] = {}
    for index in range(first, first + count):
        stem = f"20261126_13{index:04d}_00"
        data = mrc_bytes(64, 64, 4, seed=index) if index % 2 else tiff_bytes(4, 64, 64, seed=index)
        name = f"{stem}.{'mrc' if index % 2 else 'tif'}"
        host.leginon.acquisition(
            registered["session"], registered["camera"], stem, f"26nov26a_{index:05d}en"
        )
        path = host.camera / name
        path.write_bytes(data)
        os.utime(path, (time.time() - age, time.time() - age))
        dropped[name] = data
    return dropped


def run(host: BufferHost, *args: str) -> int:
    return main(["--config", str(host.config_path), *args])


def test_endpoint_counts_movies_and_histograms_as_they_flow(host, registered):
    exporter, url = start_exporter(host, free_port())
    try:
        assert scrape(url).value("embuffer_up") == 0  # no service has created the journal yet
        assert run(host, "status", "--json") == 0  # opens (creates) the journal
        before = scrape(url)
        assert before.value("embuffer_up") == 1
        assert before.value("embuffer_ingested_movies_total", camera=CAMERA_HOST) == 0
        assert before.value("embuffer_detection_latency_seconds_count", camera=CAMERA_HOST) == 0
        assert before.value("embuffer_camera_folder_up", camera=CAMERA_HOST) == 1
        assert before.value("embuffer_camera_settled_files", camera=CAMERA_HOST) == 0
        assert before.value("embuffer_service_running", service="ingest") == 0

        movies = drop_movies(host, registered, count=3, age=90)
        total = sum(len(data) for data in movies.values())
        waiting = scrape(url)
        assert waiting.value("embuffer_camera_settled_files", camera=CAMERA_HOST) == 3
        assert waiting.value("embuffer_camera_oldest_settled_age_seconds", camera=CAMERA_HOST) >= 90

        started = time.time()
        assert run(host, "ingest", "--once") == 0
        ingested = scrape(url)
        assert ingested.value("embuffer_ingested_movies_total", camera=CAMERA_HOST) == 3
        assert ingested.value("embuffer_ingested_bytes_total", camera=CAMERA_HOST) == total
        assert ingested.value("embuffer_camera_settled_files", camera=CAMERA_HOST) == 0
        # closed 90 s before the copy started: nothing under a minute, all under five
        latency = "embuffer_detection_latency_seconds"
        assert ingested.value(f"{latency}_count", camera=CAMERA_HOST) == 3
        assert ingested.bucket(latency, "60") == 0
        assert ingested.bucket(latency, "300") == 3 == ingested.bucket(latency, "+Inf")
        assert ingested.value(f"{latency}_sum", camera=CAMERA_HOST) >= 3 * 90
        assert ingested.value("embuffer_archive_backlog_files", camera=CAMERA_HOST) == 3
        assert ingested.value("embuffer_archive_backlog_bytes", camera=CAMERA_HOST) == total
        assert (
            started
            <= ingested.value("embuffer_last_ingest_timestamp_seconds", camera=CAMERA_HOST)
            <= time.time()
        )
        assert all(
            ingested.value("embuffer_in_flight_movies", camera=CAMERA_HOST, state=s) == 0
            for s in ("seen", "matched", "copying", "copied", "verified")
        )
        # free space over the intake of the last 6 hours, in seconds
        intake_per_second = total / (6 * 3600)
        free = shutil.disk_usage(host.buffer).free
        forecast = ingested.value("embuffer_buffer_time_to_full_seconds")
        assert forecast == pytest.approx(free / intake_per_second, rel=0.01)

        assert run(host, "archive", "pause", "--reason", "drill") == 0
        assert scrape(url).value("embuffer_archive_paused") == 1
        assert run(host, "archive", "resume") == 0
        assert run(host, "archive", "--once") == 0
        archived = scrape(url)
        assert archived.value("embuffer_archive_paused") == 0
        assert archived.value("embuffer_archived_movies_total", camera=CAMERA_HOST) == 3
        assert archived.value("embuffer_archived_bytes_total", camera=CAMERA_HOST) == total
        to_primary = "embuffer_time_to_primary_seconds"
        assert archived.value(f"{to_primary}_count", camera=CAMERA_HOST) == 3
        assert archived.bucket(to_primary, "60") == 0 and archived.bucket(to_primary, "600") == 3
        assert archived.value("embuffer_archive_backlog_files", camera=CAMERA_HOST) == 0
        assert archived.value("embuffer_archive_backlog_oldest_age_seconds") == 0
        assert (
            archived.value("embuffer_last_archive_timestamp_seconds", camera=CAMERA_HOST) >= started
        )

        with sqlite3.connect(host.journal) as connection:  # retention (14 days) has passed
            connection.execute("UPDATE movies SET verified_at = verified_at - 20 * 86400")
        assert run(host, "purge") == 0
        purged = scrape(url)
        assert purged.value("embuffer_purged_movies_total", camera=CAMERA_HOST) == 3
        assert purged.value("embuffer_purged_bytes_total", camera=CAMERA_HOST) == total
        # earlier counters never move backwards, and the histograms are unchanged by purge
        assert purged.value("embuffer_ingested_movies_total", camera=CAMERA_HOST) == 3
        assert purged.value(f"{latency}_count", camera=CAMERA_HOST) == 3
    finally:
        stop(exporter)

    # a restarted exporter recomputes the very same counters and histograms from the journal
    exporter, url = start_exporter(host, free_port())
    try:
        assert scrape(url).counters() == purged.counters()
    finally:
        stop(exporter)


def test_textfile_follows_a_running_ingest_service_atomically(host, registered):
    host.write_config(grace_minutes=0)  # an unmatched movie goes to quarantine at once
    textfile = host.root / "textfile" / "embuffer.prom"
    textfile.parent.mkdir()
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "embuffer.cli",
            "--config",
            str(host.config_path),
            "metrics",
            "textfile",
            str(textfile),
            "--interval",
            "0.3",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ingest = start_daemon(host, "ingest")

    def current() -> Scrape:
        return Scrape(textfile.read_text()) if textfile.exists() else Scrape("")

    def shows(name: str, value: float, **labels: str) -> bool:
        return current().samples.get((name, tuple(sorted(labels.items())))) == value

    try:
        wait_for(
            lambda: shows("embuffer_service_running", 1, service="ingest"),
            timeout=30,
            what="the textfile to show the ingest service running",
        )
        assert stat.S_IMODE(textfile.stat().st_mode) == 0o644
        movies = drop_movies(host, registered, count=2, age=5)
        orphan = host.camera / "20261126_235959_00.mrc"
        orphan.write_bytes(mrc_bytes(16, 16, 2, seed=77))
        wait_for(
            lambda: shows("embuffer_ingested_movies_total", 2, camera=CAMERA_HOST),
            timeout=60,
            what="two ingested movies in the textfile",
        )
        wait_for(
            lambda: shows("embuffer_quarantine_movies", 1, camera=CAMERA_HOST),
            timeout=60,
            what="the orphan in quarantine",
        )
        seen = current()
        assert seen.value("embuffer_ingested_bytes_total", camera=CAMERA_HOST) == sum(
            len(data) for data in movies.values()
        )
        assert seen.value("embuffer_quarantined_movies_total", camera=CAMERA_HOST) == 1
        assert seen.value("embuffer_quarantine_bytes", camera=CAMERA_HOST) == len(
            (host.quarantine / CAMERA_HOST / orphan.name).read_bytes()
        )
        assert seen.value("embuffer_detection_latency_seconds_count", camera=CAMERA_HOST) == 3
        assert time.time() - seen.value("embuffer_collect_timestamp_seconds") < 30
        # only the finished file (renamed into place) is left: no temporaries next to it
        assert [path.name for path in textfile.parent.iterdir()] == ["embuffer.prom"]
    finally:
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(timeout=60)
        stop(writer)
    assert run(host, "metrics", "textfile", str(textfile), "--once") == 0
    assert current().value("embuffer_service_running", service="ingest") == 0


def query_names(text: str) -> set[str]:
    return set(re.findall(r"\bembuffer_[a-zA-Z0-9_]+", text))


def dashboard_queries() -> Iterator[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            yield f"variable {variable['name']}", query["query"]


def scrape_after_a_whole_cycle(host: BufferHost, registered: dict[str, int]) -> Scrape:
    """A scrape of `metrics serve` with every family present: a movie ingested and archived,
    the archive paused (its `since` gauge exists only then)."""
    drop_movies(host, registered, count=1, age=90)
    assert run(host, "ingest", "--once") == 0
    assert run(host, "archive", "--once") == 0
    assert run(host, "archive", "pause", "--reason", "names") == 0
    exporter, url = start_exporter(host, free_port())
    try:
        return scrape(url)
    finally:
        stop(exporter)


def test_promtool_check_metrics_finds_nothing_in_a_real_scrape(host, registered):
    exposition = scrape_after_a_whole_cycle(host, registered)
    families = {line.split()[2] for line in exposition.text.splitlines() if line[:6] == "# TYPE"}
    assert len(families) > 60, sorted(families)
    assert "embuffer_buffer_time_to_full_seconds" in families
    assert not {"embuffer_buffer_hours_until_full", "embuffer_buffer_intake_bytes_per_hour"} & (
        families
    )

    result = promtool("check", "metrics", stdin=exposition.text)

    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_dashboard_and_rules_name_only_exported_metrics(host, registered):
    exported = scrape_after_a_whole_cycle(host, registered).names

    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "embuffer" and dashboard["panels"]
    assert {v["name"] for v in dashboard["templating"]["list"]} >= {"instance", "camera"}
    graphs = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p.get("targets") for p in graphs), "every panel queries something"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for title, expr in dashboard_queries():
        names = query_names(expr)
        assert names, f"panel {title!r} queries no embuffer metric: {expr}"
        assert names <= exported, f"panel {title!r} names unexported {names - exported}"
    assert any("histogram_quantile" in expr for _, expr in dashboard_queries())
    assert query_names(RULES.read_text()) <= exported


def write_minimal_config(tmp_path: Path, extra: str = "") -> Path:
    """A config whose folders exist but which needs no database (status/metrics only)."""
    for folder in ("camera", "buffer", "quarantine", "state"):
        (tmp_path / folder).mkdir(exist_ok=True)
    path = tmp_path / "embuffer.toml"
    path.write_text(
        textwrap.dedent(f"""\
        [buffer]
        root = "{tmp_path / "buffer"}"
        quarantine = "{tmp_path / "quarantine"}"
        journal = "{tmp_path / "state" / "journal.sqlite"}"

        [database]
        credentials = "{tmp_path / "missing.cnf"}"

        [[camera]]
        host = "cam"
        path = "{tmp_path / "camera"}"
        """)
        + extra
    )
    return path


def add_movie(journal: Journal, closed: float, camera: str = "cam", size: int = 1000) -> int:
    """A movie ingested `closed`+5 s after its camera close, as ingest records it."""
    with journal.transaction():
        movie_id = journal.insert_movie(
            camera=camera,
            state="done",
            size=size,
            first_seen=closed,
            closed_at=closed,
            copy_started_at=closed + 5,
            verified_at=closed + 6,
            target="buffer",
        )
        journal.event("ingested", movie_id=movie_id, camera=camera, nbytes=size)
    return movie_id


def collect_once(collector: metrics.JournalCollector) -> Scrape:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return Scrape(generate_latest(registry).decode())


def test_incremental_scrapes_equal_a_fresh_count_and_read_only_new_events(tmp_path, monkeypatch):
    config = load_config(write_minimal_config(tmp_path), check_paths=False)
    journal = Journal(config.journal)
    now = time.time()
    for index in range(20):
        add_movie(journal, now - 100 - index)
    journal.event("verify_failed", camera="cam", detail="bad re-read")
    journal.event("db_error", camera="cam", detail="leginondb down")
    collector = metrics.JournalCollector(config)
    first = collect_once(collector)
    assert first.value("embuffer_ingested_movies_total", camera="cam") == 20
    assert first.value("embuffer_verification_failures_total", camera="cam") == 1
    assert first.value("embuffer_db_errors_total", camera="cam") == 1
    assert first.bucket("embuffer_detection_latency_seconds", "2", camera="cam") == 0
    assert first.bucket("embuffer_detection_latency_seconds", "5", camera="cam") == 20

    folds: list[int] = []
    original = metrics.JournalCollector._fold_histogram
    monkeypatch.setattr(
        metrics.JournalCollector,
        "_fold_histogram",
        staticmethod(lambda *args: (folds.append(1), original(*args))[1]),
    )
    assert collect_once(collector).counters() == first.counters()
    assert folds == [], "a scrape without new events must not aggregate events again"

    moved = add_movie(journal, now - 30, size=500)
    with journal.transaction():
        journal.update_movie(moved, primary_verified_at=now)
        journal.event("archived", movie_id=moved, camera="cam", nbytes=500)
    journal.event("verify_failed", camera="cam", detail="bad re-read again")
    second = collect_once(collector)
    assert folds, "new events are folded in"
    assert second.value("embuffer_ingested_movies_total", camera="cam") == 21
    assert second.value("embuffer_ingested_bytes_total", camera="cam") == 20 * 1000 + 500
    assert second.value("embuffer_archived_movies_total", camera="cam") == 1
    assert second.value("embuffer_verification_failures_total", camera="cam") == 2
    assert second.value("embuffer_time_to_primary_seconds_count", camera="cam") == 1
    assert second.bucket("embuffer_time_to_primary_seconds", "60", camera="cam") == 1
    # the incremental total is exactly what a brand-new exporter computes
    assert second.counters() == collect_once(metrics.JournalCollector(config)).counters()


def test_a_scrape_that_fails_halfway_counts_nothing_twice(tmp_path, monkeypatch):
    config = load_config(write_minimal_config(tmp_path), check_paths=False)
    journal = Journal(config.journal)
    add_movie(journal, time.time() - 100)
    collector = metrics.JournalCollector(config)
    first = collect_once(collector)
    add_movie(journal, time.time() - 50)
    original = metrics.JournalCollector._fold_histogram

    def locked(*args: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(metrics.JournalCollector, "_fold_histogram", staticmethod(locked))
    failed = collect_once(collector)
    assert failed.value("embuffer_up") == 0
    assert failed.counters() == first.counters(), "last values kept, none half-added"
    monkeypatch.setattr(metrics.JournalCollector, "_fold_histogram", staticmethod(original))
    recovered = collect_once(collector)
    assert recovered.value("embuffer_up") == 1
    assert recovered.value("embuffer_ingested_movies_total", camera="cam") == 2
    assert recovered.counters() == collect_once(metrics.JournalCollector(config)).counters()


def test_scrape_of_a_large_journal_stays_cheap_after_the_first(tmp_path):
    config = load_config(write_minimal_config(tmp_path), check_paths=False)
    journal = Journal(config.journal)
    now, count = time.time(), 100_000
    with journal.transaction() as db:
        db.executemany(
            "INSERT INTO movies (id, camera, state, size, first_seen, closed_at, copy_started_at,"
            " verified_at, primary_verified_at, target) VALUES (?, 'cam', ?, 10, ?, ?, ?, ?, ?,"
            " 'buffer')",
            [
                (
                    i,
                    "done",
                    now - 9e4,
                    now - 9e4,
                    now - 9e4 + 3,
                    now - 9e4 + 4,
                    None if i % 1000 == 0 else now - 8e4,
                )
                for i in range(1, count + 1)
            ],
        )
        db.executemany(
            "INSERT INTO events (at, movie_id, camera, action, bytes) VALUES (?, ?, 'cam', ?, 10)",
            [(now - 9e4, i, "ingested") for i in range(1, count + 1)]
            + [(now - 8e4, i, "archived") for i in range(1, count + 1) if i % 1000],
        )
    collector = metrics.JournalCollector(config)
    began = time.monotonic()
    first = collect_once(collector)
    first_seconds = time.monotonic() - began
    began = time.monotonic()
    again = collect_once(collector)
    again_seconds = time.monotonic() - began
    print(f"first scrape {first_seconds:.2f} s, next {again_seconds:.3f} s ({count} movies)")
    assert first.value("embuffer_ingested_movies_total", camera="cam") == count
    assert first.value("embuffer_archived_movies_total", camera="cam") == count - count // 1000
    assert first.value("embuffer_time_to_primary_seconds_count", camera="cam") == count - 100
    assert again.value("embuffer_archive_backlog_files", camera="cam") == count // 1000
    assert again_seconds < max(0.5, first_seconds / 2)


def test_service_running_follows_the_journal_lock(tmp_path):
    journal = tmp_path / "journal.sqlite"
    idle = {"ingest": False, "archive": False, "purge": False}
    running = metrics_host.service_locks(journal)
    if running is None:
        pytest.skip("/proc/locks is not readable here")
    assert running == idle
    with ServiceLock(journal, "archive"):
        assert metrics_host.service_locks(journal) == {**idle, "archive": True}
    assert metrics_host.service_locks(journal) == idle


def test_unreadable_journal_and_missing_camera_folder_are_reported(tmp_path):
    config = load_config(write_minimal_config(tmp_path), check_paths=False)
    (tmp_path / "camera").rmdir()
    scraped = collect_once(metrics.JournalCollector(config))
    assert scraped.value("embuffer_up") == 0  # no journal yet
    assert scraped.value("embuffer_camera_folder_up", camera="cam") == 0
    assert scraped.value("embuffer_buffer_used_ratio") > 0


def test_a_hung_camera_share_is_reported_down_without_blocking_the_scrape(tmp_path, monkeypatch):
    config = load_config(write_minimal_config(tmp_path), check_paths=False)
    release, listings = threading.Event(), []

    def hung(folder: Path, now: float) -> tuple[int, float]:
        listings.append(folder)
        release.wait(30)  # a CIFS share whose server went away
        return 0, 0.0

    monkeypatch.setattr(metrics_host, "settled_candidates", hung)
    monkeypatch.setattr(metrics_host, "FOLDER_PROBE_TIMEOUT_SECONDS", 0.2)
    collector = metrics.JournalCollector(config)
    began = time.monotonic()
    first, second = collect_once(collector), collect_once(collector)
    assert time.monotonic() - began < 5
    assert first.value("embuffer_camera_folder_up", camera="cam") == 0
    assert second.value("embuffer_camera_folder_up", camera="cam") == 0
    assert len(listings) == 1, "a stuck listing is not piled up with more"
    release.set()
    wait_for(
        lambda: (
            collect_once(collector).samples.get(("embuffer_camera_folder_up", (("camera", "cam"),)))
            == 1
        ),
        timeout=10,
        what="the share to be reported up once the listing returns",
    )


@pytest.mark.parametrize("listen", ["0.0.0.0:9814", "[::]:9814", ":9814"])
def test_metrics_serve_refuses_a_public_address(tmp_path, capsys, listen):
    config = write_minimal_config(tmp_path)
    assert main(["--config", str(config), "metrics", "serve", "--listen", listen]) == 78
    assert "--allow-public" in capsys.readouterr().err


def test_listen_addresses_parse_and_loopback_is_allowed():
    assert parse_listen("127.0.0.1:9814").port == 9814
    assert parse_listen("[::1]:9100").host == "::1"
    assert str(check_listen("localhost:9814", allow_public=False)).endswith(":9814")
    assert check_listen("0.0.0.0:9814", allow_public=True).host == "0.0.0.0"
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen("127.0.0.1")


def test_metrics_listen_and_textfile_come_from_the_config(tmp_path, capsys):
    target = tmp_path / "out" / "embuffer.prom"
    target.parent.mkdir()
    config = write_minimal_config(
        tmp_path, f'\n[metrics]\nlisten = "127.0.0.1:9999"\ntextfile = "{target}"\n'
    )
    assert load_config(config, check_paths=False).metrics.listen == "127.0.0.1:9999"
    assert main(["--config", str(config), "metrics", "textfile", "--once"]) == 0
    assert Scrape(target.read_text()).value("embuffer_up") == 0
    assert (
        main(
            [
                "--config",
                str(config),
                "metrics",
                "textfile",
                str(tmp_path / "embuffer.txt"),
                "--once",
            ]
        )
        == 78
    )
    assert ".prom" in capsys.readouterr().err
    bad = write_minimal_config(tmp_path, "\n[metrics]\nlisten = 9814\nport = 1\n")
    assert main(["--config", str(bad), "status"]) == 78
    problems = capsys.readouterr().err
    assert "[metrics] 'listen' must be a string" in problems
    assert "[metrics] unknown key 'port'" in problems


def test_console_screen_shows_pause_outage_forecast_and_recent_errors(tmp_path):
    config = load_config(write_minimal_config(tmp_path), check_paths=False)
    journal = Journal(config.journal)
    add_movie(journal, time.time() - 60, size=5 * 2**30)
    journal.set_setting("archive_pause", {"reason": "tape swap", "since": time.time(), "by": "x"})
    journal.set_setting("outage", {"start": time.time(), "reason": "primary down", "by": "ops"})
    journal.event("verify_failed", camera="cam", detail="/buffer/a.tif: 1 != 2")
    console = Console(record=True, width=200, force_terminal=False)
    console.print(screen(collect(config, journal), recent_errors(journal), time.time()))
    text = console.export_text()
    assert re.search(r"archive paused: tape swap since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", text)
    assert "outage since" in text and "primary down" in text
    assert "h until full" in text
    assert "verify_failed" in text and "/buffer/a.tif: 1 != 2" in text
    assert "1 files, 5.0 GiB" in text  # the backlog


def test_status_plain_when_piped_json_unchanged_and_watch_refreshes(tmp_path):
    config = load_config(write_minimal_config(tmp_path), check_paths=False)
    journal = Journal(config.journal)
    add_movie(journal, time.time() - 60)
    journal.set_setting("archive_pause", {"reason": "drill", "since": time.time(), "by": "x"})

    piped = io.StringIO()
    assert show_status(config, journal, as_json=False, watch=0, stream=piped) == 0
    assert "archive paused: drill since" in piped.getvalue()
    assert "\x1b[" not in piped.getvalue()

    as_json = io.StringIO()
    assert show_status(config, journal, as_json=True, watch=0, stream=as_json) == 0
    status = json.loads(as_json.getvalue())
    assert status["cameras"][0]["moved"] == 1 and status["archive"]["paused"]
    assert status["archive"]["backlog_files"] == 1
    assert {"hours_until_full", "intake_bytes_per_hour", "used_percent", "outage"} <= set(
        status["buffer"]
    )

    watched = io.StringIO()
    halt = threading.Event()
    threading.Timer(0.5, halt.set).start()
    assert show_status(config, journal, as_json=False, watch=0.1, stop=halt, stream=watched) == 0
    assert watched.getvalue().count("archive paused: drill since") >= 2


def test_registry_for_serve_adds_process_metrics_only_there(tmp_path):
    config = load_config(write_minimal_config(tmp_path), check_paths=False)
    from prometheus_client import generate_latest

    served = generate_latest(registry_for(config, process=True)).decode()
    written = generate_latest(registry_for(config, process=False)).decode()
    if Path("/proc/self/stat").exists():
        assert "process_resident_memory_bytes" in served
    assert "process_" not in written and "embuffer_up" in written
