"""ExecStop hook of the ingest unit during the upgrade: stop it while a big copy is in flight.

When systemd stops embuffer-ingest.service (the upgrade's restart), it runs this first and
sends SIGTERM only when it returns. Armed once by prepare.yml (the `armed` file), it asks the
camera for a big movie, waits until the ingest is copying one (a partial file of at least
MIN_PARTIAL_BYTES in the buffer), keeps a copy of the journal as it is at that moment, and
returns, so that the ingest of the previous release is stopped in the middle of a multi-GB
copy instead of whenever the playbook happens to get there. Unarmed, it returns at once.
Runs as root (ExecStop=+), with the system python3.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

RUN = Path("/run/upgrade-camera")
ARMED = RUN / "armed"
RESTART_FLAG = RUN / "restart-pending"
RECORD = RUN / "sigterm.json"
SNAPSHOT = RUN / "journal-at-sigterm.sqlite"
PARTIAL_SUFFIX = ".embuffer-partial"
MIN_PARTIAL_BYTES = 300 * 1024 * 1024
# Within the unit's TimeoutStopSec (120 s), which also bounds this ExecStop.
WAIT_SECONDS = 90


def biggest_partial(root: str) -> tuple[str, int] | None:
    found = None
    for folder, _dirs, names in os.walk(root):
        for name in names:
            if name.endswith(PARTIAL_SUFFIX):
                path = os.path.join(folder, name)
                try:
                    size = os.stat(path).st_size
                except FileNotFoundError:  # published or rolled back meanwhile
                    continue
                if found is None or size > found[1]:
                    found = (path, size)
    return found


def snapshot(journal: str) -> int:
    """Copy the journal (read-only, consistent) and return its user_version."""
    source = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(SNAPSHOT)
        source.backup(target)
        # A file of its own, which the service account can read without a -shm beside it.
        target.execute("PRAGMA journal_mode=DELETE")
        target.close()
        SNAPSHOT.chmod(0o644)
        return int(source.execute("PRAGMA user_version").fetchone()[0])
    finally:
        source.close()


def main() -> int:
    buffer_root, journal = sys.argv[1], sys.argv[2]
    if not ARMED.exists():
        return 0
    ARMED.unlink()
    asked = time.time()
    RESTART_FLAG.touch()
    partial = None
    while time.time() - asked < WAIT_SECONDS:
        found = biggest_partial(buffer_root)
        if found and found[1] >= MIN_PARTIAL_BYTES:
            partial = found
            break
        time.sleep(0.1)
    sigterm_at = time.time()
    record = {
        "asked_at": asked,
        "sigterm_at": sigterm_at,
        "partial": partial[0] if partial else None,
        "partial_bytes": partial[1] if partial else None,
        "journal_user_version": snapshot(journal),
    }
    RECORD.write_text(json.dumps(record) + "\n", encoding="utf-8")
    print(f"upgrade restart hook: SIGTERM follows now, {json.dumps(record)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
