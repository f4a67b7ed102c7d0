"""Files that wait on the camera share cost little, on both sides: a settled file is not
stat'ed or opened between its looks, its looks at leginondb back off, a new movie is taken
within the poll whatever waits beside it, a restart does not reopen what was checked, and
what ingest costs leginondb and the share is exported and alerted on."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import CAMERA_HOST, BufferHost
from support.movies import mrc_bytes
from test_alert_rules import RULE_TESTS, RULES, promtool
from test_faults import wait_for
from test_metrics import collect_once

from embuffer.cli import main
from embuffer.config import load_config
from embuffer.ingest import backlog as cold_backlog
from embuffer.ingest import intake, load, waiting
from embuffer.ingest import worker as ingest
from embuffer.journal import Journal, schema
from embuffer.report.metrics import collector as metrics
from embuffer.report.metrics import host as metrics_host


# ---- the camera share's side, counted at the system calls ---------------------------------
class ShareCalls:
    """stat, lstat and open calls on files of one camera folder, per file name, made by any
    thread of this process (the camera worker runs in it)."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = str(folder)
        self.stats: Counter[str] = Counter()
        self.opens: Counter[str] = Counter()
        self._lock = threading.Lock()
        for name in ("stat", "lstat"):
            monkeypatch.setattr(os, name, self._counting(getattr(os, name), self.stats))
        monkeypatch.setattr(os, "open", self._counting(os.open, self.opens))

    def _counting(self, original: Callable[..., Any], into: Counter[str]) -> Callable[..., Any]:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            if not isinstance(path, int):
                text = os.fsdecode(os.fspath(path))
                # an open in the camera folder by descriptor (nofollow) names the file alone
                if os.path.dirname(text) == self.folder or (
                    "dir_fd" in kwargs and os.sep not in text
                ):
                    with self._lock:
                        into[os.path.basename(text)] += 1
            return original(path, *args, **kwargs)

        return call

    def reset(self) -> None:
        with self._lock:
            self.stats.clear()
            self.opens.clear()

    def of(self, names: set[str]) -> tuple[int, int]:
        with self._lock:
            return sum(self.stats[n] for n in names), sum(self.opens[n] for n in names)


# ---- the camera worker, in this process -----------------------------------------------------
@contextmanager
def running_ingest(host: BufferHost) -> Iterator[ingest.CameraIngest]:
    config = load_config(host.config_path)
    journal = Journal(config.journal, sync_each_commit=False)
    stop = threading.Event()
    worker = ingest.CameraIngest(config, config.cameras[0], journal, stop)
    thread = threading.Thread(target=worker.run_forever, name="ingest-under-test")
    thread.start()
    try:
        yield worker
        assert thread.is_alive(), "the camera worker died"
    finally:
        stop.set()
        thread.join(timeout=60)
        journal.close()


def drop(path: Path, data: bytes, age: float = 60.0) -> None:
    path.write_bytes(data)
    then = time.time() - age
    os.utime(path, (then, then))


def unmatched_files(host: BufferHost, count: int, prefix: str = "orphan") -> set[str]:
    """Whole MRC movies that no Leginon image will ever match."""
    names = {f"{prefix}_{index:05d}.mrc" for index in range(count)}
    data = mrc_bytes(8, 8, 2, seed=11)
    for name in names:
        drop(host.camera / name, data)
    return names


def acquire(host: BufferHost, registered: dict[str, int], frames: str, image: str) -> Path:
    host.leginon.acquisition(registered["session"], registered["camera"], frames, image)
    path = host.camera / f"{frames}.mrc"
    drop(path, mrc_bytes(16, 16, 4, seed=len(frames)), age=5.0)
    return path


def waiting_rows(host: BufferHost) -> int:
    connection = sqlite3.connect(host.journal)
    try:
        return int(connection.execute("SELECT COUNT(*) FROM camera_files").fetchone()[0])
    finally:
        connection.close()


def copy_started(host: BufferHost, source: Path) -> float | None:
    connection = sqlite3.connect(host.journal)
    try:
        row = connection.execute(
            "SELECT copy_started_at FROM movies WHERE source_path = ? "
            "AND copy_started_at IS NOT NULL",
            (str(source),),
        ).fetchone()
    finally:
        connection.close()
    return None if row is None else float(row[0])


class Lookups:
    """When intake asked leginondb for an image, per frames name."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.at: dict[str, list[float]] = {}
        original = intake.find_image

        def find_image(db: Any, key: str, *args: Any) -> Any:
            self.at.setdefault(key, []).append(time.monotonic())
            return original(db, key, *args)

        monkeypatch.setattr(intake, "find_image", find_image)

    def total(self) -> int:
        return sum(len(times) for times in self.at.values())


# ---- a waiting file costs nothing between its looks ----------------------------------------
def test_a_settled_waiting_file_is_not_stated_or_opened_between_its_looks(
    host, registered, monkeypatch
):
    monkeypatch.setattr(waiting, "FIRST_LOOK_SECONDS", 3.0)
    # the files are there at the start: judged together, so their looks fall due together
    monkeypatch.setattr(cold_backlog, "JUDGEMENTS_PER_SECOND", 1000.0)
    host.write_config(poll_seconds=0.2, grace_minutes=20)
    names = unmatched_files(host, 20)
    lookups = Lookups(monkeypatch)
    calls = ShareCalls(host.camera, monkeypatch)
    with running_ingest(host):
        wait_for(lambda: waiting_rows(host) == 20, 30, "every file judged and waiting")
        first_stats, first_opens = calls.of(names)
        assert first_opens == 20, "each file's structure was read once to judge it"
        assert first_stats >= 40, "settled by two agreeing looks each"
        calls.reset()
        looked = lookups.total()
        time.sleep(2.0)  # about 10 passes and 10 listings, all before the next look is due
        assert calls.of(names) == (0, 0), "no stat or open of a waiting file between looks"
        assert lookups.total() == looked, "and no lookup in leginondb either"
        wait_for(lambda: lookups.total() >= looked + 20, 15, "the second look at each")
        stats, opens = calls.of(names)
        assert opens == 0, "an unchanged file is not opened again"
        assert 20 <= stats <= 40, "one stat per look, confirming the entry"

        changed = sorted(names)[0]
        with open(host.camera / changed, "ab") as grown:  # the camera writes it again
            grown.write(b"\0" * 64)
        calls.reset()
        wait_for(lambda: calls.of({changed})[1] >= 1, 30, "the changed file to be re-checked")
        assert calls.of(names - {changed})[1] == 0
    assert all(path.exists() for path in (host.camera / name for name in names))


# ---- lookups back off, and the grace period still ends in quarantine after a last one -----
def test_unmatched_lookups_back_off_and_the_grace_end_is_a_fresh_lookup(
    host, registered, monkeypatch
):
    monkeypatch.setattr(waiting, "FIRST_LOOK_SECONDS", 0.5)
    monkeypatch.setattr(waiting, "LOOK_CAP_SECONDS", 2.0)
    host.write_config(poll_seconds=0.2, grace_minutes=0.15)  # 9 s of grace
    lookups = Lookups(monkeypatch)
    orphan = host.camera / "20261126_140000_99.mrc"
    with running_ingest(host) as worker:
        drop(orphan, mrc_bytes(8, 8, 2, seed=3))
        wait_for(lambda: not orphan.exists(), 40, "the orphan to go to quarantine")
        queries = worker.db.queries
    times = lookups.at["20261126_140000_99"]
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    # 0.5, 1, 2, 2, ... s (each a pass or two late), never at every 0.2 s pass
    assert len(times) <= 9, f"looked up {len(times)} times in 9 s of grace: {gaps}"
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95
    assert all(gap >= 1.95 for gap in gaps[2:-1]), gaps
    rows = sqlite3.connect(host.journal).execute(
        "SELECT state, reason, first_seen FROM movies WHERE source_path = ?", (str(orphan),)
    )
    [(state, reason, _)] = list(rows)
    assert state == "quarantined"
    assert "no Leginon image has frames name '20261126_140000_99'" in reason
    # the quarantine rests on a lookup made after the grace period ended
    assert times[-1] - times[0] >= 9 * 0.9
    assert queries >= len(times), "every lookup reached the database through the counter"


def test_a_row_written_late_is_found_at_the_next_look(host, registered, monkeypatch):
    monkeypatch.setattr(waiting, "FIRST_LOOK_SECONDS", 0.5)
    host.write_config(poll_seconds=0.2)
    late = host.camera / "20261126_141500_01.mrc"
    with running_ingest(host):
        drop(late, mrc_bytes(16, 16, 4, seed=9))
        wait_for(lambda: waiting_rows(host) == 1, 20, "the movie to wait for its image")
        host.leginon.acquisition(
            registered["session"], registered["camera"], late.stem, "late_image"
        )
        wait_for(lambda: not late.exists(), 20, "the movie to be taken")
        wait_for(lambda: waiting_rows(host) == 0, 5, "its waiting record to go")
    assert (host.buffer_folder() / "late_image.frames.mrc").exists()


# ---- a new movie never waits behind a backlog ----------------------------------------------
def test_a_matched_movie_among_300_waiting_files_is_taken_within_the_poll(
    host, registered, monkeypatch
):
    monkeypatch.setattr(waiting, "FIRST_LOOK_SECONDS", 0.2)  # the whole backlog due at once
    monkeypatch.setattr(waiting, "LOOK_CAP_SECONDS", 0.2)
    host.write_config(poll_seconds=1, grace_minutes=60)
    unmatched_files(host, 300)
    lookups = Lookups(monkeypatch)
    with running_ingest(host) as worker:
        wait_for(lambda: waiting_rows(host) == 300, 60, "the backlog to be waiting")
        time.sleep(2.0)
        steady, queries = lookups.total(), worker.db.queries
        time.sleep(3.0)
        rate = (lookups.total() - steady) / 3.0
        # all 300 are due at every pass; the ration keeps leginondb's load bounded
        assert rate <= waiting.BACKLOG_LOOKS_PER_SECOND * 1.5, rate
        assert (worker.db.queries - queries) / 3.0 <= 20
        movie = acquire(host, registered, "20261126_150000_07", "new_movie")
        dropped = time.time()
        wait_for(lambda: copy_started(host, movie) is not None, 10, "the new movie's copy")
        started = copy_started(host, movie)
        assert started is not None
        # a poll (1 s) to see it, two passes (0.2 s) to agree it is whole, then its copy
        assert started - dropped < 2.5, f"taken {started - dropped:.1f} s after it settled"
        wait_for(lambda: not movie.exists(), 20, "the new movie to leave the share")


# ---- what was checked survives a restart -----------------------------------------------------
def test_a_restart_does_not_reopen_waiting_files_unless_their_entry_changed(
    host, registered, monkeypatch
):
    host.write_config(poll_seconds=1, grace_minutes=60)
    names = unmatched_files(host, 2000)
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0
    assert waiting_rows(host) == 2000
    grown, touched, removed = sorted(names)[:3]
    with open(host.camera / grown, "ab") as handle:
        handle.write(b"\0" * 16)
    os.utime(host.camera / touched, (time.time() - 30, time.time() - 30))
    (host.camera / removed).unlink()
    unchanged = names - {grown, touched, removed}
    calls = ShareCalls(host.camera, monkeypatch)
    movie = acquire(host, registered, "20261126_160000_01", "after_restart")

    started = time.time()
    with running_ingest(host) as worker:
        wait_for(lambda: copy_started(host, movie) is not None, 15, "the first movie's copy")
        first_movie = (copy_started(host, movie) or 0.0) - started
        early_stats, early_opens = calls.of(unchanged)
        early = time.time() - started
        # the ration opened wide: every waiting file gets its look now
        worker.waiting.ration.per_second = 10_000.0
        wait_for(lambda: calls.of({grown, touched})[1] >= 2, 60, "the changed files re-read")
        wait_for(lambda: calls.of(unchanged)[0] >= len(unchanged), 60, "every look")
        stats, opens = calls.of(unchanged)
    assert first_movie < 5.0, f"the first movie moved {first_movie:.1f} s after the start"
    # no stat of every waiting file at start: only the ration's looks
    assert early_stats <= waiting.BACKLOG_LOOKS_PER_SECOND * (early + 2), early_stats
    assert early_opens == opens == 0, "no unchanged waiting file was opened again"
    assert stats <= 2 * len(unchanged), "one stat per look"
    connection = sqlite3.connect(host.journal)
    [(state,)] = connection.execute(
        "SELECT state FROM movies WHERE source_path = ?", (str(host.camera / removed),)
    )
    assert state == "vanished", "a waiting file gone while the service was down is recorded"


def test_ingest_once_looks_at_every_waiting_file_without_reopening_it(
    host, registered, monkeypatch
):
    names = unmatched_files(host, 30)
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0
    lookups = Lookups(monkeypatch)
    calls = ShareCalls(host.camera, monkeypatch)
    host.leginon.acquisition(
        registered["session"], registered["camera"], "orphan_00007", "found_at_last"
    )
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0
    assert lookups.total() == 30, "a one-shot pass looks every waiting file up"
    assert calls.of(names - {"orphan_00007.mrc"})[1] == 0
    assert not (host.camera / "orphan_00007.mrc").exists()
    assert (host.buffer_folder() / "found_at_last.frames.mrc").exists()


# ---- an old journal -------------------------------------------------------------------------
PREVIOUS_SCHEMA = re.sub(
    r"CREATE TABLE IF NOT EXISTS camera_(files|load) \(.*?\n\);\n", "", schema.SCHEMA, flags=re.S
)


def test_a_journal_of_the_previous_release_is_read_and_upgraded(host, registered):
    assert "camera_files" not in PREVIOUS_SCHEMA and "held_files" in PREVIOUS_SCHEMA
    old = sqlite3.connect(host.journal)
    old.executescript(PREVIOUS_SCHEMA)
    orphan = host.camera / "orphan_old.mrc"
    drop(orphan, mrc_bytes(8, 8, 2, seed=4))
    old.execute(
        "INSERT INTO movies (camera, source_path, kind, state, first_seen) "
        "VALUES (?, ?, 'file', 'seen', ?)",
        (CAMERA_HOST, str(orphan), time.time() - 60),
    )
    old.commit()
    old.close()

    config = load_config(host.config_path)
    before = collect_once(metrics.JournalCollector(config))  # read-only, tables absent
    assert before.value("embuffer_up") == 1
    assert before.value("embuffer_camera_waiting_files", camera=CAMERA_HOST) == 0
    assert before.value("embuffer_leginondb_queries_total", camera=CAMERA_HOST) == 0

    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0
    after = collect_once(metrics.JournalCollector(config))
    assert after.value("embuffer_camera_waiting_files", camera=CAMERA_HOST) == 1
    assert after.value("embuffer_leginondb_queries_total", camera=CAMERA_HOST) >= 1
    rows = sqlite3.connect(host.journal).execute("SELECT state FROM movies").fetchall()
    assert rows == [("seen",)], "the old row goes on waiting; none is added beside it"


# ---- metrics and alerts ------------------------------------------------------------------------
def test_the_load_on_leginondb_and_the_share_is_exported_per_camera(host, registered, monkeypatch):
    monkeypatch.setattr(load, "LOAD_FLUSH_SECONDS", 0.5)
    unmatched_files(host, 10)
    config = load_config(host.config_path)
    collector = metrics.JournalCollector(config)
    with running_ingest(host) as worker:
        wait_for(lambda: waiting_rows(host) == 10, 30, "the files to wait")
        time.sleep(1.0)
        scrape = collect_once(collector)
    sent = worker.db.queries
    assert scrape.value("embuffer_camera_waiting_files", camera=CAMERA_HOST) == 10
    queries = scrape.value("embuffer_leginondb_queries_total", camera=CAMERA_HOST)
    assert 10 <= queries <= sent
    assert scrape.value("embuffer_leginondb_query_seconds_total", camera=CAMERA_HOST) > 0
    assert scrape.value("embuffer_camera_share_opens_total", camera=CAMERA_HOST) == 10
    assert scrape.value("embuffer_camera_share_stats_total", camera=CAMERA_HOST) >= 20
    assert scrape.value("embuffer_camera_share_listings_total", camera=CAMERA_HOST) >= 1
    final = collect_once(collector)  # the worker flushed the rest when it stopped
    assert final.value("embuffer_leginondb_queries_total", camera=CAMERA_HOST) == sent


def test_the_metrics_probe_does_not_stat_files_it_knows_are_settled(tmp_path, monkeypatch):
    for index in range(50):
        drop(tmp_path / f"movie_{index}.mrc", b"x", age=600)
    drop(tmp_path / "writing.mrc", b"x", age=0)
    entry_stats: list[str] = []
    scandir = os.scandir

    class CountedEntry:
        def __init__(self, entry: os.DirEntry[str]) -> None:
            self._entry = entry
            self.name = entry.name

        def __getattr__(self, name: str) -> Any:
            return getattr(self._entry, name)

        def stat(self, **kwargs: Any) -> os.stat_result:
            entry_stats.append(self.name)
            return self._entry.stat(**kwargs)

    @contextmanager
    def counted(folder: Any) -> Iterator[Iterator[CountedEntry]]:
        with scandir(folder) as entries:
            yield (CountedEntry(entry) for entry in entries)

    monkeypatch.setattr(metrics_host.os, "scandir", counted)
    now = time.time()
    assert metrics_host.settled_candidates(tmp_path, now) == (50, pytest.approx(600, abs=2))
    assert len(entry_stats) == 51
    entry_stats.clear()
    assert metrics_host.settled_candidates(tmp_path, now + 15) == (50, pytest.approx(615, abs=2))
    assert entry_stats == ["writing.mrc"], "only the file not yet settled is stat'ed again"
    later = now + metrics_host.SETTLED_RECHECK_SECONDS + 1
    entry_stats.clear()
    metrics_host.settled_candidates(tmp_path, later)
    assert len(entry_stats) == 51, "and every settled one again after the recheck interval"


@pytest.mark.parametrize(
    ("alert", "broken"),
    [
        ("EmbufferLeginonQueriesHigh", ("> 20", "> 2000")),  # would miss k3's 30 a second
        ("EmbufferLeginonQueriesHigh", ("> 0.25", "> 25")),  # would miss slow lookups
        ("EmbufferLeginonQueriesHigh", ("for: 15m", "for: 1m")),  # would page on a burst
        ("EmbufferCameraShareOpsHigh", ("> 50", "> 5000")),
        ("EmbufferCameraShareOpsHigh", ("> 50", "> 5")),  # would page on normal writing
    ],
)
def test_the_rule_tests_catch_a_broken_load_alert(tmp_path, alert, broken):
    text = RULES.read_text()
    start = text.index(f"- alert: {alert}")
    end = text.find("- alert:", start + 1)
    block = text[start:end]
    assert broken[0] in block
    (tmp_path / RULES.name).write_text(
        text[:start] + block.replace(broken[0], broken[1], 1) + text[end:]
    )
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr


# ---- a cold start: thousands of waiting files no earlier run judged --------------------------
# what the camera PC's file server takes, measured through Samba on loopback and smbnetfs
# (tests/support/smb_share.py): a stat 0.19 ms, an open that reads a header and closes 15 ms
SHARE_STAT_SECONDS = 0.0002
SHARE_OPEN_SECONDS = 0.015


def camera_share_latency(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """stat and open of the files of `folder` take as long as they do over SMB."""

    def slowed(original: Callable[..., Any], seconds: float) -> Callable[..., Any]:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            if not isinstance(path, int):
                text = os.fsdecode(os.fspath(path))
                if os.path.dirname(text) == str(folder) or (
                    "dir_fd" in kwargs and os.sep not in text and text.endswith(".mrc")
                ):
                    time.sleep(seconds)
            return original(path, *args, **kwargs)

        return call

    for name in ("stat", "lstat"):
        monkeypatch.setattr(os, name, slowed(getattr(os, name), SHARE_STAT_SECONDS))
    monkeypatch.setattr(os, "open", slowed(os.open, SHARE_OPEN_SECONDS))


def old_backlog(host: BufferHost, count: int, *, previous_release: bool) -> set[str]:
    """`count` settled, unmatched movies written long before the start, named (as Leginon names
    frames) by the time they were taken. With `previous_release`, the journal is one the
    release before camera_files wrote: a `seen` row for each file, and nothing about its
    size, mtime or structure."""
    names = {f"20261120_{index:06d}_00.mrc" for index in range(count)}
    data = mrc_bytes(8, 8, 2, seed=12)
    for name in names:
        drop(host.camera / name, data, age=3600.0)
    if previous_release:
        old = sqlite3.connect(host.journal)
        old.executescript(PREVIOUS_SCHEMA)
        old.executemany(
            "INSERT INTO movies (camera, source_path, kind, state, first_seen) "
            "VALUES (?, ?, 'file', 'seen', ?)",
            [(CAMERA_HOST, str(host.camera / name), time.time() - 3000) for name in names],
        )
        old.commit()
        old.close()
    return names


@pytest.mark.parametrize("journal", ["empty", "previous release"])
def test_after_a_cold_start_over_1500_unknown_waiting_files_movies_move_within_seconds(
    host, registered, journal, monkeypatch
):
    host.write_config(poll_seconds=1, grace_minutes=60)
    backlog = old_backlog(host, 1500, previous_release=journal == "previous release")
    camera_share_latency(host.camera, monkeypatch)
    # already there at the start, its name in the middle of the backlog's: found by its mtime
    present = acquire(host, registered, "20261120_000750_50", "present_at_start")
    started = time.time()
    with running_ingest(host):
        time.sleep(1.5)  # the worker has listed the folder: the next movie is new to it
        dropped_at = time.time()
        dropped = acquire(host, registered, "20261127_090000_01", "dropped_after_start")
        wait_for(lambda: copy_started(host, dropped) is not None, 60, "the dropped movie's copy")
        wait_for(lambda: copy_started(host, present) is not None, 60, "the present movie's copy")
        present_took = (copy_started(host, present) or 0.0) - started
        dropped_took = (copy_started(host, dropped) or 0.0) - dropped_at
        judged_meanwhile = waiting_rows(host)
    assert present_took < 5.0, f"the movie present at the start moved after {present_took:.1f} s"
    assert dropped_took < 5.0, f"the movie dropped after the start moved after {dropped_took:.1f} s"
    assert judged_meanwhile < len(backlog), "the movies did not wait for the whole backlog"


def test_the_backlog_is_all_judged_at_a_bounded_rate_each_file_once(host, registered, monkeypatch):
    monkeypatch.setattr(cold_backlog, "JUDGEMENTS_PER_SECOND", 40.0)
    monkeypatch.setattr(waiting, "FIRST_LOOK_SECONDS", 60.0)  # no second look meanwhile
    host.write_config(poll_seconds=1, grace_minutes=60)
    names = old_backlog(host, 400, previous_release=False)
    lookups = Lookups(monkeypatch)
    calls = ShareCalls(host.camera, monkeypatch)
    with running_ingest(host) as worker:
        time.sleep(3.0)
        early = lookups.total()
        wait_for(lambda: waiting_rows(host) == len(names), 60, "the whole backlog judged")
        caught_up = time.monotonic()
        assert len(worker.backlog) == 0
    started = min(min(times) for times in lookups.at.values())
    # 40 a second, and at most a second's worth saved up when the worker starts
    assert early <= 40 * 3.0 + 40, early
    assert caught_up - started >= (len(names) - 40) / 40 * 0.9
    assert all(len(times) == 1 for times in lookups.at.values()), "each looked up once"
    stats, opens = calls.of(names)
    assert opens == len(names), "each structure read once"
    assert stats <= 2 * len(names), "a survey stat and a judging stat each"


def test_files_of_a_camera_removed_from_the_configuration_are_not_counted(host, registered):
    unmatched_files(host, 2)
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0
    connection = sqlite3.connect(host.journal)
    try:  # what waited on the share of a camera the configuration has dropped since
        with connection:
            connection.execute(
                "INSERT INTO camera_files SELECT 'k3-cam-gone', source_path, kind, size, "
                "mtime_ns, entries, complete, verdict_reason, expected_size, frames, "
                "settled_at, looks, next_look_at FROM camera_files"
            )
    finally:
        connection.close()

    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0
    scrape = collect_once(metrics.JournalCollector(load_config(host.config_path)))
    assert scrape.value("embuffer_camera_waiting_files", camera=CAMERA_HOST) == 2
    gone = ("embuffer_camera_waiting_files", (("camera", "k3-cam-gone"),))
    assert gone not in scrape.samples
