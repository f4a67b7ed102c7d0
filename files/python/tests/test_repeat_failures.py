"""Every failure that repeats is bounded: one camera file costs a bounded amount of work.

A DE frames folder with a member whose name is too long for a partial name used to be
copied again, whole, at every poll for ever (12 GB of writes a minute from a 64 MiB folder).
Its members' names are now judged like top-level names, so it goes to quarantine once; and a
file whose copy fails with any other error of its own is copied at most HOLD_AFTER_FAILURES
times, with growing delays, then held on the camera share with its reason. Errors of the
whole buffer (ENOSPC) or of the whole share hold no file.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import CAMERA_HOST, BufferHost, make_host, register
from support.movies import mrc_bytes
from test_faults import wait_for
from test_metrics import collect_once
from test_planted_links import SERVICE_UID, unit_capabilities
from test_worker_resilience import running_ingest

from embuffer.cli import main
from embuffer.config import load_config
from embuffer.ingest import holds
from embuffer.ingest.odd_names import LONGEST_NAME_BYTES
from embuffer.report.metrics import collector as metrics
from embuffer.report.status import collect
from embuffer.safecopy import copy as safecopy
from embuffer.safecopy import transfer

MIB = 1 << 20
FRAMES = "20261126_170000_00.frames"
FRAMES_CLASH = "20261126_170500_00"
# sorted after the frames, so that a copy writes every frame before it reaches this member
LONG_MEMBER = "z" * (LONGEST_NAME_BYTES + 5) + ".txt"
# how long the service runs against the folder (the old code wrote GBs in this time)
WINDOW_SECONDS = 15.0


def frames_folder(host: BufferHost, registered: dict[str, int], frame_mib: int, last: str) -> Path:
    """A DE frames folder of 4 frames of `frame_mib` MiB each and a small member `last`,
    matched by a Leginon image, closed a minute ago."""
    host.leginon.acquisition(registered["session"], registered["camera"], FRAMES, "de_1")
    folder = host.camera / FRAMES
    folder.mkdir()
    members = [f"frame_{n:04d}.tif" for n in range(4)]
    for n, name in enumerate(members):
        (folder / name).write_bytes(os.urandom(frame_mib * MIB // 4) * 4 + bytes([n]))
    (folder / last).write_bytes(b"DE metadata\n")
    then = time.time() - 60
    for path in [*(folder / name for name in [*members, last]), folder]:
        os.utime(path, (then, then))
    return folder


# ---- case 1, as the services run: another uid with the unit's capabilities ---------------


@contextmanager
def loop_filesystem(mountpoint: Path, image: Path, size_mib: int) -> Iterator[Path]:
    """`mountpoint` on an ext4 filesystem of its own on a loop device; yields the device's
    /sys/block stat file, whose write counter is what the buffer's disk was asked to write."""
    with open(image, "wb") as stream:
        stream.truncate(size_mib * MIB)
    # no lazy init: the kernel's background writes of inode tables would count as ours
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(image)],
        check=True,
    )
    mounted = subprocess.run(
        ["mount", "-o", "loop", str(image), str(mountpoint)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a loop device: {mounted.stderr}")
    try:
        device = subprocess.run(
            ["findmnt", "-no", "SOURCE", str(mountpoint)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        yield Path("/sys/block") / Path(device).name / "stat"
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)
        image.unlink()


def bytes_written(stat_file: Path) -> int:
    os.sync()
    return int(stat_file.read_text().split()[6]) * 512  # sectors written, of 512 bytes


@pytest.fixture
def buffer_disk(mariadb) -> Iterator[tuple[BufferHost, dict[str, int], Path]]:
    """A buffer host whose buffer and quarantine lie on a disk of their own, its folders the
    service account's as the storage role makes them (test_planted_links.py)."""
    root = Path(tempfile.mkdtemp(prefix="embuffer-repeat-", dir="/var/tmp"))
    root.chmod(0o755)
    host, connection = make_host(root, mariadb)
    ids = register(host)
    try:
        with loop_filesystem(host.buffer.parent, root / "bufferdisk.img", 512) as stat_file:
            for folder in (host.buffer, host.quarantine):
                folder.mkdir()
            for folder in (host.buffer, host.quarantine, host.journal.parent, host.camera):
                os.chown(folder, SERVICE_UID, SERVICE_UID)
            os.chown(host.primary, SERVICE_UID, SERVICE_UID)
            yield host, ids, stat_file
    finally:
        connection.close()
        shutil.rmtree(root)


@contextmanager
def ingest_service(host: BufferHost) -> Iterator[subprocess.Popen[str]]:
    """`embuffer ingest`, the long-running service, as its own account and capabilities."""
    caps = unit_capabilities("ingest")
    command = [
        *("setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}", "--clear-groups"),
        *(f"--inh-caps={caps}", f"--ambient-caps={caps}", f"--bounding-set={caps}", "--"),
        *(
            sys.executable,
            "-c",
            "import sys; from embuffer.cli import main; sys.exit(main(sys.argv[1:]))",
        ),
        *("--config", str(host.config_path), "ingest"),
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    service = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        yield service
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=60)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


def test_a_frames_folder_with_a_member_name_too_long_is_quarantined_once(buffer_disk):
    host, ids, disk = buffer_disk
    host.write_config(settle_seconds=0.5)
    folder = frames_folder(host, ids, 16, LONG_MEMBER)  # 64 MiB of frames
    frames = {path.name: path.read_bytes() for path in folder.iterdir()}

    before = bytes_written(disk)
    with ingest_service(host) as service:
        time.sleep(WINDOW_SECONDS)
        written = bytes_written(disk) - before
        assert service.poll() is None, service.stderr.read() if service.stderr else ""
    print(f"buffer disk: {written / MIB:.1f} MiB written in {WINDOW_SECONDS:.0f} s")

    assert written < 2 * 64 * MIB, f"{written / MIB:.0f} MiB written for a 64 MiB folder"
    assert not folder.exists(), "the folder left the camera share"
    [kept] = (host.quarantine / CAMERA_HOST).iterdir()
    assert kept.name.startswith("unnamed-") and kept.name.endswith(".frames")
    stored = {path.name: path.read_bytes() for path in kept.iterdir()}
    assert sorted(stored.values()) == sorted(frames.values()), "every member kept, whole"
    assert LONG_MEMBER not in stored and all(len(name) <= LONGEST_NAME_BYTES for name in stored)
    connection = sqlite3.connect(host.journal)
    try:
        [(reason,)] = connection.execute(
            "SELECT reason FROM movies WHERE state = 'quarantined' AND kind = 'dir'"
        ).fetchall()
        errors = connection.execute("SELECT COUNT(*) FROM events WHERE action = 'error'")
        assert errors.fetchone() == (0,)
    finally:
        connection.close()
    assert LONG_MEMBER in reason, "the original member name is recorded"
    assert not any(host.buffer.rglob("*.tif")), "nothing of it on the buffer"


# ---- any error of the file's own: growing delays, then a hold ----------------------------


def failing_member(
    monkeypatch: pytest.MonkeyPatch, member: str, error: Callable[[], int]
) -> list[int]:
    """The copy of `member` fails with errno `error()` (read at each try), after the members
    before it were copied; returns the list of bytes each member copy wrote."""
    written: list[int] = []
    original = safecopy.copy_file

    def copy_file(source: Path, final: Path, *args: Any, **kwargs: Any) -> safecopy.CopyResult:
        if source.name == member:
            number = error()
            raise OSError(number, os.strerror(number), str(source))
        result = original(source, final, *args, **kwargs)
        written.append(result.size)
        return result

    monkeypatch.setattr(safecopy, "copy_file", copy_file)
    return written


@pytest.mark.parametrize(
    "number", [errno.EIO, errno.EACCES, errno.ENAMETOOLONG, errno.EINVAL, errno.ESTALE]
)
def test_a_file_failing_with_any_errno_is_copied_a_bounded_number_of_times_then_held(
    host, registered, monkeypatch, number
):
    monkeypatch.setattr(holds, "FIRST_RETRY_SECONDS", 0.05)  # 0.05, 0.1, 0.2, 0.4 s
    host.write_config(settle_seconds=0.3)
    folder = frames_folder(host, registered, 1, "zz_info.txt")
    frames_bytes = sum(path.stat().st_size for path in folder.glob("frame_*"))
    written = failing_member(monkeypatch, "zz_info.txt", lambda: number)

    with running_ingest(host) as journal:
        wait_for(lambda: any(h.held_since for h in holds.failing_files(journal)), 30, "the hold")
        time.sleep(4.0)  # dozens of passes: a held file is not tried again before its delay
        config = load_config(host.config_path)
        [camera] = collect(config, journal).cameras
        scrape = collect_once(metrics.JournalCollector(config))

    copies = sum(written) / frames_bytes  # every try copies the frames, then fails
    assert copies <= holds.HOLD_AFTER_FAILURES, f"copied {copies:.1f} times"
    [held] = camera.held
    assert held["file"] == str(folder) and held["failures"] == holds.HOLD_AFTER_FAILURES
    assert os.strerror(number) in held["error"], held["error"]
    assert scrape.value("embuffer_held_files", camera=CAMERA_HOST) == 1
    assert len(list(folder.iterdir())) == 5, "the folder stays on the camera share, whole"


def test_a_full_buffer_or_a_vanished_share_holds_no_file(host, registered, monkeypatch):
    monkeypatch.setattr(holds, "FIRST_RETRY_SECONDS", 0.05)
    host.write_config(settle_seconds=0.3)
    frames_folder(host, registered, 1, "zz_info.txt")
    share, away = host.camera, host.camera.with_name("camera-away")
    errors = iter([errno.ENOSPC] * 3 + [errno.EIO])  # then EIO, the file's own

    def next_error() -> int:
        number = next(errors, None)
        if number == errno.EIO:
            share.rename(away)  # the share goes away mid-copy: every file would fail
        return errno.EIO if number is None else number

    failing_member(monkeypatch, "zz_info.txt", next_error)
    with running_ingest(host) as journal:
        wait_for(lambda: away.exists(), 60, "the camera share to go away")
        time.sleep(2.0)
        assert holds.failing_files(journal) == [], "a buffer or share error held a file"
        away.rename(share)  # back: now the folder's own error counts
        wait_for(lambda: any(h.held_since for h in holds.failing_files(journal)), 60, "the hold")
    assert (share / FRAMES / "zz_info.txt").exists()


def test_no_room_to_quarantine_a_clashing_copy_is_a_room_wait_not_a_failure(
    host, registered, monkeypatch
):
    host.write_config(reserve_percent=99)  # quarantine stops at once; placed movies do not
    host.leginon.acquisition(registered["session"], registered["camera"], FRAMES_CLASH, "clash_1")
    source = host.camera / f"{FRAMES_CLASH}.mrc"
    source.write_bytes(mrc_bytes(8, 8, 2, seed=9))
    os.utime(source, (time.time() - 60, time.time() - 60))
    original = transfer.finish_partial

    def finish_partial(dest: Path, partial: Path) -> None:
        dest.write_bytes(b"another file took the name meanwhile")
        original(dest, partial)

    monkeypatch.setattr(transfer, "finish_partial", finish_partial)
    assert main(["--config", str(host.config_path), "ingest", "--once"]) in (0, 1)

    connection = sqlite3.connect(host.journal)
    try:
        actions = [a for (a,) in connection.execute("SELECT action FROM events")]
        [(reason,)] = connection.execute("SELECT reason FROM movies").fetchall()
        held = connection.execute("SELECT * FROM held_files").fetchall()
    finally:
        connection.close()
    assert "unexpected_error" not in actions and actions.count("no_room") == 1, actions
    assert reason.startswith("no room: quarantine stopped at the reserve"), reason
    assert held == [] and source.exists()
