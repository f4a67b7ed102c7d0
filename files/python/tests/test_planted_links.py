"""Links planted by a session owner redirect none of the service's privileged writes.

embuffer runs as its own account with the capabilities its systemd unit gives it (read from
the role, so the test follows the role), and it writes into session folders that belong to
the session owner. Here the services really run that way (setpriv: another uid, those
capabilities and no others), the session owner really is another unprivileged account that
plants the links, and the victims are files the owner must not be able to touch: a file of
the service's state folder, the journal, another folder's movie, a secret on the host.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import BufferHost, make_host, register
from support.movies import mrc_bytes
from test_ingest import drop

SERVICE_UID = 64530  # an account that exists only for this test, as the service's does
OWNER_UID = OWNER_GID = 1000  # the session owner `register` records (uid + 1000 as root)
VICTIM = b"embuffer state the session owner must never change\n" * 640  # 32000 bytes
ROLE_VARS = Path(__file__).parents[3] / "roles" / "embuffer_service" / "vars" / "main.yml"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switches to other accounts")


def unit_capabilities(command: str) -> str:
    """The capabilities the role gives the unit running `embuffer <command>`, as setpriv
    spells them after `-all` (`-all,+chown,+dac_override`)."""
    role = yaml.safe_load(ROLE_VARS.read_text())
    [unit] = [u for u in role["__embuffer_service_units"] if u["command"] == command]
    names = unit["capabilities"]
    if isinstance(names, str):  # "{{ another variable of the same file }}"
        names = role[names.strip("{} ")]
    return ",".join(["-all", *("+" + name.removeprefix("CAP_").lower() for name in names)])


@dataclass
class Site:
    host: BufferHost
    ids: dict[str, int]
    victim: Path

    @property
    def state(self) -> Path:
        return self.host.journal.parent

    def as_service(self, *args: str) -> subprocess.CompletedProcess[str]:
        caps = unit_capabilities(args[0])
        command = [
            "setpriv",
            f"--reuid={SERVICE_UID}",
            f"--regid={SERVICE_UID}",
            "--clear-groups",
            f"--inh-caps={caps}",
            f"--ambient-caps={caps}",
            f"--bounding-set={caps}",
            "--",
            sys.executable,
            "-c",
            "import sys; from embuffer.cli import main; sys.exit(main(sys.argv[1:]))",
            "--config",
            str(self.host.config_path),
            *args,
        ]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)

    def as_owner(self, script: str) -> None:
        """Run a shell script as the session owner, without any capability."""
        command = [
            "setpriv",
            f"--reuid={OWNER_UID}",
            f"--regid={OWNER_GID}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
            "sh",
            "-euc",
            script,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"the owner could not plant the link: {result.stderr}"

    def movie(self, frames_name: str, filename: str, seed: int, **acquisition: object) -> bytes:
        self.host.leginon.acquisition(
            self.ids["session"], self.ids["camera"], frames_name, filename, **acquisition
        )
        return drop(self.host.camera / f"{frames_name}.mrc", mrc_bytes(16, 16, 4, seed=seed), 60)

    def ingest(self) -> None:
        result = self.as_service("ingest", "--once")
        assert result.returncode == 0, result.stderr[-3000:]

    def victim_untouched(self) -> None:
        info = self.victim.stat()
        assert self.victim.read_bytes() == VICTIM, "written through a planted link"
        assert (info.st_uid, oct(info.st_mode & 0o7777)) == (SERVICE_UID, "0o600")

    def journal_events(self, action: str) -> list[str]:
        connection = sqlite3.connect(self.host.journal)
        try:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            return [
                detail
                for (detail,) in connection.execute(
                    "SELECT detail FROM events WHERE action = ?", (action,)
                )
            ]
        finally:
            connection.close()

    def state_names(self) -> set[str]:
        return {name for name in os.listdir(self.state) if not name.startswith("journal")}


@pytest.fixture
def site(mariadb) -> Iterator[Site]:
    # Not under pytest's own temporary folder: that one is root's alone (0700), and the
    # session owner must reach its folders as on a real buffer server.
    root = Path(tempfile.mkdtemp(prefix="embuffer-links-", dir="/var/tmp"))
    root.chmod(0o755)
    host, connection = make_host(root, mariadb)
    ids = register(host)
    # The folders the storage role gives the service account (the session folders below
    # the buffer and primary roots then belong to the session owner).
    for folder in (host.buffer, host.quarantine, host.journal.parent, host.primary, host.camera):
        os.chown(folder, SERVICE_UID, SERVICE_UID)
    victim = host.journal.parent / "victim.bin"
    victim.write_bytes(VICTIM)
    victim.chmod(0o600)
    os.chown(victim, SERVICE_UID, SERVICE_UID)
    try:
        yield Site(host, ids, victim)
    finally:
        connection.close()
        shutil.rmtree(root)


def with_references(site: Site, *, norm_mode: int = 0o644) -> dict[str, object]:
    """Norm, dark and defect plan for the next movies, the camera flipping its frames (so
    `_mod` variants are written too)."""
    import numpy

    from embuffer.leginon.mrcimage import write_mrc
    from embuffer.safecopy.copy import Ownership

    leginon, session = site.host.leginon, site.ids["session"]
    ref_camera = leginon.camera_em(session, site.ids["camera"], "ref")
    image_path = site.host.image_path()
    write_mrc(image_path / "norm_1.mrc", numpy.ones((3, 4), numpy.float32), Ownership())
    write_mrc(image_path / "dark_1.mrc", numpy.zeros((3, 4), numpy.float32), Ownership())
    (image_path / "norm_1.mrc").chmod(norm_mode)
    return {
        "norm_id": leginon.image("NormImageData", session, ref_camera, "norm_1"),
        "dark_id": leginon.image("DarkImageData", session, ref_camera, "dark_1"),
        "plan_id": leginon.corrector_plan(
            session, ref_camera, bad_rows=[5], bad_cols=[], bad_pixels=[]
        ),
        "flip": True,
        "nframes": 4,
    }


def test_links_planted_among_the_references_redirect_no_write(site):
    references = with_references(site)
    site.movie("20261126_100000_00", "ref_a", seed=1, **references)
    site.ingest()
    folder = site.host.buffer_folder() / "references"
    plan = f"defect_plan{references['plan_id']:04d}.txt"
    assert (folder / "reference_list.txt").exists() and (folder / plan).exists()

    # The owner replaces what the next movie rewrites with links to the service's file:
    # the list it appends to, and the temporary names a fixed-name writer would use.
    site.as_owner(
        f"""cd {folder}
        rm reference_list.txt {plan} norm_1_mod.mrc dark_1_mod.mrc
        ln -s {site.victim} reference_list.txt
        ln -s {site.victim} .{plan}.tmp
        ln -s {site.victim} .norm_1_mod.mrc.tmp
        ln -s {site.victim} .dark_1_mod.mrc.tmp"""
    )
    site.movie("20261126_100100_00", "ref_b", seed=2, **references)
    site.ingest()

    site.victim_untouched()
    assert (site.host.buffer_folder() / "ref_b.frames.mrc").exists(), "the movie still went"
    assert not list(site.host.camera.iterdir())
    assert (folder / plan).read_text().startswith("bad_cols: []")  # rewritten, not followed
    assert (folder / "norm_1_mod.mrc").is_file() and not (folder / "norm_1_mod.mrc").is_symlink()
    errors = site.journal_events("reference_error")
    assert any("reference_list.txt" in error for error in errors), errors


def test_a_references_folder_swapped_for_a_link_receives_nothing(site):
    references = with_references(site)
    site.movie("20261126_110000_00", "swap_a", seed=3, **references)
    site.ingest()
    before = site.state_names()
    folder = site.host.buffer_folder() / "references"
    site.as_owner(f"mv {folder} {folder}.mine && ln -s {site.state} {folder}")
    site.movie("20261126_110100_00", "swap_b", seed=4, **references)
    site.ingest()

    assert site.state_names() == before, "references were written into the state folder"
    site.victim_untouched()
    assert (site.host.buffer_folder() / "swap_b.frames.mrc").exists()
    assert site.journal_events("reference_error")


def test_a_session_folder_swapped_for_a_link_takes_no_movie_and_loses_none(site):
    site.movie("20261126_120000_00", "sess_a", seed=5)
    site.ingest()
    rawdata = site.host.buffer_folder()
    # Another user's session folder under the same buffer root (so the path stays inside
    # the root and only the walk can tell).
    other = site.host.buffer / "bob" / "26nov26z" / "rawdata"
    other.mkdir(parents=True)
    (other / "bob_1.frames.mrc").write_bytes(b"bob's movie")
    for folder in (other, other.parent, other.parent.parent):
        os.chown(folder, OWNER_UID + 1, OWNER_GID + 1)
    site.as_owner(f"mv {rawdata} {rawdata}.mine && ln -s {other} {rawdata}")
    data = site.movie("20261126_120100_00", "sess_b", seed=6)
    site.as_service("ingest", "--once")

    assert os.listdir(other) == ["bob_1.frames.mrc"], "the movie went into another's folder"
    site.victim_untouched()
    kept = site.host.camera / "20261126_120100_00.mrc"
    assert kept.read_bytes() == data, "the movie must stay on the camera share"
    assert not any(p.name.startswith("sess_b") for p in site.host.buffer.rglob("*"))


def test_a_link_swapped_in_right_after_a_folder_is_made_is_never_chowned(site, monkeypatch):
    """The race in making a session folder: the owner replaces the new folder with a link
    between the service's mkdir and its chown (simulated at that exact point)."""
    from embuffer.safecopy.copy import Ownership, make_folders

    real_mkdir = os.mkdir
    target = site.host.buffer / "alice"
    before = site.state.stat()

    def mkdir(path, mode=0o777, *, dir_fd=None):
        real_mkdir(path, mode, dir_fd=dir_fd)
        where = Path(path) if dir_fd is None else Path(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
        if where == target:  # the owner wins the race
            os.rmdir(where)
            os.symlink(site.state, where)
            os.lchown(where, OWNER_UID, OWNER_GID)

    monkeypatch.setattr(os, "mkdir", mkdir)
    with pytest.raises(OSError):
        make_folders(target / "26nov26b" / "rawdata", Ownership(OWNER_UID, OWNER_GID))
    monkeypatch.undo()
    info = site.state.stat()
    assert (info.st_uid, info.st_gid, info.st_mode) == (
        before.st_uid,
        before.st_gid,
        before.st_mode,
    ), "the state folder was handed to the owner"
    assert not (site.state / "26nov26b").exists()


def test_purge_removes_nothing_through_a_folder_link(site):
    site.host.write_config(extra="[purge]\nretention_days = 0\n")
    data = site.movie("20261126_130000_00", "purge_a", seed=7)
    site.ingest()
    assert site.as_service("archive", "--once").returncode == 0
    rawdata = site.host.buffer_folder()
    # Another folder holding a file of the same name, size and time (not the owner's).
    elsewhere = site.host.root / "elsewhere"
    elsewhere.mkdir()
    shutil.copy2(rawdata / "purge_a.frames.mrc", elsewhere / "purge_a.frames.mrc")
    site.as_owner(f"mv {rawdata} {rawdata}.mine && ln -s {elsewhere} {rawdata}")

    result = site.as_service("purge")

    assert (elsewhere / "purge_a.frames.mrc").read_bytes() == data, "removed through a link"
    assert "keep" in result.stdout + result.stderr
    assert (Path(f"{rawdata}.mine") / "purge_a.frames.mrc").read_bytes() == data


def test_the_archive_reads_nothing_through_a_folder_link(site):
    site.movie("20261126_140000_00", "arch_a", seed=8)
    site.ingest()
    rawdata = site.host.buffer_folder()
    secret_folder = site.host.root / "secret"
    secret_folder.mkdir(mode=0o700)
    secret = b"a root-only file of the host\n" * 100
    (secret_folder / "arch_a.frames.mrc").write_bytes(secret)
    (secret_folder / "arch_a.frames.mrc").chmod(0o600)
    site.as_owner(f"mv {rawdata} {rawdata}.mine && ln -s {secret_folder} {rawdata}")

    site.as_service("archive", "--once")

    copies = [p for p in site.host.primary.rglob("*") if p.is_file()]
    assert not [p for p in copies if p.read_bytes() == secret], "the secret went to primary"


def test_a_reference_the_owner_cannot_read_is_not_handed_over(site):
    references = with_references(site, norm_mode=0o600)  # root's alone
    site.movie("20261126_150000_00", "unreadable", seed=9, **references)
    site.ingest()

    folder = site.host.buffer_folder() / "references"
    assert not (folder / "norm_1.mrc").exists(), "a file the owner cannot read was handed over"
    assert (site.host.buffer_folder() / "unreadable.frames.mrc").exists()
    errors = site.journal_events("reference_error")
    assert any("not readable by the session owner" in error for error in errors), errors
