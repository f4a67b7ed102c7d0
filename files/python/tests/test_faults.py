"""Fault tests: every movie ends verified in the buffer, still on the camera share, or in
quarantine, byte-identical, whatever happens to the ingest process, the disk or the DB."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import BufferHost, tmpfs
from support.movies import mrc_bytes, tiff_bytes

from embuffer.cli import main
from embuffer.safecopy.partials import PARTIAL_SUFFIX

pytestmark = pytest.mark.fault


def start_daemon(host: BufferHost, command: str = "ingest") -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "embuffer.cli", "--config", str(host.config_path), command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Stream:
    """Movies registered in leginondb and dropped on the camera share, with their bytes."""

    def __init__(self, host: BufferHost, registered: dict[str, int]) -> None:
        self.host = host
        self.registered = registered
        self.expected: dict[str, tuple[str, bytes]] = {}  # camera name -> (buffer name, data)
        self.count = 0

    def add(
        self,
        size_frames: int = 16,
        *,
        age: float = 30.0,
        kind: str = "mrc",
        folder: Path | None = None,
    ) -> str:
        self.count += 1
        stem = f"20261126_{self.count:06d}_00"
        image = f"stream_{self.count:05d}en"
        if kind == "mrc":
            data = mrc_bytes(512, 512, size_frames, seed=self.count)
        else:
            data = tiff_bytes(size_frames, 512, 512, seed=self.count)
        name = f"{stem}.{kind if kind == 'mrc' else 'tif'}"
        self.host.leginon.acquisition(
            self.registered["session"], self.registered["camera"], stem, image
        )
        path = (folder or self.host.camera) / name
        path.write_bytes(data)
        os.utime(path, (time.time() - age, time.time() - age))
        self.expected[name] = (f"{image}.frames.{'mrc' if kind == 'mrc' else 'tif'}", data)
        return name

    def check_nothing_lost(self, *, final: bool = False) -> None:
        folder = self.host.buffer_folder()
        for name, (buffer_name, data) in self.expected.items():
            on_camera = self.host.camera / name
            in_buffer = folder / buffer_name
            places = []
            if on_camera.exists():
                assert on_camera.read_bytes() == data, f"camera copy of {name} changed"
                places.append("camera")
            if in_buffer.exists():
                # a file under its final name is always whole: never a partial copy
                assert in_buffer.read_bytes() == data, f"{buffer_name} is not byte-identical"
                places.append("buffer")
            assert places, f"{name} is lost: neither on the camera nor in the buffer"
            if final:
                assert places == ["buffer"], f"{name} not finished: {places}"
        if final:
            leftovers = [p for p in self.host.buffer.rglob("*") if p.name.endswith(PARTIAL_SUFFIX)]
            assert leftovers == []
            assert not list(self.host.quarantine.rglob("*.mrc"))


def test_kill_9_at_random_points_never_loses_or_truncates_a_movie(host, registered):
    stream = Stream(host, registered)
    rng = random.Random(2026)
    interrupted = 0
    for iteration in range(30):
        for _ in range(2):
            stream.add(size_frames=rng.randint(16, 48), kind=rng.choice(["mrc", "tif"]))
        daemon = start_daemon(host)
        if iteration % 2:
            time.sleep(rng.uniform(0.3, 1.2))  # anywhere: start-up, scan, match, copy, verify
        else:
            # aim inside a copy: wait until one is running, then a little more
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any(
                p.name.endswith(PARTIAL_SUFFIX) for p in host.buffer.rglob("*")
            ):
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.02))
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        interrupted += mid_flight(host)
        stream.check_nothing_lost()
        if iteration % 10 == 9:
            assert main(["--config", str(host.config_path), "status"]) == 0
    # the kills really landed inside copies and verifications, not only between files
    assert interrupted >= 5, f"only {interrupted} kills hit a movie in flight"
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0
    stream.check_nothing_lost(final=True)


def mid_flight(host: BufferHost) -> int:
    """1 when the killed process left a partial copy or a movie between copy and removal."""
    import sqlite3

    partial = any(p.name.endswith(PARTIAL_SUFFIX) for p in host.buffer.rglob("*"))
    if not host.journal.exists():
        return int(partial)
    connection = sqlite3.connect(host.journal)
    (busy,) = connection.execute(
        "SELECT COUNT(*) FROM movies WHERE state IN ('copying', 'copied', 'verified')"
    ).fetchone()
    connection.close()
    return int(partial or busy > 0)


def test_sigterm_rolls_back_the_copy_in_flight(host, registered):
    stream = Stream(host, registered)
    for _ in range(6):
        stream.add(size_frames=200)  # 50 MB each
    daemon = start_daemon(host)
    wait_for(
        lambda: any(
            p.name.endswith(PARTIAL_SUFFIX) or p.suffix == ".mrc" for p in host.buffer.rglob("*")
        ),
        what="a copy to start",
    )
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=60) == 0
    stream.check_nothing_lost()
    assert not [p for p in host.buffer.rglob("*") if p.name.endswith(PARTIAL_SUFFIX)]


def test_second_ingest_on_the_same_journal_refuses_to_run(host, registered):
    first = start_daemon(host)
    try:
        time.sleep(1.0)
        second = start_daemon(host)
        assert second.wait(timeout=30) == 75
        assert b"already running" in second.stderr.read()
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)


@pytest.fixture
def small_buffer(host: BufferHost):
    """The buffer root on an 8 MiB tmpfs, to fill it for real."""
    with tmpfs(host.buffer, "8m") as folder:
        yield folder


def test_buffer_full_keeps_every_movie_on_the_camera_until_there_is_room(
    host, registered, small_buffer
):
    stream = Stream(host, registered)
    for _ in range(5):
        stream.add(size_frames=12)  # 3 MiB each: only two fit
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 1
    stream.check_nothing_lost()
    landed = list(host.buffer_folder().glob("*.frames.mrc"))
    assert 1 <= len(landed) < 5
    assert not [p for p in host.buffer.rglob("*") if p.name.endswith(PARTIAL_SUFFIX)]

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_buffer)], check=True)
    time.sleep(1.1)  # the backoff after ENOSPC
    for _ in range(5):
        if main(["--config", str(host.config_path), "ingest", "--once"]) == 0:
            break
        time.sleep(1.0)
    stream.check_nothing_lost(final=True)


def test_database_down_and_back(host, registered):
    host.write_config(grace_minutes=0, settle_seconds=0.5)
    stream = Stream(host, registered)
    daemon = start_daemon(host)
    try:
        stream.add(size_frames=4)
        wait_for(
            lambda: not (host.camera / next(iter(stream.expected))).exists(),
            what="the first movie to be ingested",
        )
        # Leginon registered these images; their files reach the camera share while the
        # database is down
        staging = host.root / "staging"
        staging.mkdir()
        pending = [stream.add(size_frames=4, folder=staging) for _ in range(4)]
        host.server.stop()
        for name in pending:
            os.rename(staging / name, host.camera / name)
        time.sleep(4.0)  # several polls with the database gone, grace 0
        stream.check_nothing_lost()
        assert all((host.camera / name).exists() for name in pending)
        assert not list(host.quarantine.rglob("*.mrc")), "quarantined while the DB was down"
        host.server.start()
        wait_for(
            lambda: not any((host.camera / name).exists() for name in pending),
            timeout=90,
            what="ingest to resume after the database came back",
        )
        stream.check_nothing_lost(final=True)
    finally:
        if host.server.process is None:
            host.server.start()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)


def test_slow_camera_writes_never_move_a_movie_before_it_is_whole(host, registered):
    host.write_config(settle_seconds=1)
    session, camera = registered["session"], registered["camera"]
    movies = {
        "20261126_200000_00.mrc": mrc_bytes(256, 256, 30, seed=71),
        "20261126_200001_00.tif": tiff_bytes(20, 256, 256, seed=72),
    }
    for name in movies:
        host.leginon.acquisition(session, camera, name.rsplit(".", 1)[0], "slow_" + name[16:17])
    finished: dict[str, float] = {}

    def write_slowly(name: str, data: bytes) -> None:
        rng = random.Random(name)
        cuts = sorted(rng.sample(range(1, len(data)), 4))
        with open(host.camera / name, "wb") as stream:
            start = 0
            for cut in [*cuts, len(data)]:
                stream.write(data[start:cut])
                stream.flush()
                start = cut
                if cut != len(data):
                    time.sleep(rng.uniform(1.6, 2.4))  # longer than the settle window
        finished[name] = time.time()

    daemon = start_daemon(host)
    try:
        writers = [threading.Thread(target=write_slowly, args=item) for item in movies.items()]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        wait_for(
            lambda: not any((host.camera / n).exists() for n in movies),
            timeout=60,
            what="both slow movies to be ingested",
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    import sqlite3

    connection = sqlite3.connect(host.journal)
    for name, data in movies.items():
        suffix = "mrc" if name.endswith(".mrc") else "tif"
        landed = host.buffer_folder() / f"slow_{name[16:17]}.frames.{suffix}"
        assert landed.read_bytes() == data
        (started,) = connection.execute(
            "SELECT copy_started_at FROM movies WHERE source_path LIKE ? AND state = 'done'",
            (f"%{name}",),
        ).fetchone()
        assert started >= finished[name], f"{name} copy started before the camera finished"
    connection.close()


def test_abandoned_incomplete_movie_goes_to_quarantine_whole(host, registered):
    """A camera program that died mid-movie leaves a truncated file: after the grace period it
    is quarantined as it is (never deleted, never named as a Leginon image)."""
    host.write_config(grace_minutes=0, unstructured_settle_seconds=2)
    host.leginon.acquisition(
        registered["session"], registered["camera"], "20261126_dead_00", "dead_1"
    )
    truncated = mrc_bytes(64, 64, 8, seed=5)[:20000]
    path = host.camera / "20261126_dead_00.mrc"
    path.write_bytes(truncated)
    os.utime(path, (time.time() - 600, time.time() - 600))
    daemon = start_daemon(host)
    try:
        wait_for(lambda: not path.exists(), timeout=30, what="the truncated movie to be moved")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    assert (host.quarantine / "k3-cam-01" / path.name).read_bytes() == truncated
    assert not list(host.buffer.rglob("dead_1*"))


def test_published_copy_is_kept_when_the_source_vanished_before_the_journal_caught_up(
    host, registered
):
    """Crash between publishing a copy and recording it, and the camera file removed by
    someone meanwhile: the buffer copy is the only one left, so it must stay in the books
    (hashed, in the archive backlog), never be written off as vanished."""
    import sqlite3

    from embuffer.journal import Journal
    from embuffer.safecopy.transfer import Transfer

    data = mrc_bytes(32, 32, 4, seed=9)
    dest = host.buffer_folder() / "lost_1.frames.mrc"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(data)
    journal = Journal(host.journal)
    movie_id = journal.insert_movie(
        camera="k3-cam-01",
        source_path=str(host.camera / "gone.mrc"),
        state="copying",
        target="buffer",
        dest_path=str(dest),
        rel_path=str(dest.relative_to(host.buffer)),
    )
    outcome = Transfer(journal, threading.Event()).recover(journal.movie(movie_id))
    assert outcome == "kept the published copy"
    assert dest.read_bytes() == data
    assert run_status_backlog(host) == 1
    connection = sqlite3.connect(host.journal)
    (state,) = connection.execute("SELECT state FROM movies WHERE id = ?", (movie_id,)).fetchone()
    connection.close()
    assert state == "done"
    assert main(["--config", str(host.config_path), "archive", "--once"]) == 0
    assert (host.primary / dest.relative_to(host.buffer)).read_bytes() == data


def run_status_backlog(host: BufferHost) -> int:
    from embuffer.config import load_config
    from embuffer.journal import Journal
    from embuffer.report.status import archive_status

    config = load_config(host.config_path)
    return archive_status(config, Journal(host.journal), time.time()).backlog_files
