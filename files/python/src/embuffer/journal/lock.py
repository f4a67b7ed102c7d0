"""One process per service and journal: the flock that `embuffer ingest|archive|purge` hold."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class JournalLocked(Exception):
    pass


class ServiceLock:
    """One process per service (ingest, archive, purge) per journal, held with flock.

    flock is released by the kernel when the process dies, so a kill -9 never leaves a stale
    lock behind; the pid inside the file is only there for the error message.
    """

    def __init__(self, journal_path: Path, service: str) -> None:
        self.journal_path = journal_path
        self.path = journal_path.with_name(f"{journal_path.name}.{service}.lock")
        self.service = service
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise JournalLocked(
                f"another 'embuffer {self.service}' (pid {holder}) is already running on "
                f"journal {self.journal_path}; stop it first "
                f"(systemctl stop embuffer-{self.service}) or use another journal"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ServiceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
