"""Archive benchmark: `embuffer archive --once` (buffer -> primary, verified by a re-read from
the device) against `cp`+sync and `rsync -a`+sync on the same buffer files, in one run.

    .venv/bin/python bench/archive_bench.py [--movies 12] [--size-mib 64]
                                            [--layout separate|single|both] [--rounds 3]

Targets (issue #3): >= 0.8x cp+sync and >= 1.1x rsync -a+sync. Layouts (see common.py):
"separate" writes primary copies to a block device of their own, as primary storage is in
production; "single" writes them to the buffer's disk too.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys

from common import (
    BenchHost,
    add_throughput_arguments,
    drop_caches,
    embuffer,
    judged_in,
    report_throughput,
    throughput_host,
    timed,
)
from ingest_bench import make_master, stage


def throughput(host: BenchHost, names: list[str], rounds: int) -> bool:
    total = stage(host, names, ["true"])
    subprocess.run(
        embuffer("--config", str(host.config), "ingest", "--once"),
        check=True,
        stderr=subprocess.DEVNULL,
    )
    buffer_session = host.path("buffer") / "bench"
    archive = embuffer("--config", str(host.config), "archive", "--once")
    results: dict[str, list[float]] = {}
    for _ in range(rounds):
        for label, program, target in (
            ("cp + sync", "cp", "primary-cp"),
            ("rsync -a + sync", "rsync", "primary-rsync"),
        ):
            host.clear(target)
            drop_caches()
            subprocess.run([program, "--version"], check=True, stdout=subprocess.DEVNULL)
            if program == "cp":
                command = ["cp", "-r", str(buffer_session), str(host.path(target))]
            else:
                command = ["rsync", "-a", f"{buffer_session}/", f"{host.path(target)}/"]
            results.setdefault(label, []).append(timed(command))
            shutil.rmtree(host.path(target))
        forget_primary(host)
        drop_caches()
        subprocess.run(
            embuffer("--config", str(host.config), "status"),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        results.setdefault("embuffer archive", []).append(timed(archive))
        connection = sqlite3.connect(host.journal)
        (archived,) = connection.execute(
            "SELECT COUNT(*) FROM movies WHERE primary_verified_at IS NOT NULL"
        ).fetchone()
        connection.close()
        assert archived == len(names), f"only {archived} of {len(names)} archived"
    return report_throughput(
        f"archive throughput, {host.layout} layout, {len(names)} movies",
        total,
        results,
        ["embuffer archive"],
        judged_in(host.layout, ("embuffer archive",)),
    )


def forget_primary(host: BenchHost) -> None:
    """An empty primary and a journal that has archived nothing, for the next round."""
    host.clear("primary")
    connection = sqlite3.connect(host.journal)
    with connection:
        connection.execute(
            "UPDATE movies SET primary_path = NULL, primary_hash = NULL, primary_size = NULL, "
            "primary_verified_at = NULL"
        )
        connection.execute("DELETE FROM events WHERE action = 'archived'")
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_throughput_arguments(parser)
    args = parser.parse_args()
    # the separate device holds the staged camera copies, then primary and a baseline copy
    host, layouts = throughput_host(args, copies=2.5)
    try:
        names = make_master(host, args.movies, args.size_mib)
        met = True
        for layout in layouts:
            host.use(layout)
            met &= throughput(host, names, args.rounds)
    finally:
        host.close()
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
