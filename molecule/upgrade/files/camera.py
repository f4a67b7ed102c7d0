"""A camera PC that keeps writing movies into its share, as a K3 does during a session.

Runs on the buffer test host (system python3, standard library only) until the stop file
appears, then finishes the movie in hand and exits. Movie k is an MRC file (mode 1, int16)
named after the k-th `frames name` that prepare.yml recorded in leginondb, written in place
and growing, one frame at a time, at a camera's pace. Small movies are 1024x1024 with 2-6
frames; every `--big-every`-th movie, and the first one after the restart hook asks for it
(the ingest is about to be restarted), is a 4096x4096 movie of 1-1.5 GB. Movie 0 is an
orphan, a file no exposure in leginondb names, which the ingest must quarantine.

The frames are real bytes (random, never sparse): a pool of random data, read at an offset
that differs for each movie and frame, with the movie and frame number over its first bytes,
so every movie hashes differently and nothing compresses. Each finished movie is appended
to the manifest (JSON lines: name, bytes, sha256, kind, when it was opened and closed), which
the verify step holds the buffer and primary copies against.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import struct
import time
from pathlib import Path

POOL_BYTES = 64 * 1024 * 1024
SMALL_SIDE = 1024
BIG_SIDE = 4096
PERIODIC_BIG_FRAMES = 30  # 1.0 GB
RESTART_BIG_FRAMES = 45  # 1.5 GB
# A camera PC over a 10 GbE share writes a few hundred MB/s; the buffer must keep up with it.
WRITE_BYTES_PER_SECOND = 200 * 1024 * 1024
# Below this the camera writes a small movie instead of a big one: the test hosts share a
# disk with other work, and the buffer and primary each keep a copy.
BIG_MOVIE_MIN_FREE_BYTES = 8 * 1024**3


def frames_name(k: int) -> str:
    """The k-th exposure's `frames name`, as prepare.yml records it in CameraEMData."""
    return f"20261127_{100000 + k}_{k % 100:02d}"


ORPHAN_NAME = "20261127_099999_99"


def mrc_header(side: int, frames: int) -> bytes:
    header = bytearray(1024)
    struct.pack_into("<4i", header, 0, side, side, frames, 1)
    struct.pack_into("<3i", header, 28, side, side, frames)
    struct.pack_into("<3i", header, 64, 1, 2, 3)
    header[208:212] = b"MAP "
    header[212:216] = b"\x44\x44\x00\x00"
    return bytes(header)


class Camera:
    def __init__(self, args: argparse.Namespace) -> None:
        self.folder = Path(args.folder)
        self.state = Path(args.state)
        self.restart_flag = Path(args.restart_flag)
        self.every = args.every
        self.big_every = args.big_every
        self.planned = args.planned
        pool = os.urandom(POOL_BYTES)
        # Wrapped, so any offset has a whole frame after it.
        self.pool = memoryview(pool + pool[: BIG_SIDE * BIG_SIDE * 2])

    def frame(self, k: int, index: int, frame_bytes: int) -> bytes:
        offset = (k * 1_000_003 + index * 7_919_017) % POOL_BYTES
        data = bytearray(self.pool[offset : offset + frame_bytes])
        data[:16] = struct.pack("<QQ", k, index)
        return bytes(data)

    def shape(self, k: int) -> tuple[str, int, int]:
        """Kind, side and frame count of movie k."""
        room = shutil.disk_usage(self.folder).free >= BIG_MOVIE_MIN_FREE_BYTES
        if room and self.restart_flag.exists():
            self.restart_flag.unlink()
            return "restart", BIG_SIDE, RESTART_BIG_FRAMES
        if room and k % self.big_every == 0:
            return "big", BIG_SIDE, PERIODIC_BIG_FRAMES
        return "small", SMALL_SIDE, 2 + k % 5

    def write(self, k: int, name: str, kind: str, side: int, frames: int) -> dict[str, object]:
        path = self.folder / f"{name}.mrc"
        digest = hashlib.sha256()
        opened = time.time()
        written = 0
        with open(path, "wb") as movie:
            for index in range(-1, frames):
                chunk = (
                    mrc_header(side, frames) if index < 0 else self.frame(k, index, side * side * 2)
                )
                movie.write(chunk)
                movie.flush()
                digest.update(chunk)
                written += len(chunk)
                # The camera's pace: no faster than its link.
                ahead = opened + written / WRITE_BYTES_PER_SECOND - time.time()
                if ahead > 0:
                    time.sleep(ahead)
        return {
            "k": k,
            "name": name,
            "kind": kind,
            "bytes": written,
            "sha256": digest.hexdigest(),
            "opened": opened,
            "closed": time.time(),
        }

    def run(self) -> None:
        manifest = self.state / "written.jsonl"
        stop = self.state / "stop"
        # Started again, the camera goes on with the next exposure.
        written = manifest.read_text(encoding="utf-8").splitlines() if manifest.exists() else []
        k = json.loads(written[-1])["k"] + 1 if written else 0
        while not stop.exists() and k <= self.planned:
            started = time.monotonic()
            if k == 0:
                entry = self.write(0, ORPHAN_NAME, "orphan", SMALL_SIDE, 2)
            else:
                kind, side, frames = self.shape(k)
                entry = self.write(k, frames_name(k), kind, side, frames)
            with open(manifest, "a", encoding="utf-8") as log:
                log.write(json.dumps(entry) + "\n")
                log.flush()
                os.fsync(log.fileno())
            print(f"wrote {entry['name']} ({entry['kind']}, {entry['bytes']} bytes)", flush=True)
            k += 1
            pause = self.every - (time.monotonic() - started)
            while pause > 0 and not stop.exists() and not self.restart_flag.exists():
                time.sleep(min(pause, 0.2))
                pause = self.every - (time.monotonic() - started)
        (self.state / "finished").write_text(f"{k}\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True, help="the camera share's folder")
    parser.add_argument("--state", required=True, help="manifest, stop and finished files")
    parser.add_argument("--restart-flag", required=True, help="present: next movie is big")
    parser.add_argument("--every", type=float, required=True, help="seconds between movies")
    parser.add_argument("--big-every", type=int, required=True)
    parser.add_argument("--planned", type=int, required=True, help="exposures in leginondb")
    Camera(parser.parse_args()).run()


if __name__ == "__main__":
    main()
