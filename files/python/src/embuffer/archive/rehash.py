"""`embuffer verify`: re-hash files against the journal (bit rot, manual edits, bad disks)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from embuffer.archive.compressed import hash_compressed
from embuffer.config import Config
from embuffer.journal import Journal
from embuffer.journal import queries as q
from embuffer.safecopy.hashing import hash_path
from embuffer.safecopy.partials import is_partial_name


@dataclass
class VerifyReport:
    lines: list[str] = field(default_factory=list)
    checked: int = 0
    problems: int = 0

    @property
    def ok(self) -> bool:
        return self.problems == 0

    def good(self, path: Path) -> None:
        self.checked += 1
        self.lines.append(f"OK        {path}")

    def bad(self, word: str, path: Path, detail: str) -> None:
        self.checked += 1
        self.problems += 1
        self.lines.append(f"{word:<9} {path}: {detail}")

    def summary(self) -> None:
        self.lines.append(f"{self.checked} checked, {self.problems} problem(s)")


def _movie_files(path: Path) -> list[Path]:
    if not path.is_dir() or path.name.endswith(".frames"):
        return [path]
    found: list[Path] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != "references")
        for name in list(dirs):
            if name.endswith(".frames"):
                found.append(Path(root) / name)
                dirs.remove(name)
        found.extend(Path(root) / name for name in sorted(files) if not is_partial_name(name))
    return found


def verify_path(journal: Journal, path: Path) -> VerifyReport:
    """Re-hash a buffer movie, or every movie under a buffer folder, from the device."""
    report = VerifyReport()
    for file in _movie_files(path.absolute()):
        movie = journal.movie_by_dest(str(file))
        if movie is None:
            movie = q.movie_by_primary_path(journal.db, str(file))
        if movie is None:
            report.bad("UNKNOWN", file, "not in the journal")
            continue
        try:
            if file.name.endswith(".bz2") and str(file) == movie.primary_path:
                size, digest = hash_compressed(file)
            else:
                size, digest = hash_path(file, drop_cache=True)
        except OSError as error:
            report.bad("UNREADABLE", file, str(error))
            continue
        if (size, digest) != (movie.size, movie.hash):
            report.bad(
                "MISMATCH", file, f"{size} bytes {digest}, journal: {movie.size} bytes {movie.hash}"
            )
        else:
            report.good(file)
    report.summary()
    return report


def verify_primary_session(config: Config, journal: Journal, session: str) -> VerifyReport:
    """Re-hash every archived movie of a session on primary against the journal."""
    report = VerifyReport()
    movies = q.archived_in_session(journal, session)
    if not movies:
        report.bad("UNKNOWN", Path(session), "no archived movie of this session in the journal")
    for movie in movies:
        primary = movie.primary
        try:
            if primary.name.endswith(".bz2"):
                size, digest = hash_compressed(primary)
            else:
                size, digest = hash_path(primary, drop_cache=True)
        except FileNotFoundError:
            report.bad("MISSING", primary, "archived copy is gone")
            continue
        except OSError as error:
            report.bad("UNREADABLE", primary, str(error))
            continue
        if (size, digest) != (movie.size, movie.hash):
            report.bad(
                "MISMATCH",
                primary,
                f"{size} bytes {digest}, journal: {movie.size} bytes {movie.hash}",
            )
        else:
            report.good(primary)
    report.summary()
    return report
