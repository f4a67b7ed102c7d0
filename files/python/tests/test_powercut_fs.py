"""The power-cut filesystem itself (support/powercut_fs.py): after a cut only what was synced
is there, exactly as its model says, and the cut stops the program that caused it."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.powercut_fs import Model, Server
from test_powercut import fuse_missing

pytestmark = pytest.mark.powercut

NEVER = 10**9  # a cut point that never comes: the unmount is then the power cut


class Disk:
    """A mount of the power-cut filesystem that can lose power and come back."""

    def __init__(self, folder: Path) -> None:
        self.mount = folder / "mnt"
        self.mount.mkdir()
        self.log = folder / "points.log"
        self.server = Server(self.mount, folder / "device.img", self.log)

    def on(self, cut_at: int | None = NEVER) -> Path:
        self.server.start(cut_at=cut_at)
        return self.mount

    def cut(self) -> Path:
        """Power off (what is still open here fails from now on), then on again."""
        with pytest.raises(OSError):
            os.stat(self.mount / ".powercut-cut-now")
        self.server.stop()
        return self.on()

    def off(self) -> None:
        self.server.stop()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    reason = fuse_missing()
    if reason:
        pytest.skip(reason)
    disk = Disk(tmp_path)
    disk.on()
    yield disk
    disk.off()


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: Path, data: bytes, *, sync: bool = False) -> None:
    with open(path, "wb") as stream:
        stream.write(data)
        if sync:
            stream.flush()
            os.fsync(stream.fileno())


def test_a_write_without_fsync_is_gone_after_a_cut(disk):
    root = disk.mount
    write(root / "kept", b"synced", sync=True)
    fsync(root)
    with open(root / "kept", "ab") as stream:
        stream.write(b" and more")  # never synced
    write(root / "named", b"data never synced")
    fsync(root)  # its name is durable, its data is not
    write(root / "unnamed", b"never synced at all")
    root = disk.cut()
    assert (root / "kept").read_bytes() == b"synced"
    assert (root / "named").read_bytes() == b""  # the harsh side: an empty file
    assert not (root / "unnamed").exists()


def test_fsync_of_a_file_keeps_its_data_but_not_its_name(disk):
    root = disk.mount
    (root / "folder").mkdir()
    fsync(root)
    write(root / "folder" / "movie", b"frames", sync=True)
    root = disk.cut()
    assert (root / "folder").is_dir()
    assert not (root / "folder" / "movie").exists()

    write(root / "folder" / "movie", b"frames", sync=True)
    fsync(root / "folder")
    root = disk.cut()
    assert (root / "folder" / "movie").read_bytes() == b"frames"


def test_rename_link_and_unlink_last_only_once_their_folder_is_synced(disk):
    root = disk.mount
    for name in ("renamed", "linked", "removed"):
        write(root / name, name.encode(), sync=True)
    fsync(root)
    os.rename(root / "renamed", root / "renamed-new")
    os.link(root / "linked", root / "linked-new")
    os.unlink(root / "removed")
    root = disk.cut()  # may go either way on a real disk: here always the harsh way
    assert sorted(p.name for p in root.iterdir()) == ["linked", "removed", "renamed"]
    assert (root / "removed").read_bytes() == b"removed"  # an unlink can come undone

    os.rename(root / "renamed", root / "renamed-new")
    os.link(root / "linked", root / "linked-new")
    os.unlink(root / "linked")
    os.unlink(root / "removed")
    fsync(root)
    root = disk.cut()
    assert sorted(p.name for p in root.iterdir()) == ["linked-new", "renamed-new"]
    assert (root / "linked-new").read_bytes() == b"linked"
    assert os.stat(root / "linked-new").st_nlink == 1


def test_a_new_folder_needs_its_parent_synced_and_its_own_names_need_it_synced(disk):
    root = disk.mount
    (root / "a" / "b").mkdir(parents=True)
    fsync(root)  # "a" is durable, "a/b" is not: a's own list was never synced
    root = disk.cut()
    assert (root / "a").is_dir() and not (root / "a" / "b").exists()


def test_chmod_and_chown_last_only_after_a_sync_of_the_file_or_its_folder(disk):
    root = disk.mount
    write(root / "f", b"x", sync=True)
    fsync(root)
    os.chmod(root / "f", 0o600)
    os.chown(root / "f", 1234, 5678)
    root = disk.cut()
    info = os.stat(root / "f")
    assert (info.st_mode & 0o777, info.st_uid) == (0o644 & ~current_umask(), 0)

    os.chmod(root / "f", 0o600)
    os.chown(root / "f", 1234, 5678)
    fsync(root)
    root = disk.cut()
    info = os.stat(root / "f")
    assert (info.st_mode & 0o777, info.st_uid, info.st_gid) == (0o600, 1234, 5678)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_sync_and_a_clean_unmount_make_everything_durable(disk):
    root = disk.mount
    write(root / "by-sync", b"synced by sync()")
    assert not (root / ".powercut-sync-1").exists()  # the control name: syncfs for this disk
    write(root / "after", b"too late")
    root = disk.cut()
    assert (root / "by-sync").read_bytes() == b"synced by sync()"
    assert not (root / "after").exists()

    disk.off()
    root = disk.on(cut_at=None)  # no cut point: this boot ends in a clean shutdown
    write(root / "at-shutdown", b"written back by the unmount")
    disk.off()
    root = disk.on()
    assert (root / "at-shutdown").read_bytes() == b"written back by the unmount"


def test_the_cut_stops_the_program_before_its_request_and_fails_every_later_one(disk, tmp_path):
    disk.off()
    mount = disk.on(cut_at=3)  # cut points: create, fsync (1, 2), then the second fsync
    program = textwrap.dedent(f"""
        import os
        fd = os.open({str(mount / "f")!r}, os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b"first")
        os.fsync(fd)
        os.write(fd, b" second")
        os.fsync(fd)
        print("not reached")
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done
    assert b"not reached" not in done.stdout
    with pytest.raises(OSError):
        (mount / "g").write_bytes(b"after the cut")
    assert disk.log.read_text().splitlines()[-1].startswith("CUT 3 ")
    disk.off()
    image = Model.load(disk.server.image)
    assert [name for name in image.nodes[1].entries] == []  # its name was never synced
    assert not any(bytes(node.data) == b"first" for node in image.durable.values())
    root = disk.on()
    assert list(root.iterdir()) == []


def test_sqlite_in_wal_mode_keeps_exactly_the_synced_commits(disk):
    """What the journal relies on: synchronous=NORMAL commits reach the device only when
    the WAL is fsynced (Journal.make_durable); FULL commits at once."""
    root = disk.mount
    path = root / "journal.sqlite"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE t (x)")
    connection.execute("INSERT INTO t VALUES ('full')")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("INSERT INTO t VALUES ('normal, then synced')")
    fsync(Path(f"{path}-wal"))
    connection.execute("INSERT INTO t VALUES ('normal, never synced')")
    with pytest.raises(OSError):  # the power goes while the connection is still open
        os.stat(root / ".powercut-cut-now")
    with contextlib.suppress(sqlite3.Error):
        connection.close()  # fails: nothing it would checkpoint reaches the device
    disk.off()
    root = disk.on()
    connection = sqlite3.connect(root / "journal.sqlite")
    rows = [row[0] for row in connection.execute("SELECT x FROM t")]
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    connection.close()
    assert rows == ["full", "normal, then synced"]
