"""The ingest service as a buffer server runs it: `embuffer ingest`, a process of its own,
started and stopped by signal like systemd does, and the load it puts on the camera share
(SMB requests the server answered) and on leginondb (statements the server answered) over a
window of wall time.

The service is started with this interpreter and the environment of the test, so a
PYTHONPATH pointing at an older checkout's files/python/src measures that code instead.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from support.mariadb_server import MariaDBServer
from support.smb_share import SmbCameraShare, SmbRequests

# the service finishes or rolls back the file in flight on SIGTERM (systemd's stop)
STOP_SECONDS = 60.0


class IngestService:
    """`embuffer --config <config> ingest`, its output appended to `log`."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> IngestService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> float:
        """Start the service; returns the monotonic time it was started at."""
        if self._process is not None:
            raise RuntimeError("the ingest service is already running")
        with open(self.log, "ab") as output:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "embuffer.cli", "--config", str(self.config), "ingest"],
                stdout=output,
                stderr=output,
            )
        return time.monotonic()

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def check_running(self) -> None:
        """Raise, with the end of its log, if the service has exited."""
        if self._process is not None and self._process.poll() is not None:
            raise AssertionError(
                f"the ingest service exited ({self._process.returncode}):\n{self.log_tail()}"
            )

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, service: IngestService
) -> float:
    """Seconds until predicate() held, the service kept running meanwhile."""
    start = time.monotonic()
    while not predicate():
        service.check_running()
        if time.monotonic() - start > timeout:
            raise AssertionError(f"no {what} after {timeout:.0f} s:\n{service.log_tail()}")
        time.sleep(0.05)
    return time.monotonic() - start


class StatementCounter:
    """Statements the leginondb server has answered (its Questions), read on one connection
    held open: opening one costs statements of its own, and each reading counts itself."""

    def __init__(self, server: MariaDBServer) -> None:
        self._connection = server.root()

    def close(self) -> None:
        self._connection.close()

    def read(self) -> int:
        with self._connection.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
            row = cursor.fetchone()
        assert row is not None
        return int(row[1])

    def since(self, earlier: int) -> int:
        """Statements others sent since the reading that returned `earlier`."""
        return self.read() - earlier - 1


@dataclass(frozen=True)
class Load:
    """What the camera share and leginondb answered over `seconds` of wall time."""

    seconds: float
    requests: SmbRequests
    statements: int

    @property
    def requests_per_second(self) -> float:
        return self.requests.total / self.seconds

    @property
    def statements_per_second(self) -> float:
        return self.statements / self.seconds

    def __str__(self) -> str:
        return (
            f"{self.requests_per_second:.1f} SMB requests/s {self.requests.nonzero()},"
            f" {self.statements_per_second:.1f} leginondb statements/s over {self.seconds:.1f} s"
        )


def measure_load(share: SmbCameraShare, statements: StatementCounter, seconds: float) -> Load:
    """The load over the next `seconds`. smbd dumps its counters about once a second, so a
    window's SMB count is off by at most a second's requests at either end."""
    requests, statements_before = share.request_counts(), statements.read()
    start = time.monotonic()
    time.sleep(seconds)
    requests_after, answered = share.request_counts(), statements.since(statements_before)
    return Load(time.monotonic() - start, requests_after - requests, answered)
