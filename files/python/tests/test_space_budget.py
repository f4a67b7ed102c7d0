"""Quarantine cannot fill the buffer: a reserve is kept for movies that have a place.

Files that match no Leginon image (a mistyped camera host name sends a whole session there)
used to go to quarantine until the buffer filesystem was full, and the next real movie then
failed with ENOSPC and stayed on the camera share. Here the buffer (or quarantine) is a small
filesystem of its own and the services run as in production (another uid with the role's
capabilities, test_planted_links.py): quarantine stops at the reserve, the unmatched files
wait on the camera share, matched movies keep flowing, `embuffer status` and the metrics
name the cause, and staff release or remove quarantined files with evidence.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import tmpfs
from prometheus_client.parser import text_string_to_metric_families
from support.movies import mrc_bytes
from test_ingest import drop
from test_planted_links import SERVICE_UID, Site
from test_planted_links import site as planted_site  # noqa: F401 - the fixture, by this name

MIB = 1 << 20
UNMATCHED = 30
UNMATCHED_FRAMES = (512, 512, 2)  # 512 KiB of int8 voxels and the 1 KiB header
MOVIE_FRAMES = (1024, 768, 2)  # 1.5 MiB


def unmatched_names(count: int) -> list[str]:
    """Frames names no Leginon row has: as if the camera's host name were mistyped."""
    return [f"20261126_12{index // 60:02d}{index % 60:02d}_07.mrc" for index in range(count)]


def drop_unmatched(site: Site, count: int = UNMATCHED) -> None:
    for index, name in enumerate(unmatched_names(count)):
        drop(site.host.camera / name, mrc_bytes(*UNMATCHED_FRAMES, seed=100 + index), 120)


def drop_movie(site: Site, frames_name: str, filename: str, seed: int) -> bytes:
    site.host.leginon.acquisition(site.ids["session"], site.ids["camera"], frames_name, filename)
    return drop(site.host.camera / f"{frames_name}.mrc", mrc_bytes(*MOVIE_FRAMES, seed=seed), 60)


def as_staff(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    """An `embuffer` command as a person runs it (sudo -u the service account): its uid, no
    capability at all."""
    command = [
        "setpriv",
        f"--reuid={SERVICE_UID}",
        f"--regid={SERVICE_UID}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
        sys.executable,
        "-c",
        "import sys; from embuffer.cli import main; sys.exit(main(sys.argv[1:]))",
        "--config",
        str(site.host.config_path),
        *args,
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def configure(site: Site, reserve_percent: float | None = None) -> None:
    """Unmatched files go to quarantine at once (no grace); the default reserve unless given."""
    site.host.write_config(grace_minutes=0, reserve_percent=reserve_percent)
    os.chown(site.host.credentials, SERVICE_UID, SERVICE_UID)  # 0600, the account's (the role)


@contextmanager
def own_filesystem(folder: Path, size: str) -> Iterator[Path]:
    """`folder` on a small filesystem of its own, the service's as the storage role makes it."""
    with tmpfs(folder, size):
        os.chown(folder, SERVICE_UID, SERVICE_UID)
        folder.chmod(0o755)
        yield folder


@pytest.fixture
def small_buffer(request: pytest.FixtureRequest) -> Iterator[Site]:
    """Buffer root and quarantine together on one 16 MiB filesystem."""
    site: Site = request.getfixturevalue("planted_site")
    data = site.host.buffer.parent
    with tmpfs(data, "16m"):
        for folder in (site.host.buffer, site.host.quarantine):
            folder.mkdir()
            os.chown(folder, SERVICE_UID, SERVICE_UID)
        yield site


@pytest.fixture
def small_quarantine(request: pytest.FixtureRequest) -> Iterator[Site]:
    """Quarantine on an 8 MiB filesystem of its own; the buffer on the test's disk."""
    site: Site = request.getfixturevalue("planted_site")
    with own_filesystem(site.host.quarantine, "8m"):
        yield site


def rows(site: Site, where: str = "1") -> list[dict[str, object]]:
    connection = sqlite3.connect(site.host.journal)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in connection.execute(f"SELECT * FROM movies WHERE {where}")]
    finally:
        connection.close()


def figures(site: Site, folder: Path) -> dict[str, object]:
    usage = shutil.disk_usage(folder)
    return {
        "used_percent": round(100.0 * usage.used / usage.total, 1),
        "free_bytes": usage.free,
        "quarantined": len(rows(site, "state = 'quarantined'")),
        "waiting_on_camera": len([p for p in site.host.camera.iterdir() if "_07" in p.name]),
        "enospc_errors": sum("No space left" in d for d in site.journal_events("error")),
    }


def metrics(site: Site) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    target = site.state / "embuffer.prom"
    result = as_staff(site, "metrics", "textfile", str(target), "--once")
    assert result.returncode == 0, result.stderr[-2000:]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(target.read_text())
        for sample in family.samples
    }


def test_quarantine_stops_at_the_reserve_and_matched_movies_keep_flowing(small_buffer):
    site = small_buffer
    configure(site)  # the default reserve, 10 %: as an upgraded site would run
    drop_unmatched(site)
    site.as_service("ingest", "--once")
    before_movie = figures(site, site.host.buffer)
    data = drop_movie(site, "20261126_130000_00", "real_a", seed=1)
    site.as_service("ingest", "--once")
    after = figures(site, site.host.buffer)
    print(f"\nbefore the movie: {before_movie}\nafter the movie: {after}")

    # the real movie went, whole, and left the camera share
    landed = site.host.buffer_folder() / "real_a.frames.mrc"
    assert landed.exists() and landed.read_bytes() == data, after
    assert not (site.host.camera / "20261126_130000_00.mrc").exists()
    # quarantine stopped before the reserve; the rest wait on the camera share, none lost
    assert before_movie["free_bytes"] >= 0.10 * 16 * MIB
    assert 0 < after["waiting_on_camera"] < UNMATCHED
    assert after["quarantined"] + after["waiting_on_camera"] == UNMATCHED
    assert after["enospc_errors"] == 0
    waiting = rows(site, "reason LIKE 'no room: quarantine%'")
    assert len(waiting) == after["waiting_on_camera"]
    assert len(site.journal_events("no_room")) == len(waiting)  # once per file, not per look

    status = as_staff(site, "status")
    assert status.returncode == 0, status.stderr
    assert f"QUARANTINE STOPPED at the reserve: {len(waiting)} unmatched file(s)" in status.stdout
    assert f"quarantine {site.host.quarantine}: {after['quarantined']} files" in status.stdout
    samples = metrics(site)
    key = (("camera", "k3-cam-01"), ("kind", "quarantine"))
    assert samples[("embuffer_files_waiting_for_room", key)] == len(waiting)
    assert samples[("embuffer_quarantine_oldest_age_seconds", ())] > 0


def test_a_movie_that_cannot_fit_waits_with_its_reason_and_is_not_started(small_buffer):
    site = small_buffer
    configure(site)
    filler = site.host.buffer / "filler.bin"  # another user of the filesystem, say
    filler.write_bytes(b"\0" * (15 * MIB))
    data = drop_movie(site, "20261126_140000_00", "real_b", seed=2)
    site.as_service("ingest", "--once")
    site.as_service("ingest", "--once")

    assert (site.host.camera / "20261126_140000_00.mrc").read_bytes() == data
    assert not site.host.buffer_folder().exists() or not any(site.host.buffer_folder().iterdir())
    assert site.journal_events("error") == []  # waiting, not failing at every poll
    [row] = rows(site)
    assert str(row["reason"]).startswith("no room: the movie does not fit"), row
    assert "BUFFER FULL: 1 placed movie(s)" in as_staff(site, "status").stdout

    filler.unlink()  # room again: it goes by itself
    site.as_service("ingest", "--once")
    assert (site.host.buffer_folder() / "real_b.frames.mrc").read_bytes() == data
    assert rows(site)[0]["reason"] is None


def test_quarantine_on_its_own_filesystem_is_judged_there(small_quarantine):
    site = small_quarantine
    configure(site, reserve_percent=25)
    drop_unmatched(site, 20)
    data = drop_movie(site, "20261126_150000_00", "real_c", seed=3)
    site.as_service("ingest", "--once")

    usage = shutil.disk_usage(site.host.quarantine)
    assert usage.free >= 0.25 * usage.total  # stopped at its own filesystem's reserve
    assert (site.host.buffer_folder() / "real_c.frames.mrc").read_bytes() == data
    quarantined = rows(site, "state = 'quarantined'")
    waiting = [p for p in site.host.camera.iterdir() if "_07" in p.name]
    assert quarantined and waiting and len(quarantined) + len(waiting) == 20
    assert "filesystem of quarantine" in as_staff(site, "status").stdout


def test_staff_release_or_remove_quarantined_files_with_evidence(small_quarantine):
    site = small_quarantine
    configure(site, reserve_percent=25)
    drop_unmatched(site, 20)
    site.as_service("ingest", "--once")
    first, second = rows(site, "state = 'quarantined' ORDER BY id")[:2]
    waiting_before = len([p for p in site.host.camera.iterdir() if "_07" in p.name])

    refused = as_staff(site, "quarantine", "remove", str(second["id"]))
    assert "a reason is required" in refused.stderr
    assert refused.returncode != 0 and Path(str(second["dest_path"])).exists()

    outside = site.host.root / "released"
    outside.mkdir()
    os.chown(outside, SERVICE_UID, SERVICE_UID)
    released = as_staff(
        site, "quarantine", "release", str(first["id"]), "--to", str(outside), "--by", "anna"
    )
    assert released.returncode == 0, released.stderr
    moved = outside / Path(str(first["dest_path"])).name
    assert moved.stat().st_size == first["size"] and not Path(str(first["dest_path"])).exists()
    removed = as_staff(
        site, "quarantine", "remove", str(second["id"]), "--reason", "test pattern", "--by", "bo"
    )
    assert removed.returncode == 0, removed.stderr
    assert not Path(str(second["dest_path"])).exists()

    by_id = {row["id"]: row for row in rows(site)}
    kept = json.loads(str(by_id[first["id"]]["purge_evidence"]))
    assert by_id[first["id"]]["state"] == "released"
    assert (kept["to"], kept["hash"], kept["by"]) == (str(moved), first["hash"], "anna")
    gone = json.loads(str(by_id[second["id"]]["purge_evidence"]))
    assert by_id[second["id"]]["state"] == "removed"
    assert gone["path"] == second["dest_path"] and gone["hash_found"] == second["hash"]
    assert (gone["size"], gone["by"], gone["why"]) == (second["size"], "bo", "test pattern")
    assert gone["at"] > 0 and len(site.journal_events("quarantine_removed")) == 1

    site.as_service("ingest", "--once")  # the room they freed takes the files that waited
    waiting_after = len([p for p in site.host.camera.iterdir() if "_07" in p.name])
    assert waiting_after < waiting_before


def test_a_release_into_quarantine_itself_is_refused_and_keeps_the_file(small_quarantine):
    site = small_quarantine
    configure(site)
    drop_unmatched(site, 2)
    site.as_service("ingest", "--once")
    [first, second] = rows(site, "state = 'quarantined' ORDER BY id")
    kept = Path(str(first["dest_path"]))
    data = kept.read_bytes()

    # the file itself (a folder holding it becomes that same path), the quarantine folder,
    # another name inside it, a hard link to the file, and quarantine reached through a link
    linked = site.host.quarantine / "linked.mrc"
    os.link(kept, linked)
    through = site.host.root / "through"
    through.symlink_to(kept.parent)
    targets = (kept, kept.parent, site.host.quarantine, kept.parent / "copy.mrc", linked)
    for target in (*targets, through / "new.mrc", through / kept.name):
        refused = as_staff(site, "quarantine", "release", str(first["id"]), "--to", str(target))
        assert refused.returncode == 2, (target, refused.stderr)
        assert "refused" in refused.stderr and kept.read_bytes() == data
    assert not (kept.parent / "copy.mrc").exists() and not (kept.parent / "new.mrc").exists()
    [row] = rows(site, f"id = {first['id']}")
    assert row["state"] == "quarantined" and row["purge_evidence"] is None
    assert site.journal_events("quarantine_released") == []
    assert Path(str(second["dest_path"])).exists()
