"""Power cuts on the buffer server: the machine, the movies and the judge of what survived.

A `Machine` is the buffer server of a test host (conftest.BufferHost) with its buffer
filesystem (buffer root, quarantine and the journal's folder) on the power-cut filesystem
of support/powercut_fs.py, mounted over `<root>/bufferdata`; `<root>/state` (the journal's
folder in the configuration) becomes a link into it. The camera share and primary storage
stay on the real disk: they are other machines, a cut does not touch them.

One trial (`Machine.trial(seed)`):
 1. a fresh device and camera share: the movies of `mixed_movies` on the camera, nothing on
    the buffer or primary;
 2. boot with a cut at cut point N, run ingest, archive and purge one after another (what
    a boot of the server does; support/powercut_services.py) until the cut kills them;
 3. boot again on what survived, judge the files as the cut left them, run the services
    again as fresh processes until they are idle, and judge the end state (`Judge`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import xxhash
from support.movies import eer_bytes, mrc_bytes, tiff_bytes
from support.powercut_fs import Model, Server

SUPPORT = Path(__file__).parent
SERVICES = ("ingest --once", "archive --once", "purge")
PHASES = tuple(command.split()[0] for command in SERVICES)
PARTIAL_SUFFIX = ".embuffer-partial"


@dataclass
class Movie:
    """One thing the camera PC writes: a file, or a DE folder ({relpath: bytes})."""

    name: str  # on the camera share
    data: bytes | dict[str, bytes]
    image: str | None  # Leginon image it matches; None: it must end in quarantine
    rel: str | None = None  # path below the buffer root and primary for a matched movie

    @property
    def is_dir(self) -> bool:
        return isinstance(self.data, dict)

    @property
    def digest(self) -> str:
        """What the journal records: xxh3-128, over the member manifest for a folder."""
        if isinstance(self.data, bytes):
            return xxhash.xxh3_128(self.data).hexdigest()
        from embuffer.verified_copy import manifest_hash

        return manifest_hash(
            [(rel, len(data), xxhash.xxh3_128(data).hexdigest()) for rel, data in self.data.items()]
        )


def mixed_movies(host: object, registered: dict[str, int]) -> list[Movie]:
    """TIFF, MRC, EER, a DE `.frames` folder, a Falcon movie with its `.xml` sidecar, and
    files Leginon never recorded (one with a sidecar): registered in leginondb once."""
    session, camera = registered["session"], registered["camera"]
    folder = "joe/26nov26a/rawdata"
    de_members = {
        "info.txt": b"Frames: 3\n",
        "frame_0001.tif": tiff_bytes(1, 32, 32, seed=41),
        "sub/extra.dat": b"z" * 77,
    }
    falcon_xml = b"<Falcon><frames>6</frames></Falcon>\n"
    recorded = [
        ("20261126_100001_00.tif", tiff_bytes(4, 64, 64, seed=1), "pc_00001en", ".frames.tif", 4),
        ("20261126_100002_00.mrc", mrc_bytes(64, 64, 6, seed=2), "pc_00002en", ".frames.mrc", 6),
        ("FoilHole_3_Data_4.eer", eer_bytes(5, 64, 64, seed=3), "pc_00003en", ".frames.eer", 5),
        ("20261126_100004_00.frames", de_members, "pc_00004en", ".frames", 3),
        ("20261126_100005_00.mrc", mrc_bytes(32, 32, 6, seed=5), "pc_00005en", ".frames.mrc", 6),
    ]
    movies = []
    for name, data, image, suffix, frames in recorded:
        stem = name if isinstance(data, dict) else name.rsplit(".", 1)[0]
        host.leginon.acquisition(session, camera, stem, image, nframes=frames)  # type: ignore[attr-defined]
        movies.append(Movie(name, data, image, f"{folder}/{image}{suffix}"))
    movies.append(
        Movie("20261126_100005_00.xml", falcon_xml, "pc_00005en", f"{folder}/pc_00005en.frames.xml")
    )
    movies.append(Movie("20261126_999001_00.mrc", mrc_bytes(32, 32, 2, seed=7), None))
    movies.append(Movie("20261126_999001_00.xml", b"<Falcon>orphan</Falcon>\n", None))
    movies.append(Movie("20261126_999002_00.tif", tiff_bytes(2, 32, 32, seed=8), None))
    return movies


def put_on_camera(camera: Path, movies: list[Movie]) -> None:
    """The camera share as the camera PC left it: every movie closed a minute ago."""
    for entry in camera.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    then = time.time() - 60
    for movie in movies:
        path = camera / movie.name
        if isinstance(movie.data, bytes):
            path.write_bytes(movie.data)
            os.utime(path, (then, then))
            continue
        for rel, data in movie.data.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_bytes(data)
        for folder, _dirs, files in os.walk(path, topdown=False):
            for name in files:
                os.utime(Path(folder) / name, (then, then))
            os.utime(folder, (then, then))


def empty(folder: Path) -> None:
    for entry in folder.iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


# ---------------------------------------------------------------------------- the machine


@dataclass
class Boot:
    """What one boot did: the exit code of each service, and where the cut fell."""

    codes: dict[str, int] = field(default_factory=dict)
    cut_at: int | None = None  # cut point number, None when none fell
    cut_phase: str | None = None
    cut_op: str = ""
    points: dict[str, int] = field(default_factory=dict)  # cut points seen per phase
    trace: list[str] = field(default_factory=list)  # the cut points in order, with phases


class Machine:
    def __init__(self, host: object, workdir: Path) -> None:
        self.host = host
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.mount = host.root / "bufferdata"  # type: ignore[attr-defined]
        self.image = workdir / "device.img"
        self.server: Server | None = None
        state = host.journal.parent  # type: ignore[attr-defined]
        if not state.is_symlink():
            state.rmdir()
            state.symlink_to(self.mount / "state")

    # ---- the device --------------------------------------------------------------------
    def fresh_device(self) -> None:
        """An empty buffer filesystem with its folders, all durable (as installed)."""
        model = Model()
        for name in ("frames", "quarantine", "state"):
            ino = model.new_node(stat.S_IFDIR | 0o755, 0, 0)
            model.add_entry(1, name, ino)
        model.sync_all()
        model.save(self.image, everything=False)

    def power_on(self, *, cut_at: int | None, log: Path) -> None:
        self.server = Server(self.mount, self.image, log)
        self.server.start(cut_at=cut_at)

    def power_off(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def run_services(self, log: Path) -> dict[str, int]:
        """One boot's services, as a fresh process; their exit codes (-9: the cut)."""
        command = [sys.executable, str(SUPPORT / "powercut_services.py")]
        command += [str(self.host.config_path), str(log), *SERVICES]  # type: ignore[attr-defined]
        env = dict(os.environ, PYTHONPATH=str(SUPPORT.parent))
        with open(log.with_suffix(".err"), "ab") as errors:
            process = subprocess.run(command, stdout=errors, stderr=errors, env=env, timeout=300)
        boot = read_log(log)
        if process.returncode < 0 and boot.cut_phase:
            boot.codes[boot.cut_phase] = process.returncode
        return boot.codes

    def boot(self, *, cut_at: int | None, log: Path) -> Boot:
        self.power_on(cut_at=cut_at, log=log)
        try:
            self.run_services(log)
        finally:
            self.power_off()
        return read_log(log)


def read_log(log: Path) -> Boot:
    boot = Boot()
    phase = "boot"
    for line in log.read_text().splitlines():
        words = line.split(" ", 3)
        if words[0] == "PHASE":
            phase = words[1]
        elif words[0] == "RC":
            boot.codes[words[1]] = int(words[2])
        elif words[0] == "CUT":
            boot.cut_at, boot.cut_phase = int(words[1]), phase
        elif words[0].isdigit():
            boot.points[phase] = boot.points.get(phase, 0) + 1
            boot.trace.append(f"{words[0]} {phase}: {words[1]} {words[2]}")
            if boot.cut_at is None:
                boot.cut_op = f"{words[1]} {words[2]}"
    return boot


# ---------------------------------------------------------------------------- the judge


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)

    def add(self, problem: str) -> None:
        self.problems.append(problem)


def read_movie(path: Path) -> bytes | dict[str, bytes] | None:
    if path.is_symlink() or not path.exists():
        return None
    if path.is_dir():
        found = {}
        for folder, _dirs, files in os.walk(path):
            for name in files:
                member = Path(folder) / name
                found[str(member.relative_to(path))] = member.read_bytes()
        return found
    return path.read_bytes()


class Judge:
    """What must hold after any cut, and after recovery."""

    def __init__(self, host: object, movies: list[Movie]) -> None:
        self.host = host
        self.movies = movies
        self.camera: Path = host.camera  # type: ignore[attr-defined]
        self.buffer: Path = host.buffer  # type: ignore[attr-defined]
        self.quarantine: Path = host.quarantine / "k3-cam-01"  # type: ignore[attr-defined]
        self.primary: Path = host.primary  # type: ignore[attr-defined]

    def quarantined_copies(self, movie: Movie) -> list[Path]:
        if not self.quarantine.is_dir():
            return []
        return sorted(
            path
            for path in self.quarantine.iterdir()
            if path.name == movie.name or path.name.startswith(movie.name + ".")
        )

    def places(self, movie: Movie, verdict: Verdict) -> list[str]:
        """Where the movie exists complete; a final name holding other bytes is a problem."""
        found = []
        candidates = [("camera", self.camera / movie.name)]
        if movie.rel:
            candidates += [
                ("buffer", self.buffer / movie.rel),
                ("primary", self.primary / movie.rel),
            ]
        candidates += [("quarantine", path) for path in self.quarantined_copies(movie)]
        for place, path in candidates:
            content = read_movie(path)
            if content is None:
                continue
            if content == movie.data:
                found.append(place)
            elif place == "camera":
                continue  # a source being removed after its copy was verified
            elif place != "quarantine" or path.name == movie.name:
                size = len(content) if isinstance(content, bytes) else f"{len(content)} members"
                verdict.add(f"{movie.name}: {place} copy {path} is not whole ({size})")
        return found

    def after_cut(self) -> Verdict:
        """The files as the cut left them: every movie complete somewhere."""
        verdict = Verdict()
        for movie in self.movies:
            if not self.places(movie, verdict):
                partials = [
                    p
                    for p in self.all_files()
                    if movie.name in p.name or (movie.image and movie.image in p.name)
                ]
                verdict.add(f"{movie.name} LOST: complete nowhere (partials: {partials})")
        return verdict

    def all_files(self) -> list[Path]:
        found = []
        for root in (self.buffer, self.quarantine.parent, self.primary):
            if root.exists():
                found += [p for p in root.rglob("*") if p.is_file()]
        return found

    def after_recovery(self, codes: dict[str, int]) -> Verdict:
        verdict = self.after_cut()
        for phase in PHASES:
            if codes.get(phase) != 0:
                verdict.add(f"recovery: `embuffer {phase}` exited {codes.get(phase)}")
        leftovers = [p.name for p in self.camera.iterdir()]
        if leftovers:
            verdict.add(f"recovery left movies on the camera share: {leftovers}")
        for path in self.all_files():
            if path.name.endswith(PARTIAL_SUFFIX):
                verdict.add(f"recovery left a partial copy: {path}")
        on_buffer = [p for p in self.buffer.rglob("*") if p.is_file()]
        if on_buffer:
            verdict.add(f"buffer copies not purged (retention 0): {on_buffer}")
        for movie in self.movies:
            places = self.places(movie, Verdict())
            want = "primary" if movie.image else "quarantine"
            if want not in places:
                verdict.add(f"{movie.name}: not on {want} after recovery (only {places})")
            if not movie.image and len(self.quarantined_copies(movie)) != 1:
                verdict.add(
                    f"{movie.name}: {len(self.quarantined_copies(movie))} copies in quarantine"
                )
        self.journal_agrees(verdict)
        return verdict

    def journal_agrees(self, verdict: Verdict) -> None:
        journal = self.host.journal  # type: ignore[attr-defined]
        try:
            connection = sqlite3.connect(journal)
            connection.row_factory = sqlite3.Row
            (check,) = connection.execute("PRAGMA integrity_check").fetchone()
            rows = [dict(row) for row in connection.execute("SELECT * FROM movies ORDER BY id")]
            connection.close()
        except sqlite3.Error as error:
            verdict.add(f"journal does not open: {error}")
            return
        if check != "ok":
            verdict.add(f"journal integrity_check: {check}")
        busy = [
            row
            for row in rows
            if row["state"] in ("seen", "matched", "copying", "copied", "verified")
        ]
        for row in busy:
            verdict.add(
                f"journal row {row['id']} ({row['source_path']}) left in state {row['state']}"
            )
        for movie in self.movies:
            if movie.image:
                mine = [
                    row
                    for row in rows
                    if row["camera"] == "k3-cam-01"
                    and row["image_filename"] == movie.image
                    and row["rel_path"] == movie.rel
                ]
                if not mine:
                    verdict.add(
                        f"{movie.name}: the journal has no record of {movie.rel} from "
                        f"image {movie.image}"
                    )
                elif not any(r["state"] == "purged" and r["hash"] == movie.digest for r in mine):
                    states = [(r["state"], r["hash"] == movie.digest) for r in mine]
                    verdict.add(f"{movie.name}: journal rows (state, hash ok) {states}")
        for row in rows:
            if row["state"] != "purged":
                continue
            primary = Path(row["primary_path"] or "/nonexistent")
            expected = next((m for m in self.movies if m.rel == row["rel_path"]), None)
            if row["primary_verified_at"] is None:
                verdict.add(f"purged {row['rel_path']} without a verified primary copy")
            elif expected is not None and read_movie(primary) != expected.data:
                verdict.add(f"purged {row['rel_path']}: primary {primary} is not the movie")
        quarantined = {row["dest_path"]: row for row in rows if row["state"] == "quarantined"}
        if self.quarantine.is_dir():
            for path in self.quarantine.iterdir():
                row = quarantined.get(str(path))
                if row is None:
                    verdict.add(f"quarantine holds {path.name}, which the journal does not know")
                elif row["hash"] != xxhash.xxh3_128(path.read_bytes()).hexdigest():
                    verdict.add(f"quarantine {path.name}: journal hash disagrees")


# ---------------------------------------------------------------------------- trials


@dataclass
class Trial:
    seed: int
    cut_at: int
    boot: Boot
    after_cut: Verdict
    after_recovery: Verdict

    @property
    def problems(self) -> list[str]:
        return self.after_cut.problems + self.after_recovery.problems

    def report(self) -> str:
        lines = [
            f"seed {self.seed}: cut at point {self.cut_at} ({self.boot.cut_phase}: "
            f"{self.boot.cut_op}); exit codes before the cut {self.boot.codes}",
            *(f"  after the cut: {p}" for p in self.after_cut.problems),
            *(f"  after recovery: {p}" for p in self.after_recovery.problems),
            "  cut points up to the cut:",
            *(f"    {line}" for line in self.boot.trace[-25:]),
        ]
        return "\n".join(lines)


class PowerCutRun:
    """Trials on one machine with one set of movies; `plan` comes from a run without a cut."""

    def __init__(self, host: object, movies: list[Movie], workdir: Path) -> None:
        self.host = host
        self.movies = movies
        self.machine = Machine(host, workdir)
        self.workdir = workdir
        self.judge = Judge(host, movies)
        self.plan: dict[str, tuple[int, int]] = {}  # phase -> (first, last) cut point

    def reset(self) -> None:
        self.machine.fresh_device()
        put_on_camera(self.host.camera, self.movies)  # type: ignore[attr-defined]
        empty(self.host.primary)  # type: ignore[attr-defined]

    def survey(self) -> Boot:
        """A boot without a cut (its unmount still keeps only what was synced): how many
        cut points each phase has, and proof that the movies go all the way."""
        self.reset()
        log = self.workdir / "survey.log"
        log.unlink(missing_ok=True)
        boot = self.machine.boot(cut_at=None, log=log)
        first = 1
        for phase in PHASES:
            count = boot.points.get(phase, 0)
            if count:
                self.plan[phase] = (first, first + count - 1)
                first += count
        return boot

    def pick(self, seed: int, phase: str) -> int:
        first, last = self.plan[phase]
        return random.Random(seed).randint(first, last)

    def trial(self, seed: int, cut_at: int) -> Trial:
        self.reset()
        log = self.workdir / f"trial-{seed}.log"
        for path in (log, log.with_suffix(".err"), log.with_suffix(".fs")):
            path.unlink(missing_ok=True)
        boot = self.machine.boot(cut_at=cut_at, log=log)
        recovery_log = self.workdir / f"recovery-{seed}.log"
        recovery_log.unlink(missing_ok=True)
        self.machine.power_on(cut_at=None, log=recovery_log)
        try:
            after_cut = self.judge.after_cut()
            codes = self.machine.run_services(recovery_log)
            after_recovery = self.judge.after_recovery(codes)
        finally:
            self.machine.power_off()
        trial = Trial(seed, cut_at, boot, after_cut, after_recovery)
        if not trial.problems:
            for path in (log, log.with_suffix(".err"), log.with_suffix(".fs"), recovery_log):
                path.unlink(missing_ok=True)
            for path in (recovery_log.with_suffix(".err"), recovery_log.with_suffix(".fs")):
                path.unlink(missing_ok=True)
        return trial


def summary(trials: list[Trial], movies: list[Movie]) -> str:
    per_phase: dict[str, int] = {}
    for trial in trials:
        phase = trial.boot.cut_phase or "none (after the services)"
        per_phase[phase] = per_phase.get(phase, 0) + 1
    failed = [trial for trial in trials if trial.problems]
    return (
        f"power cuts tried: {len(trials)} "
        f"({', '.join(f'{phase} {count}' for phase, count in per_phase.items())}); "
        f"movies judged per cut: {len(movies)}; trials with problems: {len(failed)}"
        + (f" (seeds {[t.seed for t in failed]})" if failed else "")
    )


def as_json(trial: Trial) -> str:
    return json.dumps({"seed": trial.seed, "cut_at": trial.cut_at, "problems": trial.problems})
