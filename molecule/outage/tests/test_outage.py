"""The outage drill: primary storage goes down and comes back, and no movie is lost.

One story, step by step (pytest runs the tests in file order and stops at the first broken
step): movies reach primary storage; outage-on.yml (first --check, then for real, then again)
pauses the archive while a stream of movies keeps arriving, switches leginon.cfg and
BufferHostData; site.yml run during the outage leaves it as it is; primary storage goes
offline and outage-off.yml refuses to run; primary comes back, a first outage-off.yml run
stops half-way (leginondb refuses the update) and says where each part stands, the next run
restores everything, mirrors the backlog and reports the outage; a second run of each
playbook changes nothing; every movie is on the buffer and on primary storage exactly once,
byte-identical to what the camera wrote.

leginondb is read at each step as Leginon reads it: the camera's newest BufferHostData row
of any buffer host (rawtransfer.py: a buffer only while it is enabled) and its newest enabled
row (Appion, then the session's BufferFramePathData row for it). The camera has an older,
still enabled row of a retired buffer server, which the outage must disable too and give
back exactly; and session 26nov26m was moved (change_buffer_frame_path.py) to another
folder of the buffer before the outage: its frames stay there throughout.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import testinfra

BUFFER, DB, LEGINON = "outage-buffer", "outage-db", "outage-leginon"
EMBUFFER = "/opt/embuffer/venv/bin/embuffer"
CAMERA_HOST = "k3-cam-01"
CAMERA_FOLDER = "/mnt/k3-cam-01"
BUFFER_ROOT = "/bufferdata/frames"
PRIMARY_ROOT = "/primary/frames"
LEGINON_CFG = "/etc/myami/leginon.cfg"
ORIGINAL_IMAGES_PATH = "/data/leginon"
OUTAGE_LOCATION = "/outage/leginon"
REASON = "NAS firmware update (molecule drill)"

# Session 26nov26a (prepare.yml): exposures 01-08; 01-03 before the outage, 04-06 stream in
# while outage-on.yml runs, 07-08 come once it is done. Session 26nov26b is created by Leginon
# during the outage, with its images in the outage location; its exposures are inserted here
# as Leginon would.
SESSION_A = ("alice/26nov26a/rawdata", [f"{k:02d}" for k in range(1, 9)])
SESSION_B_NAME = "26nov26b"
SESSION_B_IMAGE_PATH = f"{OUTAGE_LOCATION}/bob/{SESSION_B_NAME}/rawdata"
SESSION_B = ("bob/26nov26b/rawdata", ["21", "22", "23"])
BEFORE, STREAM, LATE = SESSION_A[1][:3], SESSION_A[1][3:6], SESSION_A[1][6:]
AFTER_SWITCH = LATE + SESSION_B[1]
# Session 26nov26m, moved before the outage: one movie before it, one during it.
SESSION_M_NAME = "26nov26m"
SESSION_M_IMAGE_PATH = f"{ORIGINAL_IMAGES_PATH}/carol/{SESSION_M_NAME}/rawdata"
MOVED_PATH = f"{BUFFER_ROOT}/moved/carol/{SESSION_M_NAME}/rawdata"
SESSION_M = ("moved/carol/26nov26m/rawdata", ["31", "32"])
RETIRED_BUFFER = "buffer-retired"
ROWS_RECORD = "/var/lib/embuffer/outage-bufferhostdata.json"

ANSIBLE_DIR = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "ansible"
INVENTORY = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE
)

# What the steps learn and later steps check.
drill: dict[str, object] = {}


def frames_name(k: str) -> str:
    return f"20261126_1000{k}_{k}"


def image_filename(session: str, k: str) -> str:
    return f"{session}_00001gr_00002sq_v01_000{k}ex"


def movie_bytes(seed: str, nx: int = 96, ny: int = 64, nz: int = 6) -> bytes:
    """A whole MRC movie (mode 1, int16): the header's sizes match the data after it."""
    header = bytearray(1024)
    struct.pack_into("<4i", header, 0, nx, ny, nz, 1)
    struct.pack_into("<3i", header, 28, nx, ny, nz)
    struct.pack_into("<3i", header, 64, 1, 2, 3)
    header[208:212] = b"MAP "
    header[212:216] = b"\x44\x44\x00\x00"
    return bytes(header) + random.Random(seed).randbytes(nx * ny * nz * 2)


def movies() -> dict[str, dict[str, str]]:
    """Every movie of the drill by frames name: relative buffer path and sha256."""
    result = {}
    sessions = ((SESSION_A, "26nov26a"), (SESSION_B, SESSION_B_NAME), (SESSION_M, SESSION_M_NAME))
    for (relative, ks), session in sessions:
        for k in ks:
            name = frames_name(k)
            result[name] = {
                "relative": f"{relative}/{image_filename(session, k)}.frames.mrc",
                "sha256": hashlib.sha256(movie_bytes(name)).hexdigest(),
            }
    return result


MOVIES = movies()


@pytest.fixture(scope="module")
def buffer():
    return testinfra.get_host(f"podman://{BUFFER}")


@pytest.fixture(scope="module")
def leginon():
    return testinfra.get_host(f"podman://{LEGINON}")


@pytest.fixture(scope="module")
def sql():
    db = testinfra.get_host(f"podman://{DB}")

    def run(query: str) -> list[tuple[str, ...]]:
        result = db.run("mariadb --batch --skip-column-names leginondb -e %s", query)
        assert result.rc == 0, result.stderr
        return [tuple(line.split("\t")) for line in result.stdout.splitlines() if line]

    return run


def playbook(name: str, *options: str) -> tuple[int, str, dict[str, dict[str, int]]]:
    """Run an outage playbook against the scenario's hosts; rc, output and the recap."""
    command = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        str(INVENTORY),
        str(ANSIBLE_DIR / name),
        "-e",
        f"embuffer_outage_reason={json.dumps(REASON)}",
        "-e",
        f"embuffer_outage_location={OUTAGE_LOCATION}",
        *options,
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    output = done.stdout + done.stderr
    print(
        f"\n$ {' '.join(command[2:])}  ({time.monotonic() - started:.0f} s, rc {done.returncode})"
    )
    print(output[-6000:])
    recap = {
        host: {"ok": int(ok), "changed": int(changed), "failed": int(failed)}
        for host, ok, changed, _unreachable, failed in RECAP.findall(output)
    }
    return done.returncode, output, recap


def status(buffer) -> dict:
    return json.loads(buffer.check_output("runuser -u embuffer -- %s status --json", EMBUFFER))


def flag(sql) -> str:
    rows = sql(
        "SELECT b.disabled FROM BufferHostData b JOIN InstrumentData i "
        "ON i.DEF_id = b.`REF|InstrumentData|ccdcamera` "
        f"WHERE i.hostname = '{CAMERA_HOST}' AND b.`buffer hostname` = '{BUFFER}' "
        "ORDER BY b.DEF_id DESC LIMIT 1"
    )
    assert rows, "no BufferHostData row for the camera and this buffer"
    return rows[0][0]


def buffer_rows(sql) -> dict[str, tuple[int, int]]:
    """Buffer host name -> (DEF_id, disabled) of the camera's rows."""
    rows = sql(
        "SELECT b.`buffer hostname`, b.DEF_id, b.disabled FROM BufferHostData b JOIN "
        "InstrumentData i ON i.DEF_id = b.`REF|InstrumentData|ccdcamera` "
        f"WHERE i.hostname = '{CAMERA_HOST}' ORDER BY b.DEF_id"
    )
    return {host: (int(row_id), int(disabled)) for host, row_id, disabled in rows}


def leginon_rules(sql, session: str = SESSION_M_NAME) -> dict[str, object]:
    """Where Leginon's transfer and Appion point for the camera (and a session), asked as
    they ask: the newest row of any buffer host; the newest row with disabled = 0, then the
    session's BufferFramePathData row for it."""
    camera = f"(SELECT DEF_id FROM InstrumentData WHERE hostname = '{CAMERA_HOST}')"
    newest = sql(
        "SELECT DEF_id, disabled FROM BufferHostData WHERE "
        f"`REF|InstrumentData|ccdcamera` = {camera} ORDER BY DEF_id DESC LIMIT 1"
    )[0]
    appion = sql(
        "SELECT DEF_id FROM BufferHostData WHERE "
        f"`REF|InstrumentData|ccdcamera` = {camera} AND disabled = 0 "
        "ORDER BY DEF_id DESC LIMIT 1"
    )
    path = None
    if appion:
        found = sql(
            "SELECT `buffer frame path` FROM BufferFramePathData f JOIN SessionData s "
            f"ON s.DEF_id = f.`REF|SessionData|session` WHERE s.name = '{session}' "
            f"AND f.`REF|BufferHostData|host` = {appion[0][0]} ORDER BY f.DEF_id DESC LIMIT 1"
        )
        path = found[0][0] if found else None
    return {
        "transfer_row": int(newest[0]),
        "transfer_uses_buffer": newest[1] == "0",
        "appion_row": int(appion[0][0]) if appion else None,
        "appion_path": path,
    }


def frame_path_rows(sql, session: str) -> list[tuple[str, ...]]:
    return sql(
        "SELECT f.DEF_id, f.`REF|BufferHostData|host`, f.`buffer frame path` FROM "
        "BufferFramePathData f JOIN SessionData s ON s.DEF_id = f.`REF|SessionData|session` "
        f"WHERE s.name = '{session}' ORDER BY f.DEF_id"
    )


def show_leginondb(sql, when: str) -> None:
    """The rows and where each rule points, for the drill's record."""
    print(f"\n--- leginondb {when}")
    print("BufferHostData:", buffer_rows(sql))
    for session in ("26nov26a", SESSION_M_NAME):
        print(f"BufferFramePathData {session}:", frame_path_rows(sql, session))
        print(f"rules for {session}:", leginon_rules(sql, session))


def insert_exposures(sql, session: str, ks: list[str]) -> None:
    for k in ks:
        sql(
            "INSERT INTO CameraEMData (`REF|SessionData|session`, `REF|InstrumentData|ccdcamera`, "
            "`frames name`, `save frames`, `align frames`, nframes) "
            f"SELECT s.DEF_id, i.DEF_id, '{frames_name(k)}', 1, 0, 6 FROM SessionData s, "
            f"InstrumentData i WHERE s.name = '{session}' AND i.hostname = '{CAMERA_HOST}'"
        )
        sql(
            "INSERT INTO AcquisitionImageData (`REF|SessionData|session`, "
            "`REF|CameraEMData|camera`, filename, label) SELECT c.`REF|SessionData|session`, "
            f"c.DEF_id, '{image_filename(session, k)}', 'Exposure' FROM CameraEMData c "
            f"WHERE c.`frames name` = '{frames_name(k)}'"
        )


def images_path(leginon) -> str:
    return leginon.check_output(
        "python3 -c %s %s",
        "import configparser, sys; p = configparser.ConfigParser(); p.read(sys.argv[1]); "
        "print(p.get('Images', 'path'))",
        LEGINON_CFG,
    )


def drop(buffer, names: list[str], *, every: float = 0.0) -> None:
    """The camera PC writes these movies: staged, then moved into the share (one rename
    each, as a finished file appears); with `every`, a stream in the background."""
    stage = f"/root/stream-{names[0]}"
    with tempfile.TemporaryDirectory() as local:
        for name in names:
            Path(local, f"{name}.mrc").write_bytes(movie_bytes(name))
        subprocess.run(["podman", "exec", BUFFER, "mkdir", "-p", stage], check=True)
        subprocess.run(["podman", "cp", f"{local}/.", f"{BUFFER}:{stage}"], check=True)
    script = f'for f in {stage}/*.mrc; do mv "$f" {CAMERA_FOLDER}/; sleep {every}; done'
    detach = ["-d"] if every else []
    subprocess.run(["podman", "exec", *detach, BUFFER, "sh", "-c", script], check=True)


def wait_for(predicate, timeout: float, what: str, *, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def sha(host, path: str) -> str | None:
    result = host.run("sha256sum %s", path)
    return result.stdout.split()[0] if result.rc == 0 else None


def on(host, root: str, names) -> bool:
    return all(sha(host, f"{root}/{MOVIES[n]['relative']}") == MOVIES[n]["sha256"] for n in names)


def frames(name_list: list[str]) -> list[str]:
    return [frames_name(k) for k in name_list]


# ---- before the outage ----------------------------------------------------------------------
def test_movies_reach_primary_before_the_outage(buffer, leginon, sql):
    assert flag(sql) == "0"
    rows = buffer_rows(sql)
    assert rows[RETIRED_BUFFER][1] == 0 and rows[RETIRED_BUFFER][0] < rows[BUFFER][0]
    drill["rows"] = rows
    assert images_path(leginon) == ORIGINAL_IMAGES_PATH
    drill["cfg_sha"] = sha(leginon, LEGINON_CFG)
    # Session 26nov26m: Appion recorded its derived path, then an administrator moved it
    # with change_buffer_frame_path.py (which rewrites that row) before any movie came.
    sql(
        "INSERT INTO SessionData (name, comment, `image path`, uid, gid) VALUES "
        f"('{SESSION_M_NAME}', 'moved before the outage', '{SESSION_M_IMAGE_PATH}', 5003, 5003)"
    )
    insert_exposures(sql, SESSION_M_NAME, SESSION_M[1])
    session_m = f"(SELECT DEF_id FROM SessionData WHERE name = '{SESSION_M_NAME}')"
    sql(
        "INSERT INTO BufferFramePathData (`REF|SessionData|session`, `REF|BufferHostData|host`, "
        f"`buffer frame path`) VALUES ({session_m}, {rows[BUFFER][0]}, "
        f"'{BUFFER_ROOT}/carol/{SESSION_M_NAME}/rawdata')"
    )
    sql(
        f"UPDATE BufferFramePathData SET `buffer frame path` = '{MOVED_PATH}' "
        f"WHERE `REF|SessionData|session` = {session_m}"
    )
    ours = rows[BUFFER][0]
    assert leginon_rules(sql) == {
        "transfer_row": ours,
        "transfer_uses_buffer": True,
        "appion_row": ours,
        "appion_path": MOVED_PATH,
    }
    first_moved = frames(SESSION_M[1][:1])
    drop(buffer, frames(BEFORE) + first_moved)
    wait_for(
        lambda: on(buffer, PRIMARY_ROOT, frames(BEFORE) + first_moved),
        120,
        "the first movies on primary",
    )
    assert not status(buffer)["archive"]["paused"]
    show_leginondb(sql, "before the outage")


# ---- declaring the outage -------------------------------------------------------------------
def test_outage_on_check_mode_changes_nothing(buffer, leginon, sql):
    rc, output, recap = playbook("outage-on.yml", "--check", "--diff")
    assert rc == 0, output
    assert recap[BUFFER]["failed"] == 0
    assert "Images" in output and OUTAGE_LOCATION in output  # the diff of leginon.cfg
    assert not status(buffer)["archive"]["paused"]
    assert status(buffer)["buffer"]["outage"] is None
    assert sha(leginon, LEGINON_CFG) == drill["cfg_sha"]
    assert not leginon.file(f"{LEGINON_CFG}.embuffer-outage").exists
    assert flag(sql) == "0"


def test_outage_on_refuses_a_missing_location_and_changes_nothing(buffer, leginon, sql):
    rc, output, _recap = playbook(
        "outage-on.yml", "-e", "embuffer_outage_location=/outage/typo/leginon"
    )
    assert rc != 0
    assert "/outage/typo/leginon does not exist" in output
    assert "Nothing was changed" in output
    assert not status(buffer)["archive"]["paused"]
    assert sha(leginon, LEGINON_CFG) == drill["cfg_sha"]
    assert flag(sql) == "0"


def test_outage_on_while_movies_stream_in(buffer, leginon, sql):
    drill["stream_started"] = time.time()
    drop(buffer, frames(STREAM), every=3)  # the camera keeps writing while the playbook runs
    rc, output, recap = playbook("outage-on.yml", "--diff")
    assert rc == 0, output
    assert recap[BUFFER]["changed"] > 0

    archive = status(buffer)["archive"]
    assert archive["paused"] and archive["paused_reason"] == REASON
    outage = status(buffer)["buffer"]["outage"]
    assert outage["reason"] == REASON and outage["location"] == OUTAGE_LOCATION
    text = buffer.check_output("runuser -u embuffer -- %s status", EMBUFFER)
    assert f"archive paused: {REASON} since" in text

    assert images_path(leginon) == OUTAGE_LOCATION
    cfg = leginon.file(LEGINON_CFG).content_string
    for kept in (
        "# New sessions store",
        "; the old backup server",
        "# path = /backup/leginon",
        "[User]",
        "fullname = Alice Example",
    ):
        assert kept in cfg, kept
    backup = leginon.file(f"{LEGINON_CFG}.embuffer-outage")
    assert backup.exists and sha(leginon, backup.path) == drill["cfg_sha"]
    assert flag(sql) == "1"
    # the retired buffer's row is disabled too, so Appion reads the session frame path,
    # and the buffer server keeps the record of it for outage-off.yml
    ours, retired = drill["rows"][BUFFER][0], drill["rows"][RETIRED_BUFFER][0]
    assert buffer_rows(sql) == {RETIRED_BUFFER: (retired, 1), BUFFER: (ours, 1)}
    assert leginon_rules(sql) == {
        "transfer_row": ours,
        "transfer_uses_buffer": False,
        "appion_row": None,
        "appion_path": None,
    }
    record = json.loads(buffer.file(ROWS_RECORD).content_string)
    assert [(row["id"], row["buffer_hostname"]) for row in record["rows"]] == [
        (retired, RETIRED_BUFFER)
    ]
    assert "Appion reads the session frame path" in output


def test_outage_on_again_changes_nothing(buffer):
    rc, output, recap = playbook("outage-on.yml")
    assert rc == 0, output
    assert recap and all(host["changed"] == 0 for host in recap.values()), recap


def test_site_yml_during_the_outage_leaves_it_in_place(buffer, sql):
    before = buffer_rows(sql)
    command = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        str(INVENTORY),
        str(ANSIBLE_DIR / "site.yml"),
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
    print(f"\n$ site.yml during the outage ({time.monotonic() - started:.0f} s)")
    print((done.stdout + done.stderr)[-3000:])
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert buffer_rows(sql) == before and flag(sql) == "1"
    assert leginon_rules(sql)["appion_row"] is None
    archive = status(buffer)["archive"]
    assert archive["paused"] and archive["paused_reason"] == REASON
    assert status(buffer)["buffer"]["outage"]["reason"] == REASON
    show_leginondb(sql, "during the outage (after site.yml)")


# ---- during the outage ----------------------------------------------------------------------
def test_ingest_goes_on_while_primary_is_offline(buffer, sql):
    # Primary storage goes away (the service account can no longer reach into it).
    buffer.check_output("chmod 0000 %s", PRIMARY_ROOT)
    # Leginon, now writing to the outage location, creates a session there and exposes.
    sql(
        "INSERT INTO SessionData (name, comment, `image path`, uid, gid) VALUES "
        f"('{SESSION_B_NAME}', 'created during the outage', '{SESSION_B_IMAGE_PATH}', 5002, 5002)"
    )
    for k in SESSION_B[1]:
        sql(
            "INSERT INTO CameraEMData (`REF|SessionData|session`, `REF|InstrumentData|ccdcamera`, "
            "`frames name`, `save frames`, `align frames`, nframes) "
            f"SELECT s.DEF_id, i.DEF_id, '{frames_name(k)}', 1, 0, 6 FROM SessionData s, "
            f"InstrumentData i WHERE s.name = '{SESSION_B_NAME}' AND i.hostname = '{CAMERA_HOST}'"
        )
        sql(
            "INSERT INTO AcquisitionImageData (`REF|SessionData|session`, "
            "`REF|CameraEMData|camera`, filename, label) SELECT c.`REF|SessionData|session`, "
            f"c.DEF_id, '{image_filename(SESSION_B_NAME, k)}', 'Exposure' FROM CameraEMData c "
            f"WHERE c.`frames name` = '{frames_name(k)}'"
        )
    drop(buffer, frames(LATE) + frames(SESSION_B[1]) + frames(SESSION_M[1][1:]))
    outage_era = frames(STREAM) + frames(AFTER_SWITCH) + frames(SESSION_M[1][1:])
    wait_for(
        lambda: on(buffer, BUFFER_ROOT, outage_era), 120, "the outage-era movies on the buffer"
    )
    assert buffer.check_output("ls -A %s", CAMERA_FOLDER) == ""

    # The archive honours the pause: nothing that arrived after it reached primary.
    for name in frames(AFTER_SWITCH):
        assert buffer.file(f"{BUFFER_ROOT}/{MOVIES[name]['relative']}").exists
        assert not buffer.file(f"{PRIMARY_ROOT}/{MOVIES[name]['relative']}").exists
    assert status(buffer)["archive"]["backlog_files"] >= len(AFTER_SWITCH)

    # The moved session's movie went where its BufferFramePathData row says, where Appion
    # looks once the outage ends; the report says Appion does not look there meanwhile.
    assert buffer.file(f"{MOVED_PATH}/{image_filename(SESSION_M_NAME, '32')}.frames.mrc").exists
    report = json.loads(
        buffer.check_output("runuser -u embuffer -- %s outage report --json", EMBUFFER)
    )
    unfound = {e["session"]: e for e in report["sessions_appion_cannot_find"]}
    assert unfound[SESSION_M_NAME]["appion_path"] == SESSION_M_IMAGE_PATH.replace(
        "/leginon/", "/frames/"
    )
    assert unfound[SESSION_M_NAME]["frames_in"] == [MOVED_PATH]

    # Purge never removes a copy primary storage does not hold verified.
    purge = buffer.run("runuser -u embuffer -- %s purge", EMBUFFER)
    print(purge.stdout, purge.stderr)
    assert on(buffer, BUFFER_ROOT, frames(BEFORE) + outage_era)


def test_outage_off_refuses_while_primary_is_offline(buffer, leginon, sql):
    rc, output, _recap = playbook("outage-off.yml")
    assert rc != 0
    assert "Nothing was changed" in output
    assert "not there" in output or "cannot write" in output
    assert status(buffer)["archive"]["paused"]
    assert images_path(leginon) == OUTAGE_LOCATION
    assert flag(sql) == "1"


# ---- ending the outage ----------------------------------------------------------------------
def test_outage_off_check_mode_changes_nothing(buffer, leginon, sql):
    buffer.check_output("chmod 2750 %s", PRIMARY_ROOT)  # primary storage is back
    rc, output, recap = playbook("outage-off.yml", "--check", "--diff")
    assert rc == 0, output
    assert recap[BUFFER]["failed"] == 0
    assert f"+path = {ORIGINAL_IMAGES_PATH}" in output  # the diff of leginon.cfg
    assert images_path(leginon) == OUTAGE_LOCATION
    assert leginon.file(f"{LEGINON_CFG}.embuffer-outage").exists
    assert flag(sql) == "1"
    assert status(buffer)["archive"]["paused"]
    assert status(buffer)["buffer"]["outage"]["reason"] == REASON


def test_outage_off_stopped_half_way_tells_the_state_and_how_to_finish(buffer, leginon, sql):
    # The registrar may still read BufferHostData (the pre-check passes) but no longer
    # update it: the run stops after leginon.cfg was restored.
    grant = "ON leginondb.BufferHostData {} 'embuffer_registrar'@'%'"
    sql("REVOKE UPDATE " + grant.format("FROM"))
    try:
        rc, output, _recap = playbook("outage-off.yml")
    finally:
        sql("GRANT UPDATE " + grant.format("TO"))
    assert rc != 0
    assert "Step \\\"Set BufferHostData of this buffer's cameras to enabled" in output
    assert f"outage-buffer: archive paused ({REASON}); outage recorded since" in output
    assert "BufferHostData: k3-cam-01 disabled" in output
    assert f"leginon.cfg: {LEGINON} {ORIGINAL_IMAGES_PATH} no pre-outage copy" in output
    assert "run outage-off.yml again" in output
    retired = drill["rows"][RETIRED_BUFFER][0]
    assert f"the outage disabled (outage-off.yml enables them again): {retired}" in output
    assert images_path(leginon) == ORIGINAL_IMAGES_PATH
    assert flag(sql) == "1"
    assert buffer_rows(sql)[RETIRED_BUFFER] == (retired, 1)
    assert buffer.file(ROWS_RECORD).exists
    assert status(buffer)["archive"]["paused"]


def test_outage_off_restores_catches_up_and_reports(buffer, leginon, sql):
    rc, output, recap = playbook("outage-off.yml", "--diff")
    assert rc == 0, output
    assert recap[BUFFER]["changed"] > 0

    assert sha(leginon, LEGINON_CFG) == drill["cfg_sha"]  # byte for byte the original
    assert not leginon.file(f"{LEGINON_CFG}.embuffer-outage").exists
    assert flag(sql) == "0"
    # both rows as they were before the outage, the record gone; the moved session has one
    # BufferFramePathData row, still the moved folder, where both its movies are
    assert buffer_rows(sql) == drill["rows"]
    assert not buffer.file(ROWS_RECORD).exists
    ours = drill["rows"][BUFFER][0]
    assert leginon_rules(sql) == {
        "transfer_row": ours,
        "transfer_uses_buffer": True,
        "appion_row": ours,
        "appion_path": MOVED_PATH,
    }
    assert [row[1:] for row in frame_path_rows(sql, SESSION_M_NAME)] == [(str(ours), MOVED_PATH)]
    assert on(buffer, BUFFER_ROOT, frames(SESSION_M[1]))
    show_leginondb(sql, "after the outage")
    archive = status(buffer)["archive"]
    assert not archive["paused"]
    assert archive["backlog_files"] == 0
    assert status(buffer)["buffer"]["outage"] is None

    report = json.loads(
        buffer.check_output("runuser -u embuffer -- %s outage report --json", EMBUFFER)
    )
    assert not report["active"] and report["end"] and report["reason"] == REASON
    reported = set(report["movies"])
    outage_era = {
        f"{BUFFER_ROOT}/{MOVIES[n]['relative']}"
        for n in frames(STREAM + AFTER_SWITCH + SESSION_M[1][1:])
    }
    before = {f"{BUFFER_ROOT}/{MOVIES[n]['relative']}" for n in frames(BEFORE)}
    assert {f"{BUFFER_ROOT}/{MOVIES[n]['relative']}" for n in frames(AFTER_SWITCH)} <= reported
    assert reported <= outage_era and not reported & before
    assert report["movies_ingested"] == len(report["movies"])
    assert [(s["name"], s["image_path"]) for s in report["sessions_in_outage_location"]] == [
        (SESSION_B_NAME, SESSION_B_IMAGE_PATH)
    ]
    assert report["backlog_files"] == 0
    assert report["sessions_appion_cannot_find"] == []
    # The playbook printed the same report.
    assert f"session {SESSION_B_NAME}: {SESSION_B_IMAGE_PATH}" in output
    for path in reported:
        assert f"movie: {path}" in output
    assert "Backlog remaining for primary storage: 0 files" in output


def test_outage_off_again_changes_nothing():
    rc, output, recap = playbook("outage-off.yml")
    assert rc == 0, output
    assert recap and all(host["changed"] == 0 for host in recap.values()), recap


# ---- the books balance ----------------------------------------------------------------------
def test_every_movie_is_on_buffer_and_primary_exactly_once_and_identical(buffer, leginon):
    expected = sorted(m["relative"] for m in MOVIES.values())
    for root in (BUFFER_ROOT, PRIMARY_ROOT):
        found = buffer.check_output(
            "cd %s && find . -type f -name '*.frames.mrc' -printf '%%P\\n' | sort", root
        ).splitlines()
        assert found == expected, (root, found)
        for movie in MOVIES.values():
            assert sha(buffer, f"{root}/{movie['relative']}") == movie["sha256"], movie
    assert buffer.check_output("ls -A %s", CAMERA_FOLDER) == ""
    assert buffer.check_output("find /bufferdata/quarantine -type f") == ""
    # Every movie verified on primary, none still waiting; probes left nothing behind.
    for root in (BUFFER_ROOT, PRIMARY_ROOT):
        verified = buffer.run("runuser -u embuffer -- %s verify %s", EMBUFFER, root)
        assert verified.rc == 0, verified.stdout + verified.stderr
        assert f"{len(MOVIES)} checked, 0 problem(s)" in verified.stdout
    assert buffer.check_output("find %s -name '.embuffer-outage-probe*'", PRIMARY_ROOT) == ""
    assert leginon.check_output("find /outage -name '.embuffer-outage-probe*'") == ""
