"""The walk that no planted link can redirect (embuffer.nofollow), piece by piece.

Who may have planted a link is told by the folder it sits in: root's or the service's own
folders that nobody else can write are trusted (an administrator's `/data -> /srv/data`);
a folder of another account, or one that a group or everyone can write, is not.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from embuffer.safecopy import nofollow

OTHER_UID = 1000  # an account that is neither root nor the test (the session owner)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="hands folders to other accounts")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    return tmp_path


def user_folder(path: Path, mode: int = 0o755) -> Path:
    path.mkdir(mode=mode)
    path.chmod(mode)
    os.chown(path, OTHER_UID, OTHER_UID)
    return path


def test_a_link_in_a_folder_only_root_can_write_is_followed(root):
    (root / "real").mkdir()
    (root / "real" / "movie.mrc").write_bytes(b"frames")
    (root / "data").symlink_to(root / "real")  # the administrator's link
    fd = nofollow.open_file(root / "data" / "movie.mrc")
    try:
        assert os.read(fd, 100) == b"frames"
    finally:
        os.close(fd)
    (root / "relative").symlink_to("real")
    os.close(nofollow.open_folder(root / "relative"))
    assert not nofollow.is_folder(root / "relative"), "a link is never a folder of its own"


@pytest.mark.parametrize(
    "how",
    ["another account's folder", "a group-writable folder", "a world-writable sticky folder"],
)
def test_a_link_where_others_can_write_is_refused(root, how):
    victim = root / "victim"
    victim.write_bytes(b"state")
    if how == "another account's folder":
        folder = user_folder(root / "session")
    else:
        folder = root / "shared"
        folder.mkdir()
        folder.chmod(0o2775 if how == "a group-writable folder" else 0o1777)
    (folder / "reference_list.txt").symlink_to(victim)
    (folder / "rawdata").symlink_to(root)

    with pytest.raises(nofollow.PlantedLink, match="rawdata"):
        nofollow.open_folder(folder / "rawdata")
    with pytest.raises(OSError):  # the last component: O_NOFOLLOW
        nofollow.open_file(folder / "reference_list.txt", os.O_WRONLY | os.O_APPEND)
    with pytest.raises(nofollow.PlantedLink):
        nofollow.open_file(folder / "rawdata" / "victim")
    assert victim.read_bytes() == b"state"


def test_dot_dot_is_read_from_the_text_or_from_a_trusted_link_only(root):
    (root / "real").mkdir()
    (root / "sub").mkdir()
    (root / "sub" / "back").symlink_to("../real")  # root's link, root's folder
    os.close(nofollow.open_folder(root / "sub" / "back"))
    folder = user_folder(root / "session")
    (folder / "rawdata").mkdir()
    # ".." in a path given to the walk is taken from the text (where the owner has moved
    # rawdata to does not matter), never walked up from a folder the owner controls
    os.rename(folder / "rawdata", folder / "moved")
    (folder / "moved" / "deeper").mkdir()
    fd = nofollow.open_folder(folder / "rawdata" / ".." / "moved")
    try:
        assert os.fstat(fd).st_ino == (folder / "moved").stat().st_ino
    finally:
        os.close(fd)
    (folder / "back").symlink_to("../real")
    with pytest.raises(nofollow.PlantedLink):
        nofollow.open_folder(folder / "back")


def test_missing_folders_are_made_owned_through_their_descriptor(root):
    made: list[int] = []

    def hand_over(fd: int) -> None:
        os.fchown(fd, OTHER_UID, OTHER_UID)
        made.append(fd)

    fd = nofollow.open_folder(root / "a" / "b", create_mode=0o2775, on_create=hand_over)
    os.close(fd)
    assert len(made) == 2
    assert (root / "a" / "b").stat().st_uid == OTHER_UID
    # A folder that turns into a link between mkdir and open is not handed over.
    real_mkdir = os.mkdir

    def mkdir(path, mode=0o777, *, dir_fd=None):
        real_mkdir(path, mode, dir_fd=dir_fd)
        os.rmdir(path, dir_fd=dir_fd)
        os.symlink(str(root), path, dir_fd=dir_fd)

    os.mkdir = mkdir
    try:
        with pytest.raises(OSError):
            nofollow.open_folder(root / "c", create_mode=0o2775, on_create=hand_over)
    finally:
        os.mkdir = real_mkdir
    assert root.stat().st_uid == 0 and len(made) == 2


def test_a_fifo_under_a_file_name_neither_hangs_nor_opens(root):
    os.mkfifo(root / "movie.mrc")
    result: list[BaseException] = []

    def opener() -> None:
        try:
            nofollow.open_file(root / "movie.mrc")
        except BaseException as error:  # noqa: BLE001 - handed to the test
            result.append(error)

    thread = threading.Thread(target=opener, daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive(), "opening a FIFO hung"
    assert isinstance(result[0], nofollow.NotRegularFile)


def test_temporary_names_are_new_files_never_existing_ones(root, monkeypatch):
    victim = root / "victim"
    victim.write_bytes(b"state")
    guesses = iter(["0000000000000000", "0000000000000000", "1111111111111111"])
    monkeypatch.setattr(nofollow.secrets, "token_hex", lambda _n: next(guesses))
    (root / ".movie.0000000000000000.part").symlink_to(victim)  # a name guessed right
    with nofollow.folder(root) as folder_fd:
        fd, name = nofollow.create_temporary(folder_fd, ".movie.", ".part")
        os.write(fd, b"copy")
        os.close(fd)
    assert name == ".movie.1111111111111111.part"
    assert victim.read_bytes() == b"state"
    info = (root / name).stat()
    assert stat.S_IMODE(info.st_mode) == 0o600


def test_remove_takes_the_link_or_the_tree_never_what_they_point_to(root):
    keep = root / "keep"
    keep.mkdir()
    (keep / "movie.mrc").write_bytes(b"frames")
    (root / "link").symlink_to(keep)
    nofollow.remove(root / "link")
    tree = root / "partial"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "inner").symlink_to(keep)
    (tree / "sub" / "member.tif").write_bytes(b"x")
    assert nofollow.regular_files(tree) == [Path("sub/member.tif")]
    nofollow.remove(tree)
    assert not os.path.lexists(root / "link") and not tree.exists()
    assert (keep / "movie.mrc").read_bytes() == b"frames"
    nofollow.remove(root / "never-there")  # missing_ok by default
    with pytest.raises(FileNotFoundError):
        nofollow.remove(root / "never-there", missing_ok=False)
