"""What ansible/site.yml must leave on a buffer server, checked on the running test host.

Folders, owners and modes; the services running as the service user inside the sandbox the
units describe (and systemd rates the units OK or better); the registration in leginondb;
and the job itself: a movie the camera writes travels camera -> buffer -> primary storage
under its Leginon name, byte-identical, handed to the session owner.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import struct
import time

import pytest

testinfra_hosts = ["podman://embuffer-buffer-01"]

EMBUFFER = "/opt/embuffer/venv/bin/embuffer"
DAEMONS = ["embuffer-ingest.service", "embuffer-archive.service", "embuffer-metrics.service"]
UNITS = DAEMONS + ["embuffer-purge.service"]
CAMERA_HOST = "k3-cam-01"
CAMERA_FOLDER = "/mnt/k3-cam-01"
BUFFER_ROOT = "/bufferdata/frames"
PRIMARY_ROOT = "/primary/frames"
# Seeded by prepare.yml as Leginon records an exposure: SessionData (image path, uid/gid),
# CameraEMData (`frames name`) and AcquisitionImageData (`filename`).
SESSION_RELATIVE = "alice/26nov26a/rawdata"
SESSION_UID = SESSION_GID = 5001
FRAMES_NAME = "20261126_101530_02"
IMAGE_FILENAME = "26nov26a_00001gr_00002sq_v01_00002ex"
# All that each unit may hold: the copiers hand copies over (CAP_CHOWN) and write into
# folders of others (CAP_DAC_OVERRIDE), the purge only removes, the exporter only reads.
CAPABILITIES = {
    "embuffer-ingest.service": {"cap_chown", "cap_dac_override"},
    "embuffer-archive.service": {"cap_chown", "cap_dac_override"},
    "embuffer-purge.service": {"cap_dac_override"},
    "embuffer-metrics.service": set(),
}
CAPABILITY_BITS = {"cap_chown": 0, "cap_dac_override": 1}
# The folders each unit may write: the copiers and the purge all of embuffer's, the exporter
# only the journal's (SQLite's read-only readers keep the journal's -shm index there).
COPIER_WRITES = {
    BUFFER_ROOT, "/bufferdata/quarantine", "/var/lib/embuffer", CAMERA_FOLDER, PRIMARY_ROOT,
}
WRITES = {
    "embuffer-ingest.service": COPIER_WRITES,
    "embuffer-archive.service": COPIER_WRITES,
    "embuffer-purge.service": COPIER_WRITES,
    "embuffer-metrics.service": {"/var/lib/embuffer"},
}
# `systemd-analyze security` exposure each unit must stay at or under, a little above what
# Debian 12 (systemd 252) and 13 (257) rate them (roles/embuffer_service/README.md): a
# hardening setting lost on the way fails the verify instead of passing as "OK".
EXPOSURE_THRESHOLDS = {
    "embuffer-ingest.service": 2.4,
    "embuffer-archive.service": 2.4,
    "embuffer-purge.service": 2.2,
    "embuffer-metrics.service": 1.5,
}


def capability_mask(unit: str) -> str:
    """The unit's capabilities as /proc/PID/status shows them."""
    return f"{sum(1 << CAPABILITY_BITS[name] for name in CAPABILITIES[unit]):016x}"


@pytest.mark.parametrize(
    ("path", "owner", "group", "mode"),
    [
        (BUFFER_ROOT, "embuffer", "emdata", 0o2750),
        ("/bufferdata/quarantine", "embuffer", "emdata", 0o2750),
        ("/var/lib/embuffer", "embuffer", "emdata", 0o750),
        (PRIMARY_ROOT, "embuffer", "emdata", 0o2750),
        (CAMERA_FOLDER, "embuffer", "emdata", 0o2775),
        ("/etc/embuffer", "root", "emdata", 0o750),
    ],
)
def test_folder(host, path, owner, group, mode):
    folder = host.file(path)
    assert folder.is_directory
    assert (folder.user, folder.group, folder.mode) == (owner, group, mode)


def test_facility_group_keeps_read_access_by_default_acl(host):
    acl = host.check_output("getfacl --omit-header %s", BUFFER_ROOT)
    assert "default:group:emdata:r-x" in acl.splitlines()


def test_service_account_is_a_system_user_without_login(host):
    user = host.user("embuffer")
    assert user.exists
    assert user.uid < 1000
    assert user.group == "emdata"
    assert user.shell.endswith("nologin")


@pytest.mark.parametrize(
    ("path", "owner", "group", "mode"),
    [
        ("/etc/embuffer/embuffer.toml", "root", "emdata", 0o640),
        ("/etc/embuffer/leginondb.cnf", "embuffer", "emdata", 0o600),
    ],
)
def test_config_file(host, path, owner, group, mode):
    config = host.file(path)
    assert config.is_file
    assert (config.user, config.group, config.mode) == (owner, group, mode)


def test_configuration_names_the_buffer_and_the_camera(host):
    config = host.file("/etc/embuffer/embuffer.toml").content_string
    assert f'root = "{BUFFER_ROOT}"' in config
    assert 'hostname = "embuffer-buffer-01"' in config
    assert f'host = "{CAMERA_HOST}"' in config
    assert f'primary = "{PRIMARY_ROOT}"' in config


def test_service_account_accepts_the_configuration(host):
    # As the daemons see it: readable config and credentials, writable folders.
    result = host.run("runuser -u embuffer -- %s config check", EMBUFFER)
    assert result.rc == 0, result.stdout + result.stderr
    assert ": OK" in result.stdout


@pytest.mark.parametrize("unit", DAEMONS)
def test_daemon_runs_as_the_service_user(host, unit):
    service = host.service(unit)
    assert service.is_enabled
    assert service.is_running
    pid = host.check_output("systemctl show --property=MainPID --value %s", unit)
    assert pid != "0"
    assert host.check_output("ps -o user= -p %s", pid) == "embuffer"


def test_purge_timer_is_enabled_and_persistent(host):
    timer = host.service("embuffer-purge.timer")
    assert timer.is_enabled
    assert timer.is_running
    assert host.check_output(
        "systemctl show --property=Persistent --value embuffer-purge.timer"
    ) == "yes"
    assert host.check_output(
        "systemctl show --property=Type --value embuffer-purge.service"
    ) == "oneshot"


@pytest.mark.parametrize("unit", UNITS)
def test_unit_hardening_properties(host, unit):
    names = [
        "User", "Type", "ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges",
        "UMask", "CapabilityBoundingSet", "AmbientCapabilities", "RestrictAddressFamilies",
        "ReadWritePaths", "ProtectKernelTunables", "ProtectKernelModules", "SystemCallFilter",
    ]
    output = host.check_output("systemctl show --property=%s %s", ",".join(names), unit)
    shown = dict(line.split("=", 1) for line in output.splitlines())
    assert shown["User"] == "embuffer"
    assert shown["Type"] == ("oneshot" if unit == "embuffer-purge.service" else "exec")
    assert shown["ProtectSystem"] == "strict"
    assert shown["ProtectHome"] == "yes"
    assert shown["PrivateTmp"] == "yes"
    assert shown["NoNewPrivileges"] == "yes"
    assert shown["ProtectKernelTunables"] == "yes"
    assert shown["ProtectKernelModules"] == "yes"
    assert shown["UMask"] == "0002"
    assert set(shown["CapabilityBoundingSet"].split()) == CAPABILITIES[unit]
    assert set(shown["AmbientCapabilities"].split()) == CAPABILITIES[unit]
    assert set(shown["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert set(shown["ReadWritePaths"].split()) == WRITES[unit]
    assert shown["SystemCallFilter"]  # an allow list is installed


@pytest.mark.parametrize("unit", DAEMONS)
def test_sandbox_is_in_effect_for_the_running_daemon(host, unit):
    pid = host.check_output("systemctl show --property=MainPID --value %s", unit)
    status = dict(
        line.split(":", 1) for line in host.file(f"/proc/{pid}/status").content_string.splitlines()
    )
    for field in ("CapBnd", "CapEff", "CapAmb"):
        assert status[field].strip() == capability_mask(unit), field
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # a seccomp filter is installed
    # The daemon's own view of the filesystem: the OS read-only, only its folders writable.
    options = {}
    for line in host.file(f"/proc/{pid}/mountinfo").content_string.splitlines():
        fields = line.split()
        options[fields[4]] = set(fields[5].split(","))
    assert "ro" in options["/"], "the root filesystem is writable for the daemon"
    for folder in COPIER_WRITES:
        # the mount a path lies on is the longest mount point above it
        above = [m for m in options if folder == m or folder.startswith(m.rstrip("/") + "/")]
        mount = max(above, key=len)
        writable = "rw" in options[mount]
        assert writable == (folder in WRITES[unit]), f"{folder} writable: {writable} ({mount})"
    for hidden in ("/home", "/root"):  # ProtectHome: empty, read-only
        assert {"ro", "noexec"} <= options[hidden], hidden


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_rates_the_unit_under_its_threshold(host, unit):
    threshold = EXPOSURE_THRESHOLDS[unit]
    # systemd takes the threshold in tenths: 2.4 is --threshold=24
    tenths = round(threshold * 10)
    result = host.run("systemd-analyze security --no-pager --threshold=%s %s", str(tenths), unit)
    report = result.stdout
    print(f"\n$ systemd-analyze security --threshold={tenths} {unit}\n{report}")
    verdict = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", report)
    assert verdict, report + result.stderr
    exposure, rating = float(verdict.group(1)), verdict.group(2)
    print(f"{unit}: exposure {exposure} {rating} (threshold {threshold})")
    assert rating in {"SAFE", "OK"}, f"{unit} is rated {rating} ({exposure})"
    assert exposure <= threshold, f"{unit}: exposure {exposure} over {threshold}"
    assert result.rc == 0, result.stderr  # systemd's own verdict on the threshold


def test_systemd_analyze_verify_finds_nothing_in_the_units(host):
    units = [*UNITS, "embuffer-purge.timer"]
    command = "cd /etc/systemd/system && systemd-analyze verify" + " %s" * len(units)
    result = host.run(command, *units)
    print(f"\n$ systemd-analyze verify {' '.join(units)}\n{result.stdout}{result.stderr}")
    assert result.rc == 0, result.stdout + result.stderr
    # warnings do not change the exit code; none may be about embuffer's units
    findings = [line for line in (result.stdout + result.stderr).splitlines() if "embuffer" in line]
    assert findings == []


def test_buffer_host_is_registered_in_leginondb(sql):
    rows = sql(
        "SELECT b.`buffer hostname`, b.`buffer base path`, b.disabled "
        "FROM BufferHostData b JOIN InstrumentData i ON i.DEF_id = b.`REF|InstrumentData|ccdcamera` "
        f"WHERE i.hostname = '{CAMERA_HOST}' ORDER BY b.DEF_id DESC"
    )
    assert rows, "no BufferHostData row for the camera"
    assert rows[0] == ("embuffer-buffer-01", BUFFER_ROOT, "0")


def movie_bytes(seed: str, nx: int = 96, ny: int = 64, nz: int = 6) -> bytes:
    """A small, whole MRC movie (mode 1, int16): header sizes match the data that follows.
    Seeded by its name, so running the test again drops the same movie."""
    header = bytearray(1024)
    struct.pack_into("<4i", header, 0, nx, ny, nz, 1)
    struct.pack_into("<3i", header, 28, nx, ny, nz)
    struct.pack_into("<3i", header, 64, 1, 2, 3)
    header[208:212] = b"MAP "
    header[212:216] = b"\x44\x44\x00\x00"
    data = random.Random(seed).randbytes(nx * ny * nz * 2)
    return bytes(header) + data


def wait_for_file(host, path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if host.file(path).exists:
            return True
        time.sleep(1)
    return False


def test_movie_travels_from_camera_to_buffer_and_primary(host, sql):
    movie = movie_bytes(FRAMES_NAME)
    digest = hashlib.sha256(movie).hexdigest()
    source = f"{CAMERA_FOLDER}/{FRAMES_NAME}.mrc"
    relative = f"{SESSION_RELATIVE}/{IMAGE_FILENAME}.frames.mrc"
    on_buffer, on_primary = f"{BUFFER_ROOT}/{relative}", f"{PRIMARY_ROOT}/{relative}"

    # The camera PC writes the movie into its share.
    written = host.run(
        "printf %s %s | base64 -d > %s", "%s", base64.b64encode(movie).decode(), source
    )
    assert written.rc == 0, written.stderr

    assert wait_for_file(host, on_buffer, 60), host.check_output(
        "journalctl --no-pager -n 30 -u embuffer-ingest.service"
    )
    buffered = host.file(on_buffer)
    assert buffered.sha256sum == digest
    assert (buffered.uid, buffered.gid) == (SESSION_UID, SESSION_GID)
    # Handed to the session owner without CAP_FOWNER, the session folder keeps its setgid bit.
    folder = host.file(f"{BUFFER_ROOT}/{SESSION_RELATIVE}")
    assert (folder.uid, folder.gid, folder.mode) == (SESSION_UID, SESSION_GID, 0o2775)
    assert wait_for_file(host, on_primary, 60), host.check_output(
        "journalctl --no-pager -n 30 -u embuffer-archive.service"
    )
    archived = host.file(on_primary)
    assert archived.sha256sum == digest
    assert archived.size == len(movie)
    assert (archived.uid, archived.gid) == (SESSION_UID, SESSION_GID)
    # Only a verified copy lets the camera file go.
    assert not host.file(source).exists

    verified = host.run("runuser -u embuffer -- %s verify %s", EMBUFFER, on_buffer)
    assert verified.rc == 0, verified.stdout + verified.stderr
    # The buffer frame path was recorded for Appion, as Leginon's transfer does.
    assert (f"{BUFFER_ROOT}/{SESSION_RELATIVE}",) in sql(
        "SELECT p.`buffer frame path` FROM BufferFramePathData p "
        "JOIN SessionData s ON s.DEF_id = p.`REF|SessionData|session` WHERE s.name = '26nov26a'"
    )


def test_metrics_are_served_on_loopback_and_count_the_movie(host):
    # Runs after the flow test above: the movie it sent must show in the counters.
    fetch = (
        "python3 -c \"import urllib.request; print(urllib.request.urlopen("
        "'http://127.0.0.1:9814/metrics', timeout=10).read().decode())\""
    )
    deadline = time.monotonic() + 60
    while True:
        result = host.run(fetch)
        text = result.stdout
        label = re.escape(f'{{camera="{CAMERA_HOST}"}}')
        ingested = re.search(rf"^embuffer_ingested_movies_total{label} (\S+)$", text, re.M)
        archived = re.search(rf"^embuffer_archived_movies_total{label} (\S+)$", text, re.M)
        if ingested and archived and float(archived.group(1)) >= 1:
            break
        assert time.monotonic() < deadline, f"metrics never counted the movie:\n{text[-2000:]}"
        time.sleep(2)
    assert float(ingested.group(1)) >= 1
    assert re.search(r"^embuffer_up 1(\.0)?$", text, re.M)
    assert re.search(r"^embuffer_detection_latency_seconds_count\{.*\} [1-9]", text, re.M)
    listening = host.check_output("ss -Hltn 'sport = :9814'")
    local_addresses = [line.split()[3] for line in listening.splitlines()]
    assert local_addresses == ["127.0.0.1:9814"], listening  # loopback only
