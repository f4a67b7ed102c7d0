"""Journal benchmark: purge planning and `embuffer status` on a journal of 1,000,000 movies.

    .venv/bin/python bench/journal_bench.py [--movies 1000000]

Targets (issue #3): purge plan (`embuffer purge --dry-run`) < 10 s; `embuffer status` < 1 s.
The journal is synthetic but shaped like a busy year: four cameras, most movies archived and
purged, two weeks on the buffer, a backlog not yet on primary, events for every step.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def build_journal(path: Path, movies: int) -> None:
    from embuffer.journal import Journal

    journal = Journal(path)
    now = time.time()
    rng = random.Random(1)
    cameras = [f"cam-{n}" for n in range(4)]
    movie_rows = []
    event_rows = []
    for index in range(movies):
        age = (movies - index) * (365 * 86400 / movies)  # one year of intake, oldest first
        at = now - age
        camera = cameras[index % 4]
        session = f"26{index // 2000:05d}a"
        rel = f"user/{session}/rawdata/img_{index:08d}.frames.tif"
        if age > 14 * 86400:
            state, primary_at = "purged", at + 600
        elif index % 50 == 0:
            state, primary_at = "done", None  # backlog
        else:
            state, primary_at = "done", at + 600
        size = rng.randint(300_000_000, 5_000_000_000)
        movie_rows.append(
            (
                camera,
                f"/mnt/{camera}/x_{index}.tif",
                "file",
                state,
                size,
                "0" * 32,
                at,
                at,
                at + 1,
                at + 3,
                at + 4,
                at + 4,
                "AcquisitionImageData",
                index,
                f"img_{index:08d}",
                index // 2000,
                session,
                "buffer",
                f"/bufferdata/frames/{rel}",
                rel,
                1000,
                1000,
                f"/primary/frames/{rel}" if primary_at else None,
                "0" * 32 if primary_at else None,
                size if primary_at else None,
                primary_at,
            )
        )
        event_rows.append((at + 4, index + 1, camera, "ingested", size, ""))
        if primary_at:
            event_rows.append((primary_at, index + 1, camera, "archived", size, ""))
    with journal.transaction() as db:
        db.executemany(
            "INSERT INTO movies (camera, source_path, kind, state, size, hash, first_seen, "
            "closed_at, copy_started_at, buffer_visible_at, verified_at, source_removed_at, "
            "image_table, image_id, image_filename, session_id, session_name, target, "
            "dest_path, rel_path, uid, gid, primary_path, primary_hash, primary_size, "
            "primary_verified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, ?, ?, ?, ?, ?, ?, ?, ?)",
            movie_rows,
        )
        db.executemany(
            "INSERT INTO events (at, movie_id, camera, action, bytes, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            event_rows,
        )
    journal.db.execute("ANALYZE")
    journal.close()


def write_config(root: Path) -> Path:
    for name in ("buffer", "quarantine", "camera"):
        (root / name).mkdir()
    credentials = root / "leginondb.cnf"
    credentials.write_text("[client]\nuser = x\npassword = y\nhost = 127.0.0.1\ndatabase = l\n")
    credentials.chmod(0o600)
    config = root / "embuffer.toml"
    config.write_text(f"""[buffer]
root = "{root / "buffer"}"
hostname = "bench"
quarantine = "{root / "quarantine"}"
journal = "{root / "journal.sqlite"}"
[database]
credentials = "{credentials}"
[[camera]]
host = "cam-0"
path = "{root / "camera"}"
[purge]
retention_days = 7
""")
    return config


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "embuffer.cli", *args],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", type=int, default=1_000_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="embuffer-journal-bench-", dir="/var/tmp"))
    try:
        started = time.perf_counter()
        build_journal(root / "journal.sqlite", args.movies)
        config = write_config(root)
        size = (root / "journal.sqlite").stat().st_size / 2**20
        print(
            f"journal of {args.movies} movies built in {time.perf_counter() - started:.1f} s "
            f"({size:.0f} MiB)"
        )
        # The plan walks every buffer copy older than the retention (a week of movies here).
        plan = timed(["--config", str(config), "purge", "--dry-run"])
        status = timed(["--config", str(config), "status"])
        status_json = timed(["--config", str(config), "status", "--json"])
        startup = timed(["--version"])
        print(
            f"  purge --dry-run (plan): {plan:6.2f} s  (target < 10 s) "
            f"{'OK' if plan < 10 else 'MISSED'}"
        )
        print(
            f"  status:                 {status:6.2f} s  (target < 1 s) "
            f"{'OK' if status < 1 else 'MISSED'}"
        )
        print(f"  status --json:          {status_json:6.2f} s")
        print(f"  baseline: interpreter start-up and `embuffer --version`: {startup:.2f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
