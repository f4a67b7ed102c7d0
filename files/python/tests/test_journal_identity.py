"""The journal vanishing under a running service: nothing irreversible may follow."""

from __future__ import annotations

import os
import time

import pytest
from support.movies import mrc_bytes
from test_faults import start_daemon, wait_for

from embuffer.journal import Journal, JournalReplaced


def test_make_durable_refuses_a_deleted_or_replaced_journal(tmp_path):
    path = tmp_path / "journal.sqlite"
    journal = Journal(path, sync_each_commit=False)
    journal.set_setting("k", 1)
    journal.make_durable()  # the journal it opened: fine
    os.rename(path, tmp_path / "moved.sqlite")
    path.write_bytes(b"")  # another file under the journal's name
    with pytest.raises(JournalReplaced, match="replaced by another file"):
        journal.make_durable()
    path.unlink()
    with pytest.raises(JournalReplaced, match="was deleted"):
        journal.make_durable()


def test_a_removed_write_ahead_log_is_noticed(tmp_path):
    path = tmp_path / "journal.sqlite"
    journal = Journal(path, sync_each_commit=False)
    journal.set_setting("k", 1)
    os.unlink(f"{path}-wal")
    with pytest.raises(JournalReplaced, match="write-ahead log"):
        journal.make_durable()


def test_ingest_stops_without_removing_a_camera_copy_when_its_journal_is_deleted(host, registered):
    session, camera = registered["session"], registered["camera"]
    host.write_config(settle_seconds=0.5)
    daemon = start_daemon(host)
    try:
        host.leginon.acquisition(session, camera, "20261126_150000_01", "jn_1")
        (host.camera / "20261126_150000_01.mrc").write_bytes(mrc_bytes(8, 8, 2, seed=1))
        wait_for(lambda: not (host.camera / "20261126_150000_01.mrc").exists(), 30, "movie 1")
        for leftover in host.journal.parent.glob("journal.sqlite*"):
            if not leftover.name.endswith(".lock"):
                leftover.unlink()  # an operator's rm, a broken clean-up script
        host.leginon.acquisition(session, camera, "20261126_150000_02", "jn_2")
        second = host.camera / "20261126_150000_02.mrc"
        second.write_bytes(mrc_bytes(8, 8, 2, seed=2))
        code = daemon.wait(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert code != 0, "the service must stop, so that systemd restarts it"
    assert b"stopping before anything irreversible" in daemon.stderr.read()
    assert second.exists(), "no camera copy removed with nothing durable behind it"
    time.sleep(0.1)
