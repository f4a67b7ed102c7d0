"""Outage bookkeeping: idempotent start/end, and a report of what happened meanwhile."""

from __future__ import annotations

import json
import os
import time

from conftest import BufferHost
from support.movies import mrc_bytes

from embuffer.cli import main


def run_json(host: BufferHost, capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["--config", str(host.config_path), *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_outage_start_end_and_report(host, registered, capsys):
    location = str(host.root / "outage-images")
    first = run_json(
        host,
        capsys,
        "outage",
        "start",
        "--reason",
        "NFS firmware update",
        "--by",
        "alice",
        "--location",
        location,
    )
    assert first["changed"] and first["outage"]["by"] == "alice"
    again = run_json(
        host,
        capsys,
        "outage",
        "start",
        "--reason",
        "NFS firmware update",
        "--by",
        "alice",
        "--location",
        location,
    )
    assert not again["changed"]
    assert again["outage"]["start"] == first["outage"]["start"]

    # during the outage: a new session whose images live in the outage location, and movies
    outage_session = host.leginon.session("26nov27a", f"{location}/26nov27a/rawdata")
    host.session("26nov26z", uid=10, gid=10)  # an ordinary session: not in the report
    host.leginon.acquisition(
        registered["session"], registered["camera"], "20261127_000001_00", "during_1"
    )
    path = host.camera / "20261127_000001_00.mrc"
    path.write_bytes(mrc_bytes(16, 16, 2, seed=1))
    os.utime(path, (time.time() - 60, time.time() - 60))
    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0
    assert outage_session

    capsys.readouterr()
    assert main(["--config", str(host.config_path), "status"]) == 0
    assert "outage since" in capsys.readouterr().out

    ended = run_json(host, capsys, "outage", "end")
    assert ended["changed"] and ended["outage"]["end"] >= ended["outage"]["start"]
    assert not run_json(host, capsys, "outage", "end")["changed"]

    report = run_json(host, capsys, "outage", "report", "--json")
    assert not report["active"] and report["movies_ingested"] == 1
    assert report["movies"][0].endswith("during_1.frames.mrc")
    assert [s["name"] for s in report["sessions_in_outage_location"]] == ["26nov27a"]
    assert report["backlog_files"] == 1
