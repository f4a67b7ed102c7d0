"""What a structure check reads and what it answers: byte sources and the verdict.

The MRC and TIFF/EER checks share these, so each of them stays a plain function of a byte
source: the tests feed them bytes in memory, the ingest an open file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StructureVerdict:
    """What the structure of a file says about its completeness.

    ``complete`` is None when the format has no structure check (timing-only).
    """

    complete: bool | None
    reason: str
    expected_size: int | None = None
    frames: int | None = None  # MRC nz, TIFF/EER pages (IFDs) of a whole file


class ByteSource(Protocol):
    """Random access to the bytes of a file of known size."""

    @property
    def size(self) -> int: ...

    def read_at(self, offset: int, length: int) -> bytes: ...


class FileSource:
    """A ByteSource over an open file descriptor, read with os.pread."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)


class BytesSource:
    """A ByteSource over bytes in memory (a file as it looked at one moment)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    def read_at(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]


class Incomplete(Exception):
    """Raised inside a check to stop it with a verdict of complete=False."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_exact(source: ByteSource, offset: int, length: int, what: str) -> bytes:
    """Read ``length`` bytes that the caller has checked lie inside the file."""
    data = source.read_at(offset, length)
    if len(data) != length:
        raise Incomplete(f"short read of {what}: {len(data)} of {length} bytes at offset {offset}")
    return data
