"""Shared set-up for the benchmarks: a private MariaDB with leginondb, a buffer host layout,
and helpers to time the durable baselines (`cp` + `sync`, `rsync -a` + `sync`)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "files" / "python" / "tests"))

from support.leginon_data import LeginonDB  # noqa: E402
from support.mariadb_server import TEST_PASSWORD, TEST_USER, MariaDBServer, start_private_server  # noqa: E402

CAMERA_HOST = "bench-cam"


def drop_caches() -> None:
    """Flush and drop the page cache so every method reads its sources from the device."""
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass  # not root: methods still run in the same order on the same files


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True)
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - start


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5):.2f} s, p99 {percentile(values, 0.99):.2f} s, "
        f"max {max(values):.2f} s, mean {statistics.mean(values):.2f} s (n={len(values)})"
    )


def report_throughput(title: str, total_bytes: int, results: dict[str, float], ours: str) -> None:
    """Print each method's time and rate, then embuffer's ratios to the two baselines."""
    mib = total_bytes / 2**20
    print(f"\n{title}, {mib:.0f} MiB, page cache dropped before each:")
    for method, seconds in results.items():
        print(f"  {method:<18} {seconds:7.2f} s  {mib / seconds:8.1f} MiB/s")
    for baseline, target in (("cp + sync", 0.8), ("rsync -a + sync", 1.1)):
        ratio = results[baseline] / results[ours]
        verdict = "OK" if ratio >= target else "MISSED"
        print(f"  embuffer / {baseline:<15} = {ratio:.2f}x (target >= {target}x) {verdict}")


@dataclass
class BenchHost:
    root: Path
    server: MariaDBServer
    leginon: LeginonDB
    session: int
    camera: int

    @property
    def config(self) -> Path:
        return self.root / "embuffer.toml"

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def clear(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)
        self.folder(name)


def bench_host(workdir: str | None = None) -> BenchHost:
    import pymysql

    root = Path(tempfile.mkdtemp(prefix="embuffer-bench-", dir=workdir or "/var/tmp"))
    server = start_private_server()
    server.create_leginondb("leginondb")
    connection = pymysql.connect(
        host="127.0.0.1",
        port=server.port,
        user=TEST_USER,
        password=TEST_PASSWORD,
        database="leginondb",
        autocommit=True,
    )
    leginon = LeginonDB(connection)
    camera = leginon.instrument("K3", CAMERA_HOST)
    host = BenchHost(root, server, leginon, 0, camera)
    buffer = host.folder("buffer")
    leginon.buffer_host(camera, "bench-buffer", str(buffer))
    image_path = host.folder("data/leginon/bench/26nov26a/rawdata")
    host.session = leginon.session("26nov26a", str(image_path), uid=os.getuid(), gid=os.getgid())
    for name in ("camera", "quarantine", "state", "primary"):
        host.folder(name)
    server.write_credentials(root / "leginondb.cnf", "leginondb")
    host.config.write_text(f"""[buffer]
root = "{buffer}"
hostname = "bench-buffer"
quarantine = "{root / "quarantine"}"
journal = "{root / "state" / "journal.sqlite"}"

[database]
credentials = "{root / "leginondb.cnf"}"

[[camera]]
host = "{CAMERA_HOST}"
path = "{root / "camera"}"

[archive]
primary = "{root / "primary"}"
""")
    return host


def embuffer(*args: str) -> list[str]:
    return [sys.executable, "-m", "embuffer.cli", *args]
