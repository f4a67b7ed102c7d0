"""Shared set-up for the benchmarks: a private MariaDB with leginondb, a buffer host layout,
and helpers to time the durable baselines (`cp` + `sync`, `rsync -a` + `sync`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "files" / "python" / "tests"))

from support.leginon_data import LeginonDB  # noqa: E402
from support.mariadb_server import (  # noqa: E402
    TEST_PASSWORD,
    TEST_USER,
    MariaDBServer,
    start_private_server,
)

CAMERA_HOST = "bench-cam"
# The benches' buffers lie on this machine's own disk, whose free share no bench chooses: with
# the default reserve (10 %) a disk more than 90 % full would hold every quarantine.
NO_RESERVE = "reserve_percent = 0\n"


def drop_caches() -> None:
    """Flush and drop the page cache so every method reads its sources from the device."""
    subprocess.run(["sync"], check=True)
    with contextlib.suppress(OSError):  # not root: same order, same files, warm cache
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


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


def report_throughput(
    title: str,
    total_bytes: int,
    results: dict[str, list[float]],
    ours: list[str],
    judged: tuple[str, ...] = (),
) -> bool:
    """Print each method's median time and rate over the rounds (min-max beside it), then
    the ratios of embuffer's medians (each of `ours`) to the two baselines; True when every
    ratio of the `judged` methods meets its target (the others are printed for comparison).
    The rounds interleave the methods, so a slow spell of a shared virtual disk falls on all
    alike."""
    mib = total_bytes / 2**20
    rounds = len(results[ours[0]])
    print(f"\n{title}, {mib:.0f} MiB, page cache dropped before each, {rounds} round(s):")
    medians = {method: statistics.median(times) for method, times in results.items()}
    width = max(len(method) for method in results)
    for method, times in results.items():
        print(
            f"  {method:<{width}} {medians[method]:6.2f} s {mib / medians[method]:7.1f} MiB/s"
            f"  (min {min(times):.2f} s, max {max(times):.2f} s)"
        )
    met = True
    for method in ours:
        for baseline, target in (("cp + sync", 0.8), ("rsync -a + sync", 1.1)):
            ratio = medians[baseline] / medians[method]
            if method not in judged:
                print(f"  {method} / {baseline:<15} = {ratio:.2f}x")
                continue
            met &= ratio >= target
            verdict = "OK" if ratio >= target else "MISSED"
            print(f"  {method} / {baseline:<15} = {ratio:.2f}x (target >= {target}x) {verdict}")
    return met


def judged_in(layout: str, methods: tuple[str, ...]) -> tuple[str, ...]:
    """The methods whose ratios are targets in `layout`: the production layout's only; the
    single disk is the worst case, printed for comparison."""
    return methods if layout == "separate" else ()


# Where the camera share and primary storage live. In production both are other machines'
# disks reached over the network, so reading the camera copy or writing the primary copy
# costs the buffer's own disk nothing: "separate" puts them on a RAM-backed block device of
# their own (ext4 on a loop device; the page cache is dropped for it like for any other).
# "single" puts everything on the buffer's disk, the worst case, for comparison.
LAYOUTS = ("separate", "single")
SHARED_FOLDERS = ("camera", "staging", "primary", "primary-cp", "primary-rsync")


@dataclass
class RamDisk:
    """ext4 on a loop device backed by a file in /dev/shm: a real block device and
    filesystem that shares nothing with the disk under test."""

    mountpoint: Path
    backing: Path
    device: str = ""

    def create(self, size_mib: int) -> None:
        with open(self.backing, "wb") as stream:
            stream.truncate(size_mib * 2**20)
        self.device = subprocess.run(
            ["losetup", "--find", "--show", str(self.backing)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        subprocess.run(["mkfs.ext4", "-q", "-F", self.device], check=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", self.device, str(self.mountpoint)], check=True)

    def remove(self) -> None:
        subprocess.run(["umount", str(self.mountpoint)], check=False)
        if self.device:
            subprocess.run(["losetup", "-d", self.device], check=False)
        self.backing.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.backing.parent.rmdir()


@dataclass
class BenchHost:
    root: Path
    server: MariaDBServer
    leginon: LeginonDB
    session: int
    camera: int
    layout: str = "single"
    disks: list[RamDisk] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.root / f"embuffer-{self.layout}.toml"

    @property
    def journal(self) -> Path:
        return self.root / "state" / "journal.sqlite"

    def path(self, name: str) -> Path:
        if self.layout == "separate" and name in SHARED_FOLDERS:
            return self.root / "separate-device" / name
        return self.root / name

    def folder(self, name: str) -> Path:
        path = self.path(name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def clear(self, name: str) -> None:
        shutil.rmtree(self.path(name), ignore_errors=True)
        self.folder(name)

    def use(self, layout: str) -> None:
        """Switch layout; the buffer and the journal start empty."""
        self.layout = layout
        self.folder("state")
        for name in ("buffer", "quarantine", *SHARED_FOLDERS):
            self.clear(name)
        for leftover in self.journal.parent.glob(f"{self.journal.name}*"):
            leftover.unlink()
        self.config.write_text(f"""[buffer]
root = "{self.path("buffer")}"
hostname = "bench-buffer"
quarantine = "{self.path("quarantine")}"
journal = "{self.journal}"
{NO_RESERVE}
[database]
credentials = "{self.root / "leginondb.cnf"}"

[[camera]]
host = "{CAMERA_HOST}"
path = "{self.path("camera")}"

[archive]
primary = "{self.path("primary")}"
""")

    def close(self) -> None:
        self.server.stop()
        for disk in self.disks:
            disk.remove()
        shutil.rmtree(self.root, ignore_errors=True)


def compile_package() -> None:
    """Byte-compile the embuffer package, as `pip install` does on a buffer server. The
    development checkout is an editable install, and with PYTHONDONTWRITEBYTECODE set every
    run would compile its modules again inside the timing (measured: 65 ms a run)."""
    import embuffer

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(Path(embuffer.__file__).parent)],
        check=True,
    )


def add_throughput_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--movies", type=int, default=12)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--layout", choices=(*LAYOUTS, "both"), default="both")
    parser.add_argument("--rounds", type=int, default=3, help="medians over this many")


def throughput_host(args: argparse.Namespace, copies: float) -> tuple[BenchHost, tuple[str, ...]]:
    """The bench host and the layouts asked for; the separate device, when one of them, holds
    `copies` times the movies plus room for the filesystem."""
    layouts = LAYOUTS if args.layout == "both" else (args.layout,)
    separate_mib = int(args.movies * (args.size_mib + 1) * copies) + 256
    return bench_host(separate_mib if "separate" in layouts else 0), layouts


def bench_host(separate_mib: int = 0) -> BenchHost:
    """A private MariaDB with one Leginon session and a buffer layout under /var/tmp; with
    separate_mib, also a RAM disk of that size for the "separate" layout."""
    import pymysql

    compile_package()

    root = Path(tempfile.mkdtemp(prefix="embuffer-bench-", dir="/var/tmp"))
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
    server.write_credentials(root / "leginondb.cnf", "leginondb")
    if separate_mib:
        shm = Path(tempfile.mkdtemp(prefix="embuffer-bench-", dir="/dev/shm"))
        disk = RamDisk(root / "separate-device", shm / "disk.img")
        host.disks.append(disk)
        try:
            disk.create(separate_mib)
        except (OSError, subprocess.CalledProcessError) as error:
            host.close()
            raise SystemExit(
                f"cannot create the RAM disk for the separate layout ({error}); "
                "run as root, or pass --layout single"
            ) from None
    host.use("single")
    return host


def embuffer(*args: str) -> list[str]:
    return [sys.executable, "-m", "embuffer.cli", *args]
