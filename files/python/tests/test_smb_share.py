"""The SMB camera share rig (support/smb_share.py): what goes through the mount reaches a
real Samba server and is counted there, and embuffer's ingest takes a movie from it."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BufferHost
from support.movies import mrc_bytes
from support.smb_share import CACHE_SECONDS, SmbCameraShare, parse_profile, unavailable_reason
from test_ingest import digest, drop, ingest_once, journal_rows

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


@pytest.fixture
def share(tmp_path: Path) -> Iterator[SmbCameraShare]:
    with SmbCameraShare(tmp_path / "smb") as started:
        yield started


@pytest.fixture
def smb_camera(host: BufferHost, tmp_path: Path) -> Iterator[SmbCameraShare]:
    """The buffer host's camera folder served by its own smbd, the config pointing at the
    mount: the test drops files in `host.camera` (the camera PC's disk), embuffer reads
    them through SMB."""
    with SmbCameraShare(tmp_path / "smb", served=host.camera) as started:
        started.route_config(host.config_path)
        yield started


def wait_until(predicate, timeout: float, what: str) -> float:
    """Seconds until predicate() held."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"no {what} after {timeout:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - start


def test_listing_stat_and_open_through_the_mount_are_answered_by_the_server(share):
    (share.served / "a.mrc").write_bytes(b"m" * 4096)
    (share.served / "b.mrc").write_bytes(b"n" * 10)
    before = share.quiet_request_counts()
    assert sorted(os.listdir(share.camera)) == ["a.mrc", "b.mrc"]
    listed = share.quiet_request_counts() - before
    assert listed["find"] >= 1 and listed["create"] >= 1

    # two stats in a row: the second is answered from the client's 1-second cache
    assert os.stat(share.camera / "a.mrc").st_size == 4096
    assert os.stat(share.camera / "a.mrc").st_size == 4096
    stated = share.quiet_request_counts() - before - listed
    assert stated["getinfo"] == 1 and stated["create"] == 1 and stated["close"] == 1

    time.sleep(CACHE_SECONDS * 1.5)
    with open(share.camera / "b.mrc", "rb") as stream:
        assert stream.read() == b"n" * 10
    opened = share.quiet_request_counts() - before - listed - stated
    assert opened["read"] >= 1 and opened["create"] >= 1 and opened["close"] >= 1
    assert opened.total == sum(opened.nonzero().values()) > 0


def test_changes_on_either_side_show_on_the_other(share):
    server_copy = share.served / "movie.mrc"
    server_copy.write_bytes(b"x" * 100)
    assert os.stat(share.camera / "movie.mrc").st_size == 100
    with open(server_copy, "ab") as stream:  # the camera PC goes on writing
        stream.write(b"y" * 200)
    # seen through SMB once the client's attribute cache has expired
    wait_until(
        lambda: os.stat(share.camera / "movie.mrc").st_size == 300, 3 * CACHE_SECONDS, "new size"
    )
    assert (share.camera / "movie.mrc").read_bytes() == b"x" * 100 + b"y" * 200

    (share.camera / "written-by-client.bin").write_bytes(b"z" * 70000)
    assert (share.served / "written-by-client.bin").read_bytes() == b"z" * 70000
    os.unlink(share.camera / "movie.mrc")
    assert not server_copy.exists()


class Boom(Exception):
    pass


def test_leaving_the_share_after_a_failure_unmounts_and_stops_every_process(tmp_path):
    share = SmbCameraShare(tmp_path / "smb")
    with pytest.raises(Boom), share:
        groups = share.process_groups()
        assert all(live_members(group) for group in groups)
        (share.camera / "held-open.mrc").write_bytes(b"x")
        held = open(share.camera / "held-open.mrc", "rb")  # noqa: SIM115 - open on purpose
        raise Boom
    with contextlib.suppress(OSError):  # its filesystem is gone
        held.close()
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    assert not any(line.split()[1] == str(share.mountpoint) for line in mounts)
    assert not any(live_members(group) for group in groups)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", share.port)) != 0


def live_members(group: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def test_profile_parser_reads_the_smb2_counters():
    text = (
        "request_count:      99\n"
        "smb2_create_count:      12\nsmb2_create_time:     400\n"
        "smb2_getinfo_count:      5\nsmb2_find_count:         0\n"
        "smb2_read_count:         2\nsmb2_read_outbytes:    8192\n"
    )
    counts = parse_profile(text)
    assert counts.nonzero() == {"create": 12, "getinfo": 5, "read": 2}
    assert counts.total == 19 and counts["write"] == 0 and counts.bytes_read == 8192
    assert (counts - parse_profile("smb2_read_count: 1\nsmb2_read_outbytes: 100\n")).nonzero() == {
        "create": 12,
        "getinfo": 5,
        "read": 1,
    }


def test_ingest_moves_a_matched_movie_off_the_smb_share_verified(host, registered, smb_camera):
    session, camera = registered["session"], registered["camera"]
    host.leginon.acquisition(session, camera, "20261126_101500_01", "smb_00001en")
    data = drop(host.camera / "20261126_101500_01.mrc", mrc_bytes(64, 64, 8, seed=21))
    waiting = drop(host.camera / "20261126_999999_00.mrc", mrc_bytes(8, 8, 1, seed=22))
    before = smb_camera.quiet_request_counts()

    assert ingest_once(host) == 0

    landed = host.buffer_folder() / "smb_00001en.frames.mrc"
    assert landed.read_bytes() == data
    assert not (host.camera / "20261126_101500_01.mrc").exists()
    assert (host.camera / "20261126_999999_00.mrc").read_bytes() == waiting  # no image: waits
    done = journal_rows(host, "state = 'done'")
    assert [row["hash"] for row in done] == [digest(data)]
    assert str(smb_camera.camera) in str(done[0]["source_path"])
    used = smb_camera.quiet_request_counts() - before
    assert used.bytes_read >= len(data)  # the copy read the movie through SMB
