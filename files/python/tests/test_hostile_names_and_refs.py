"""References the session owner could not read stay where they are, and names from a camera
share or leginondb cannot forge a log line (issue 24, cases 3 and 4).

The services run as in test_planted_links: another uid with the role's capabilities (which
let it read any file), the session owner an unprivileged account. Whether the owner is in a
group is set by a passwd and group database of the test's own, bound over /etc/passwd and
/etc/group in a mount namespace of the service's run only (the host's are never changed), so
the owner's supplementary groups come from the group database as on a real host. Every case
also asks the kernel itself, by reading the file as the owner with exactly those groups.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import test_planted_links as planted
from support.movies import mrc_bytes
from test_ingest import drop
from test_planted_links import OWNER_UID, SERVICE_UID, Site, unit_capabilities

site = planted.site  # the fixture of the services' accounts and folders, reused as it is

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switches to other accounts")

OWNER_NAME = "embuffer-test-owner"
TEAM_GID = 64601  # a group of the site's staff that the owner may or may not belong to
LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) embuffer[.\w]*: ")
REFUSED = "not readable by the session owner"


def accounts(site: Site, *, in_team: bool) -> tuple[Path, Path]:
    """passwd and group files: the host's, with the session owner (uid 1000, primary group
    1000) and the team group, the owner a supplementary member of it or not."""
    passwd = [
        line
        for line in Path("/etc/passwd").read_text().splitlines()
        if line.split(":")[2] != str(OWNER_UID) and not line.startswith(f"{OWNER_NAME}:")
    ]
    passwd.append(f"{OWNER_NAME}:x:{OWNER_UID}:{OWNER_UID}::/nonexistent:/usr/sbin/nologin")
    group = [
        line
        for line in Path("/etc/group").read_text().splitlines()
        if line.split(":")[2] not in (str(OWNER_UID), str(TEAM_GID))
    ]
    group += [f"{OWNER_NAME}:x:{OWNER_UID}:", f"beamteam:x:{TEAM_GID}:{OWNER_NAME * in_team}"]
    folder = site.host.root / f"accounts-{'member' if in_team else 'outsider'}"
    folder.mkdir(exist_ok=True)
    (folder / "passwd").write_text("\n".join(passwd) + "\n")
    (folder / "group").write_text("\n".join(group) + "\n")
    return folder / "passwd", folder / "group"


def with_accounts(databases: tuple[Path, Path], command: list[str]) -> list[str]:
    bind = 'mount --bind "$1" /etc/passwd; mount --bind "$2" /etc/group; shift 2; exec "$@"'
    return [
        *("unshare", "--mount", "--propagation", "private", "--", "sh", "-euc", bind, "sh"),
        *(str(path) for path in databases),
        *command,
    ]


def ingest_as_service(site: Site, databases: tuple[Path, Path]) -> str:
    """`embuffer ingest --once` as the service; its stderr (the service log)."""
    caps = unit_capabilities("ingest")
    command = [
        *("setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}", "--clear-groups"),
        *(f"--inh-caps={caps}", f"--ambient-caps={caps}", f"--bounding-set={caps}", "--"),
        *(sys.executable, "-c", "import sys; from embuffer.cli import main; main(sys.argv[1:])"),
        *("--config", str(site.host.config_path), "ingest", "--once"),
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        with_accounts(databases, command), capture_output=True, text=True, timeout=180, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def owner_can_read(databases: tuple[Path, Path], path: Path) -> bool:
    """The kernel's answer: the owner, with the groups a login gives them, reads the file."""
    command = [
        *("setpriv", f"--reuid={OWNER_UID}", f"--regid={OWNER_UID}", "--init-groups"),
        *("--inh-caps=-all", "--bounding-set=-all", "--", "cat", str(path)),
    ]
    return subprocess.run(with_accounts(databases, command), capture_output=True).returncode == 0


def reference_in(site: Site, folder: Path, name: str) -> dict[str, object]:
    """A norm image `<folder>/<name>.mrc` (mode 0644, root's) of a reference session whose
    image path is `folder`, as the next movies' norm."""
    import numpy

    from embuffer.leginon.mrcimage import write_mrc
    from embuffer.safecopy.copy import Ownership

    folder.mkdir(parents=True, exist_ok=True)
    write_mrc(folder / f"{name}.mrc", numpy.ones((3, 4), numpy.float32), Ownership())
    (folder / f"{name}.mrc").chmod(0o644)
    leginon = site.host.leginon
    session = leginon.session(f"refs_{name}", str(folder))
    ref_camera = leginon.camera_em(session, site.ids["camera"], "ref")
    return {"norm_id": leginon.image("NormImageData", session, ref_camera, name)}


def handed_over(site: Site, name: str) -> bool:
    return (site.host.buffer_folder() / "references" / f"{name}.mrc").exists()


def test_a_reference_in_a_root_only_folder_is_refused_once_and_the_movies_go_on(site):
    private = site.host.root / "data" / "private"
    norm = reference_in(site, private, "leak")
    private.chmod(0o700)
    databases = accounts(site, in_team=False)
    site.movie("20261128_100000_00", "leak_a", seed=1, **norm)
    site.movie("20261128_100100_00", "leak_b", seed=2, **norm)

    log = ingest_as_service(site, databases)

    assert not owner_can_read(databases, private / "leak.mrc")
    assert not handed_over(site, "leak"), "a file the owner cannot reach was handed over"
    for movie in ("leak_a", "leak_b"):
        assert (site.host.buffer_folder() / f"{movie}.frames.mrc").exists()
    errors = site.journal_events("reference_error")
    assert len(errors) == 1 and REFUSED in errors[0] and "may not search" in errors[0], errors
    assert log.count(REFUSED) == 1, log
    listing = (site.host.buffer_folder() / "references" / "reference_list.txt").read_text()
    assert [line.split("\t")[4] for line in listing.splitlines()] == ["", ""]


def test_a_group_folder_admits_exactly_its_members(site):
    team = site.host.root / "data" / "team"
    norm = reference_in(site, team, "team_norm")
    os.chown(team, 0, TEAM_GID)
    team.chmod(0o750)

    outsider = accounts(site, in_team=False)
    site.movie("20261128_110000_00", "team_a", seed=3, **norm)
    ingest_as_service(site, outsider)
    assert not owner_can_read(outsider, team / "team_norm.mrc")
    assert not handed_over(site, "team_norm"), "handed to an owner outside the group"
    assert any(REFUSED in error for error in site.journal_events("reference_error"))

    member = accounts(site, in_team=True)  # a supplementary group, from the group database
    site.movie("20261128_110100_00", "team_b", seed=4, **norm)
    ingest_as_service(site, member)
    assert owner_can_read(member, team / "team_norm.mrc")
    assert handed_over(site, "team_norm"), "a member of the group was refused"
    copy = (site.host.buffer_folder() / "references" / "team_norm.mrc").stat()
    assert copy.st_uid == OWNER_UID


def test_an_acl_decides_for_the_owner_as_the_kernel_does(site):
    shared = site.host.root / "data" / "acl"
    norm = reference_in(site, shared, "acl_norm")
    shared.chmod(0o755)  # open to all by its mode bits, but for the owner's ACL entry
    subprocess.run(["setfacl", "-m", f"u:{OWNER_UID}:---", str(shared)], check=True)
    databases = accounts(site, in_team=False)

    site.movie("20261128_120000_00", "acl_a", seed=5, **norm)
    ingest_as_service(site, databases)
    assert not owner_can_read(databases, shared / "acl_norm.mrc")
    assert not handed_over(site, "acl_norm"), "the ACL shutting the owner out was ignored"

    # Shut to all by its mode bits, open to the owner alone by the ACL.
    shared.chmod(0o700)
    subprocess.run(["setfacl", "-m", f"u:{OWNER_UID}:r-x", str(shared)], check=True)
    site.movie("20261128_120100_00", "acl_b", seed=6, **norm)
    ingest_as_service(site, databases)
    assert owner_can_read(databases, shared / "acl_norm.mrc")
    assert handed_over(site, "acl_norm"), "the ACL letting the owner in was ignored"


FORGED = "INFO embuffer.verifiers: forged"


def test_names_from_leginondb_and_the_camera_cannot_forge_a_log_line(site):
    site.host.write_config(grace_minutes=0)  # the unmatched camera file goes at once
    # An image filename in leginondb and a camera file name, each carrying a line of its own
    # and terminal controls.
    site.movie("20261128_130000_00", f"db\n{FORGED} by leginondb", seed=7)
    # (Latin-1 only: leginondb's columns are, and a lookup of another name fails - see
    # the one-line test below for the other characters)
    camera_name = f"20261128_140000_00\r\x1b[2K\n{FORGED} by the camera.mrc"
    drop(site.host.camera / camera_name, mrc_bytes(16, 16, 4, seed=8), 60)

    log = ingest_as_service(site, accounts(site, in_team=False))

    assert not list(site.host.camera.iterdir()), log
    lines = log.splitlines()
    assert all(LOG_LINE.match(line) for line in lines), "a line that is no log record:\n" + log
    assert not any(line.startswith(FORGED) for line in lines), log
    assert f"\\n{FORGED} by leginondb" in log, "the ingest was logged, escaped, on its line"
    assert f"\\n{FORGED} by the camera" in log, "the quarantine was logged, escaped"
    assert "\x1b" not in log and "\r" not in log

    details = [
        detail
        for action in ("ingested", "quarantined")
        for detail in site.journal_events(action)
        if "forged" in detail
    ]
    assert details, "the events name the files"
    assert all(detail.isprintable() for detail in details), details

    status = subprocess.run(
        [sys.executable, "-m", "embuffer.cli", "--config", str(site.host.config_path), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert f"\\n{FORGED} by leginondb" in status.stdout, status.stdout
    assert not any(line.startswith(FORGED) for line in status.stdout.splitlines())
    assert all(line.isprintable() for line in status.stdout.splitlines()), status.stdout


def test_every_character_that_is_not_printable_is_escaped_in_a_log_record():
    """The formatter the CLI installs, on what the camera test cannot send through
    leginondb: C1 controls, Unicode line and paragraph separators, a bidi override."""
    import io
    import logging

    from embuffer.cli.process import OneLineFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("embuffer.test-one-line")
    logger.addHandler(handler)
    try:
        name = "a\x85b\u2028c\u2029d\u202ee\x00f\x7fg\tZ"
        logger.warning("file %s", name)
        logger.error("failed", exc_info=ValueError(f"x\n{FORGED}"))
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert (
        lines[0]
        == "WARNING embuffer.test-one-line: file a\\x85b\\u2028c\\u2029d\\u202ee\\x00f\\x7fg\\tZ"
    )
    assert len(lines) == 2 and lines[1].startswith("ERROR ") and f"\\n{FORGED}" in lines[1]
