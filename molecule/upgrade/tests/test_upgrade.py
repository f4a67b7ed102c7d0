"""The upgrade in the middle of a session, told step by step (pytest stops at the first broken
step): the previous release's ingest was stopped in the middle of a big copy; the camera
stops and the buffer drains; every movie the camera wrote, before, during and after the
upgrade, is on the buffer and on primary storage exactly once, at its Leginon name, with the
camera's hash, and nothing is left on the camera; the journal is at the code's version with
every row of the previous release; both buffer servers run the current tree with no unit
failed and the archive and purge running; the figures of the upgrade; a journal newer than
the code is refused and left unwritten; and the rollout stops at the first buffer server that
fails its post-upgrade check, leaving the next one untouched.
"""

from __future__ import annotations

import json
import time
import tomllib

from conftest import (
    BUFFER_1,
    BUFFER_2,
    EPHEMERAL,
    JOURNAL,
    PROJECT,
    read_journal,
    site_yml,
    sql,
)

EMBUFFER = "/opt/embuffer/venv/bin/embuffer"
VENV_PYTHON = "/opt/embuffer/venv/bin/python"
CAMERA_STATE = "/var/lib/upgrade-camera"
CAMERA_FOLDER = "/mnt/k3-cam-01"
HOOK_RUN = "/run/upgrade-camera"
BUFFER_ROOT = "/bufferdata/frames"
PRIMARY_ROOT = "/primary/frames"
QUARANTINE = "/bufferdata/quarantine"
SESSION_RELATIVE = "alice/27nov26a/rawdata"
DAEMONS = ["embuffer-ingest.service", "embuffer-archive.service", "embuffer-metrics.service"]
MIN_PARTIAL_BYTES = 300 * 1024 * 1024
EXIT_JOURNAL_TOO_NEW = 65
# What an operator would call the ingest being back: well within a stop's TimeoutStopSec.
MAX_INGEST_DOWN_SECONDS = 120
DRAIN_TIMEOUT = 900

# What the steps learn and later steps report.
figures: dict[str, object] = {}


def leginon_name(entry: dict) -> str:
    """Where a movie of the camera must land, relative to the buffer and primary roots."""
    return f"{SESSION_RELATIVE}/27nov26a_00001gr_00002sq_v01_{entry['k']:05d}ex.frames.mrc"


def manifest(buffer_1) -> list[dict]:
    text = buffer_1.file(f"{CAMERA_STATE}/written.jsonl").content_string
    return [json.loads(line) for line in text.splitlines() if line]


def hook_record(buffer_1) -> dict:
    return json.loads(buffer_1.file(f"{HOOK_RUN}/sigterm.json").content_string)


def hashes_under(host, root: str) -> dict[str, list[str]]:
    """sha256 -> the files under root (relative) with that content."""
    output = host.check_output("find %s -type f -print0 | xargs -0 -r sha256sum", root)
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        digest, path = line.split(None, 1)
        found.setdefault(digest, []).append(path.removeprefix(root + "/"))
    return found


def code_journal_version(host) -> int:
    return int(
        host.check_output(
            "%s -c %s",
            VENV_PYTHON,
            "from embuffer.journal.migrations import SCHEMA_VERSION; print(SCHEMA_VERSION)",
        )
    )


def unit_events(host, unit: str, since: float) -> list[dict]:
    """systemd's job messages about a unit since a time: [{'at', 'job', 'result'}]."""
    output = host.check_output(
        "journalctl --no-pager -o json -u %s --since @%s", unit, str(int(since) - 1)
    )
    events = []
    for line in output.splitlines():
        record = json.loads(line)
        message = str(record.get("MESSAGE", ""))
        job = record.get("JOB_TYPE") or (
            "start"
            if message.startswith("Started ")
            else "stop"
            if message.startswith(("Stopping ", "Stopped "))
            else None
        )
        if job:
            events.append(
                {
                    "at": int(record["__REALTIME_TIMESTAMP"]) / 1e6,
                    "job": job,
                    "result": record.get(
                        "JOB_RESULT", "done" if message.startswith("Started ") else None
                    ),
                    "message": message,
                }
            )
    return events


def test_the_upgrade_stopped_the_previous_ingest_in_the_middle_of_a_big_copy(buffer_1):
    record = hook_record(buffer_1)
    print(f"\nrestart hook: {record}")
    assert record["partial"], "the ingest was restarted with no big copy in flight"
    assert record["partial_bytes"] >= MIN_PARTIAL_BYTES
    assert record["partial"].startswith(BUFFER_ROOT + "/")
    before = json.loads(buffer_1.file(f"{CAMERA_STATE}/journal-before.json").content_string)
    figures["journal version before the upgrade"] = before["user_version"]
    figures["journal version at SIGTERM"] = record["journal_user_version"]
    # The purge timer fires every 15 s here (molecule.yml): had it started the new release
    # before the previous ingest stopped, the journal would be migrated already.
    assert record["journal_user_version"] == before["user_version"], (
        "the new release ran (and migrated the journal) while the previous one still ran"
    )
    # That copy is gone now: published by one of the two releases, or rolled back and redone.
    assert not buffer_1.file(record["partial"]).exists


def test_camera_stops_and_the_buffer_drains(buffer_1):
    buffer_1.run("touch %s/stop", CAMERA_STATE)
    deadline = time.monotonic() + 120
    while not buffer_1.file(f"{CAMERA_STATE}/finished").exists:
        assert time.monotonic() < deadline, "the camera did not stop"
        time.sleep(2)
    written = manifest(buffer_1)
    expected = {f"{CAMERA_FOLDER}/{entry['name']}.mrc": entry for entry in written}
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        rows = read_journal(
            buffer_1,
            "SELECT source_path, state, primary_verified_at FROM movies WHERE camera = 'k3-cam-01'",
        )["rows"]
        settled = {
            row["source_path"]
            for row in rows
            if (row["state"] == "done" and row["primary_verified_at"])
            or (
                row["state"] == "quarantined"
                and expected.get(row["source_path"], {}).get("kind") == "orphan"
            )
        }
        waiting = sorted(set(expected) - settled)
        if not waiting:
            break
        assert time.monotonic() < deadline, (
            f"{len(waiting)} movies never reached primary: {waiting[:5]}"
        )
        time.sleep(5)
    figures["movies written"] = len(written)
    figures["GB written"] = round(sum(entry["bytes"] for entry in written) / 1e9, 2)


def test_every_movie_is_on_buffer_and_primary_exactly_once_with_its_hash(buffer_1):
    written = manifest(buffer_1)
    movies = [entry for entry in written if entry["kind"] != "orphan"]
    orphans = [entry for entry in written if entry["kind"] == "orphan"]
    expected = {leginon_name(entry): entry["sha256"] for entry in movies}
    for root in (BUFFER_ROOT, PRIMARY_ROOT):
        found = hashes_under(buffer_1, root)
        at = {path: digest for digest, paths in found.items() for path in paths}
        assert sorted(at) == sorted(expected), f"{root}: other files than the movies"
        wrong = [path for path, digest in expected.items() if at[path] != digest]
        assert not wrong, f"{root}: content differs from the camera's: {wrong[:5]}"
        twice = {digest: paths for digest, paths in found.items() if len(paths) > 1}
        assert not twice, f"{root}: one movie under several names: {twice}"
    quarantined = hashes_under(buffer_1, QUARANTINE)
    for entry in orphans:
        assert len(quarantined.get(entry["sha256"], [])) == 1, "the orphan is not quarantined once"
    assert not set(quarantined) & set(expected.values()), "a matched movie is in quarantine"
    figures["movies in place (buffer and primary)"] = len(movies)
    figures["big movies (1-1.5 GB)"] = sum(entry["kind"] != "small" for entry in movies)


def test_nothing_is_left_on_the_camera(buffer_1):
    assert buffer_1.check_output("find %s -mindepth 1", CAMERA_FOLDER) == ""


def test_the_journal_is_migrated_and_keeps_every_earlier_row(buffer_1):
    # What no later step may change about a row, and what a finished row keeps besides.
    identity = ("id", "camera", "source_path", "kind", "first_seen")
    outcome = ("size", "hash", "closed_at", "dest_path", "rel_path", "primary_path", "primary_hash")
    snapshot = read_journal(
        buffer_1, "SELECT * FROM movies", f"{HOOK_RUN}/journal-at-sigterm.sqlite"
    )
    now = read_journal(buffer_1, "SELECT * FROM movies")
    version = code_journal_version(buffer_1)
    assert now["user_version"] == version
    assert figures["journal version before the upgrade"] < version
    after = {row["id"]: row for row in now["rows"]}
    states: dict[str, int] = {}
    for row in snapshot["rows"]:
        states[row["state"]] = states.get(row["state"], 0) + 1
        assert row["id"] in after, f"row {row['id']} ({row['source_path']}) lost"
        migrated = after[row["id"]]
        assert [migrated[name] for name in identity] == [row[name] for name in identity]
        if row["hash"] is not None:
            assert migrated["hash"] == row["hash"], row["source_path"]
        if row["state"] in ("done", "quarantined"):
            # Finished by the previous release: the same outcome, archived or not yet.
            assert migrated["state"] == row["state"], row["source_path"]
            kept = [name for name in outcome if row[name] is not None]
            assert [migrated[name] for name in kept] == [row[name] for name in kept]
    figures["journal version after"] = now["user_version"]
    figures["journal rows of the previous release at SIGTERM, by state"] = states
    # The copy kept while the migration ran is gone once it committed.
    leftovers = buffer_1.check_output("find /var/lib/embuffer -name 'journal.sqlite.pre-*'")
    assert leftovers == ""


def test_both_buffer_servers_run_the_current_tree(buffer_1, buffer_2):
    tree_version = tomllib.loads((PROJECT / "files/python/pyproject.toml").read_text())["project"][
        "version"
    ]
    started = float((EPHEMERAL / "upgrade-started").read_text())
    for host in (buffer_1, buffer_2):
        said = host.check_output("%s --version", EMBUFFER)
        assert said.split()[:2] == ["embuffer", tree_version], said
        installed = host.check_output(
            "stat -c %%Y %s/lib/python3*/site-packages/embuffer-*.dist-info/RECORD",
            "/opt/embuffer/venv",
        )
        assert float(installed) >= int(started), "the package was not installed by the upgrade"
        # The venv of the previous release's layout made way for a link to the release.
        venv = host.file("/opt/embuffer/venv")
        assert venv.is_symlink, "/opt/embuffer/venv is not the link to the release in use"
        releases = host.check_output("ls /opt/embuffer/releases").split()
        assert venv.linked_to == f"/opt/embuffer/releases/{releases[0]}", (venv.linked_to, releases)
        assert releases[0].startswith(f"{tree_version}-py3."), releases
        assert host.check_output("systemctl list-units --failed --plain --no-legend") == ""
        for unit in DAEMONS + ["embuffer-purge.timer"]:
            service = host.service(unit)
            assert service.is_enabled and service.is_running, unit
        # The purge of the current tree runs on the migrated journal.
        purged = host.run("systemctl start embuffer-purge.service")
        assert purged.rc == 0, host.check_output("journalctl --no-pager -n 20 -u embuffer-purge")


def test_figures_of_the_upgrade(buffer_1):
    record = hook_record(buffer_1)
    started = float((EPHEMERAL / "upgrade-started").read_text())
    ended = float((EPHEMERAL / "upgrade-ended").read_text())
    written = manifest(buffer_1)
    during = [entry for entry in written if entry["closed"] >= started and entry["opened"] <= ended]
    events = unit_events(buffer_1, "embuffer-ingest.service", record["asked_at"])
    print(f"\nembuffer-ingest jobs since the restart hook: {events}")
    starts = [
        e
        for e in events
        if e["job"] == "start" and e["result"] == "done" and e["at"] > record["sigterm_at"]
    ]
    assert starts, "the ingest never started again after the upgrade's restart"
    back = starts[0]["at"]
    down = back - record["sigterm_at"]
    # The purge timer fired during the upgrade (every 15 s here), and every run before the
    # switch was the previous release's: the journal was still at its version at SIGTERM.
    purges = unit_events(buffer_1, "embuffer-purge.service", started)
    purges_before = [e for e in purges if e["job"] == "start" and e["at"] < record["sigterm_at"]]
    assert purges_before, "the purge timer never fired during the upgrade: the test proves nothing"
    published = read_journal(
        buffer_1,
        f"SELECT MIN(buffer_visible_at) AS first FROM movies WHERE buffer_visible_at > {back}",
    )["rows"][0]["first"]
    figures.update(
        {
            "upgrade (converge of buffer-1 and buffer-2) minutes": round((ended - started) / 60, 1),
            "movies written during the upgrade": len(during),
            "GB written during the upgrade": round(sum(e["bytes"] for e in during) / 1e9, 2),
            "copy in flight at SIGTERM (MB)": round(record["partial_bytes"] / 1e6),
            "restart held for the big copy (s)": round(
                record["sigterm_at"] - record["asked_at"], 1
            ),
            "ingest down, SIGTERM to new ingest started (s)": round(down, 1),
            "purge runs during the upgrade, before the switch": len(purges_before),
            "SIGTERM to first movie published by the new ingest (s)": (
                round(published - record["sigterm_at"], 1) if published else None
            ),
        }
    )
    print("\n=== upgrade figures")
    for name, value in figures.items():
        print(f"{name:60s} {value}")
    assert len(during) > 0, "the camera wrote nothing during the upgrade"
    assert down < MAX_INGEST_DOWN_SECONDS


def test_a_journal_newer_than_the_code_is_refused_and_not_written(buffer_1):
    version = code_journal_version(buffer_1)
    # Everything that opens the journal (the purge through its timer) stops first.
    units = " ".join([*DAEMONS, "embuffer-purge.timer"])
    stopped = buffer_1.run(f"systemctl stop {units}")
    assert stopped.rc == 0, stopped.stderr
    set_version = (
        "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
        "db.execute(f'PRAGMA user_version = {int(sys.argv[2])}'); db.commit(); db.close()"
    )
    bumped = buffer_1.run(
        "runuser -u embuffer -- python3 -c %s %s %s", set_version, JOURNAL, str(version + 1)
    )
    assert bumped.rc == 0, bumped.stderr
    before = buffer_1.check_output("sha256sum %s", JOURNAL)
    since = time.time()
    try:
        buffer_1.run("systemctl start embuffer-ingest.service")
        deadline = time.monotonic() + 60
        while True:
            shown = buffer_1.check_output(
                "systemctl show --property=ActiveState,ExecMainStatus,NRestarts "
                "embuffer-ingest.service"
            )
            state = dict(line.split("=", 1) for line in shown.splitlines())
            if state["ActiveState"] == "failed":
                break
            assert time.monotonic() < deadline, f"the ingest did not give up: {state}"
            time.sleep(1)
        log = buffer_1.check_output(
            "journalctl --no-pager -u embuffer-ingest.service --since @%s", str(int(since))
        )
        print(f"\n{state}\n{log[-2000:]}")
        # EX_DATAERR, which the units do not restart on: only the newer release would help.
        assert state["ExecMainStatus"] == str(EXIT_JOURNAL_TOO_NEW)
        assert f"schema version {version + 1}, written by a newer embuffer" in log
        assert buffer_1.check_output("sha256sum %s", JOURNAL) == before, "the journal was written"
    finally:
        buffer_1.run(
            "runuser -u embuffer -- python3 -c %s %s %s", set_version, JOURNAL, str(version)
        )
        buffer_1.run("systemctl reset-failed embuffer-ingest.service")
        buffer_1.run(f"systemctl start {units}")
    for unit in DAEMONS:
        assert buffer_1.service(unit).is_running, unit


def test_the_rollout_stops_at_the_first_buffer_server_that_fails_its_check(db_host):
    # buffer-1 (first in the rollout) loses its leginondb login: an account for its address
    # with another password takes precedence over 'embuffer'@'%'. Its daemons keep their
    # connections and nothing in the roles notices; only the post-upgrade check does.
    address = db_host.check_output("getent ahostsv4 %s | awk 'NR==1 {print $1}'", BUFFER_1)
    sql(db_host, f"CREATE USER 'embuffer'@'{address}' IDENTIFIED BY 'not-the-password'")
    try:
        rc, output, recap = site_yml()
        assert rc != 0
        assert recap[BUFFER_1]["failed"] == 1
        check = output.index("TASK [Check the configuration as the service account sees it]")
        step = output[check : output.find("TASK [", check + 1)]
        assert f"fatal: [{BUFFER_1}]" in step, "buffer-1 did not fail at its post-upgrade check"
        assert recap.get(BUFFER_2, {"ok": 0})["ok"] == 0, "the rollout went on to buffer-2"
    finally:
        sql(db_host, f"DROP USER 'embuffer'@'{address}'")
    # Fixed, the rollout passes both servers, and a third converge changes nothing.
    rc, output, recap = site_yml()
    assert rc == 0
    for host in (BUFFER_1, BUFFER_2):
        assert recap[host]["failed"] == 0 and recap[host]["changed"] == 0, recap
