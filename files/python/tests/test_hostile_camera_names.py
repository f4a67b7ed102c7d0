"""Camera file names that cannot be stored (not UTF-8) or extended (too long)."""

from __future__ import annotations

import os
import sqlite3
import time

from conftest import CAMERA_HOST
from support.movies import mrc_bytes, tiff_bytes

from embuffer.cli import main


def test_unrepresentable_and_overlong_names_are_quarantined_under_safe_names(
    host, registered, capsys
):
    host.write_config(grace_minutes=0)
    camera = os.fsencode(host.camera)
    odd = camera + b"/20261126_\xff\xfe_01.tif"  # Latin-1 bytes from a Windows share
    long = camera + b"/" + b"a" * 240 + b".mrc"
    named = {odd: tiff_bytes(2, 8, 8, seed=1), long: mrc_bytes(8, 8, 2, seed=2)}
    for path, data in named.items():
        with open(path, "wb") as stream:
            stream.write(data)
        os.utime(path, (time.time() - 60, time.time() - 60))
    host.leginon.acquisition(
        registered["session"], registered["camera"], "20261126_160000_01", "ok_1"
    )
    good = host.camera / "20261126_160000_01.mrc"
    good.write_bytes(mrc_bytes(8, 8, 2, seed=3))
    os.utime(good, (time.time() - 60, time.time() - 60))

    assert main(["--config", str(host.config_path), "ingest", "--once"]) == 0

    assert os.listdir(camera) == [], "every file left the camera share, none lost"
    assert (host.buffer_folder() / "ok_1.frames.mrc").exists()
    kept = sorted(os.listdir(host.quarantine / CAMERA_HOST))
    assert len(kept) == 2 and all(name.startswith("unnamed-") for name in kept)
    contents = {(host.quarantine / CAMERA_HOST / name).read_bytes() for name in kept}
    assert contents == set(named.values())
    connection = sqlite3.connect(host.journal)
    reasons = [
        r for (r,) in connection.execute("SELECT reason FROM movies WHERE state = 'quarantined'")
    ]
    connection.close()
    assert any("\\xff\\xfe" in reason and "not UTF-8" in reason for reason in reasons)
    assert any("244 bytes long" in reason for reason in reasons)
    capsys.readouterr()
    assert main(["--config", str(host.config_path), "quarantine", "list"]) == 0
    assert "unnamed-" in capsys.readouterr().out
