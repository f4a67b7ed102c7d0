"""Archive benchmark: `embuffer archive --once` (buffer -> primary, verified by a re-read from
the device) against `cp`+sync and `rsync -a`+sync on the same buffer files, in one run.

    .venv/bin/python bench/archive_bench.py [--movies 12] [--size-mib 64]

Targets (issue #3): >= 0.8x cp+sync and >= 1.1x rsync -a+sync.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess

from common import bench_host, drop_caches, embuffer, report_throughput, timed
from ingest_bench import make_master, stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", type=int, default=12)
    parser.add_argument("--size-mib", type=int, default=64)
    args = parser.parse_args()
    host = bench_host()
    try:
        names = make_master(host, args.movies, args.size_mib)
        total = stage(host, names, ["true"])
        subprocess.run(
            embuffer("--config", str(host.config), "ingest", "--once"),
            check=True,
            stderr=subprocess.DEVNULL,
        )
        buffer_session = host.root / "buffer" / "bench"
        results = {}
        for label, command, target in (
            ("cp + sync", ["cp", "--version"], "dest-cp"),
            ("rsync -a + sync", ["rsync", "--version"], "dest-rsync"),
        ):
            host.clear(target)
            drop_caches()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            if label.startswith("cp"):
                results[label] = timed(["cp", "-r", str(buffer_session), str(host.root / target)])
            else:
                results[label] = timed(
                    ["rsync", "-a", f"{buffer_session}/", f"{host.root / target}/"]
                )
        host.clear("primary")
        drop_caches()
        subprocess.run(
            embuffer("--config", str(host.config), "status"), check=True, stdout=subprocess.DEVNULL
        )
        results["embuffer archive"] = timed(
            embuffer("--config", str(host.config), "archive", "--once")
        )
        connection = sqlite3.connect(host.root / "state" / "journal.sqlite")
        (archived,) = connection.execute(
            "SELECT COUNT(*) FROM movies WHERE primary_verified_at IS NOT NULL"
        ).fetchone()
        connection.close()
        assert archived == len(names), f"only {archived} of {len(names)} archived"
        report_throughput(
            f"archive throughput, {len(names)} movies", total, results, "embuffer archive"
        )
    finally:
        host.server.stop()
        shutil.rmtree(host.root, ignore_errors=True)


if __name__ == "__main__":
    main()
