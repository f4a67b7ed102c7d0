"""Ingest benchmark: throughput against `cp`+sync and `rsync -a`+sync on the same files in
one run, and the latency from the camera closing a file to its copy starting and to its
final name appearing in the buffer (default settings, full re-read verification on).

    .venv/bin/python bench/ingest_bench.py [--movies 12] [--size-mib 64] [--latency-files 30]

Targets (issue #2): throughput >= 0.8x cp+sync and >= 1.1x rsync -a+sync; close-to-copy-start
p50 <= 1.5 s and p99 <= 3 s.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from common import (
    BenchHost,
    bench_host,
    drop_caches,
    embuffer,
    percentile,
    report_throughput,
    summary,
    timed,
)
from support.movies import eer_bytes, mrc_bytes, tiff_bytes


def make_master(host: BenchHost, movies: int, size_mib: int) -> list[str]:
    """Movies with valid MRC headers and random frames, registered in leginondb."""
    master = host.folder("master")
    names = []
    frame = 1024 * 1024  # 1024 x 1024 mode 0: 1 MiB per frame
    for index in range(movies):
        stem = f"20261126_{index:06d}_00"
        data = mrc_bytes(1024, 1024, size_mib, seed=index)
        assert len(data) == 1024 + size_mib * frame
        (master / f"{stem}.mrc").write_bytes(data)
        host.leginon.acquisition(host.session, host.camera, stem, f"bench_{index:05d}en")
        names.append(f"{stem}.mrc")
    return names


def stage(host: BenchHost, names: list[str], warm: list[str]) -> int:
    """Fresh camera copies of the master movies, closed a minute ago; returns total bytes.

    The copies are written beside the camera folder, the page cache is dropped so their data
    comes from the device, and the program under test runs once on an empty camera folder
    (`cp --version`; `embuffer ingest --once` with nothing to do) so that its own code is not
    read from a cold disk inside the timing: a Python service loads far more code than `cp`,
    and in production it has been running for weeks. Only then are the movies renamed into
    the camera folder (a rename moves no data)."""
    host.clear("camera")
    host.clear("staging")
    total = 0
    for name in names:
        staged = host.root / "staging" / name
        shutil.copyfile(host.root / "master" / name, staged)
        then = time.time() - 60
        os.utime(staged, (then, then))
        total += staged.stat().st_size
    drop_caches()
    subprocess.run(warm, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for name in names:
        os.rename(host.root / "staging" / name, host.root / "camera" / name)
    return total


def throughput(host: BenchHost, names: list[str]) -> dict[str, float]:
    results: dict[str, float] = {}
    camera = host.root / "camera"
    total = stage(host, names, ["cp", "--version"])
    host.clear("dest-cp")
    results["cp + sync"] = timed(["sh", "-c", f'cp "{camera}"/* "{host.root / "dest-cp"}"/'])
    total = stage(host, names, ["rsync", "--version"])
    host.clear("dest-rsync")
    results["rsync -a + sync"] = timed(
        ["rsync", "-a", f"{camera}/", f"{host.root / 'dest-rsync'}/"]
    )
    total = stage(host, names, embuffer("--config", str(host.config), "ingest", "--once"))
    results["embuffer ingest"] = timed(embuffer("--config", str(host.config), "ingest", "--once"))
    landed = list((host.root / "buffer").rglob("*.frames.mrc"))
    assert len(landed) == len(names), f"only {len(landed)} of {len(names)} movies ingested"
    assert not list(camera.iterdir()), "camera share not emptied"
    report_throughput(f"ingest throughput, {len(names)} movies", total, results, "embuffer ingest")
    return results


def latency(host: BenchHost, files: int) -> None:
    """A running ingest service; a camera writes movies one after another."""
    host.clear("buffer")
    host.clear("camera")
    (host.root / "state" / "journal.sqlite").unlink(missing_ok=True)
    rng = random.Random(42)
    daemon = subprocess.Popen(
        embuffer("--config", str(host.config), "ingest"), stderr=subprocess.DEVNULL
    )
    closed: dict[str, float] = {}
    try:
        time.sleep(2.0)
        for index in range(files):
            kind = ("mrc", "tif", "eer")[index % 3]
            stem = f"20261127_{index:06d}_00"
            if kind == "mrc":
                data = mrc_bytes(1024, 1024, 16, seed=index)
            elif kind == "tif":
                data = tiff_bytes(16, 1024, 1024, seed=index)
            else:
                data = eer_bytes(400, 1024, 1024, seed=index)
            host.leginon.acquisition(host.session, host.camera, stem, f"lat_{index:05d}en")
            path = host.root / "camera" / f"{stem}.{kind}"
            with open(path, "wb") as stream:  # the camera writes in pieces, then closes
                for start in range(0, len(data), 4 * 2**20):
                    stream.write(data[start : start + 4 * 2**20])
                    stream.flush()
                    time.sleep(0.02)
            closed[path.name] = time.time()
            time.sleep(rng.uniform(0.3, 1.0))
        deadline = time.monotonic() + 120
        while any((host.root / "camera" / name).exists() for name in closed):
            if time.monotonic() > deadline:
                raise SystemExit("latency run did not finish in 120 s")
            time.sleep(0.2)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    connection = sqlite3.connect(host.root / "state" / "journal.sqlite")
    to_start, to_visible = [], []
    for source, started, visible in connection.execute(
        "SELECT source_path, copy_started_at, buffer_visible_at FROM movies WHERE state = 'done'"
    ):
        close = closed[Path(source).name]
        to_start.append(started - close)
        to_visible.append(visible - close)
    connection.close()
    print(f"\nlatency, {len(to_start)} movies (mrc/tif/eer, 16 MiB-ish), running service:")
    print(f"  close -> copy starts:          {summary(to_start)}")
    print(f"  close -> final name in buffer: {summary(to_visible)}")
    ok = percentile(to_start, 0.5) <= 1.5 and percentile(to_start, 0.99) <= 3.0
    print(f"  target close->copy p50 <= 1.5 s, p99 <= 3 s: {'OK' if ok else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movies", type=int, default=12)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--latency-files", type=int, default=30)
    args = parser.parse_args()
    host = bench_host()
    try:
        names = make_master(host, args.movies, args.size_mib)
        throughput(host, names)
        if args.latency_files > 0:
            latency(host, args.latency_files)
    finally:
        host.server.stop()
        shutil.rmtree(host.root, ignore_errors=True)


if __name__ == "__main__":
    main()
