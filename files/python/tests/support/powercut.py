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
from typing import Any

import xxhash
from support.movies import eer_bytes, mrc_bytes, tiff_bytes
from support.powercut_fs import Model, Server

SUPPORT = Path(__file__).parent
SERVICES = ("ingest --once", "archive --once", "purge")
PHASES = tuple(command.split()[0] for command in SERVICES)
PARTIAL_SUFFIX = ".embuffer-partial"
SETTLE_SECONDS = 1  # the configuration's unstructured_settle_seconds (see CONFIG)
RECOVERY_PASSES = 3  # "until idle": the services run again while work is left, at most so often
CONFIG = {"grace_minutes": 0, "unstructured_settle_seconds": SETTLE_SECONDS}
PURGE_CONFIG = "[purge]\nretention_days = 0\n"  # every copy verified on primary goes at once


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
        from embuffer.safecopy.hashing import manifest_hash

        return manifest_hash(
            [(rel, len(data), xxhash.xxh3_128(data).hexdigest()) for rel, data in self.data.items()]
        )


def mixed_movies(host: Any, registered: dict[str, int]) -> list[Movie]:
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

Pattern = tuple[str, str]  # (after, on): see powercut_fs.Model.cut_after


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
    def __init__(self, host: Any, workdir: Path) -> None:
        self.host = host
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.mount = host.root / "bufferdata"
        self.image = workdir / "device.img"
        self.server: Server | None = None
        state = host.journal.parent
        if not state.is_symlink():
            state.rmdir()
            state.symlink_to(self.mount / "state")

    def fresh_device(self) -> None:
        """An empty buffer filesystem with its folders, all durable (as installed)."""
        model = Model()
        for name in ("frames", "quarantine", "state"):
            ino = model.new_node(stat.S_IFDIR | 0o755, 0, 0)
            model.add_entry(1, name, ino)
        model.sync_all()
        model.save(self.image, everything=False)

    def power_on(self, *, cut_at: int | None, log: Path, cut_on: Pattern | None = None) -> None:
        self.server = Server(self.mount, self.image, log)
        self.server.start(cut_at=cut_at, cut_on=cut_on)

    def power_off(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def run_services(self, log: Path) -> dict[str, int]:
        """One boot's services, as a fresh process; their exit codes (-9: the cut)."""
        command = [sys.executable, str(SUPPORT / "powercut_services.py")]
        command += [str(self.host.config_path), str(log), *SERVICES]
        env = dict(os.environ, PYTHONPATH=str(SUPPORT.parent))
        with open(log.with_suffix(".err"), "ab") as errors:
            process = subprocess.run(command, stdout=errors, stderr=errors, env=env, timeout=300)
        boot = read_log(log)
        if process.returncode < 0 and boot.cut_phase:
            boot.codes[boot.cut_phase] = process.returncode
        return boot.codes

    def boot(self, *, cut_at: int | None, log: Path, cut_on: Pattern | None = None) -> Boot:
        self.power_on(cut_at=cut_at, cut_on=cut_on, log=log)
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
        elif words[0].isdigit() and len(words) >= 3:
            boot.points[phase] = boot.points.get(phase, 0) + 1
            boot.trace.append(f"{words[0]} {phase}: {words[1]} {words[2]}")
            if boot.cut_at is None:
                boot.cut_op = f"{words[1]} {words[2]}"
    return boot


# ---------------------------------------------------------------------------- the judge


@dataclass(frozen=True)
class Problem:
    code: str  # what kind: "lost", "not-whole", "camera-leftover", ...
    movie: str  # the camera name of the movie it concerns ("" for none)
    text: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.text}"


@dataclass
class Verdict:
    problems: list[Problem] = field(default_factory=list)

    def add(self, code: str, movie: str, text: str) -> None:
        self.problems.append(Problem(code, movie, text))


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
    """What must hold after any cut, and after the next boot's recovery."""

    def __init__(self, host: Any, movies: list[Movie]) -> None:
        self.host = host
        self.movies = movies
        self.camera: Path = host.camera
        self.buffer: Path = host.buffer
        self.quarantine: Path = host.quarantine / "k3-cam-01"
        self.primary: Path = host.primary

    def movie_named(self, name: str) -> str:
        """The movie a quarantine name (`name`, `name.1`, ...) belongs to."""
        for movie in self.movies:
            if name == movie.name or name.startswith(movie.name + "."):
                return movie.name
        return name

    def quarantined_copies(self, movie: Movie) -> list[Path]:
        if not self.quarantine.is_dir():
            return []
        return sorted(
            p for p in self.quarantine.iterdir() if self.movie_named(p.name) == movie.name
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
            elif place != "camera":  # a camera folder is emptied member by member, verified
                size = len(content) if isinstance(content, bytes) else f"{len(content)} members"
                verdict.add("not-whole", movie.name, f"{place} copy {path} is not whole ({size})")
        return found

    def all_files(self) -> list[Path]:
        found = []
        for root in (self.buffer, self.quarantine.parent, self.primary):
            if root.exists():
                found += [p for p in root.rglob("*") if p.is_file()]
        return found

    def idle(self) -> bool:
        """Nothing left for the services: the camera share and the buffer are empty."""
        return not any(self.camera.iterdir()) and not any(
            path.is_file() for path in self.buffer.rglob("*")
        )

    def after_cut(self) -> Verdict:
        """The files as the cut left them: every movie complete somewhere, none only as a
        partial copy, no final name holding anything but the whole movie."""
        verdict = Verdict()
        for movie in self.movies:
            if not self.places(movie, verdict):
                partials = [p.name for p in self.all_files() if PARTIAL_SUFFIX in p.name]
                verdict.add("lost", movie.name, f"{movie.name} LOST: complete nowhere {partials}")
        return verdict

    def after_recovery(self, codes: dict[str, int]) -> Verdict:
        """After one boot of the services on what survived, with nobody's help: everything
        where it belongs, nothing left over, and the journal says so."""
        verdict = self.after_cut()
        for phase in PHASES:
            if codes.get(phase) != 0:
                verdict.add("exit", "", f"`embuffer {phase}` exited {codes.get(phase)}")
        for path in self.camera.iterdir():
            verdict.add("camera-leftover", path.name, f"{path.name} left on the camera share")
        for path in self.all_files():
            if PARTIAL_SUFFIX in path.name:
                verdict.add("partial-left", "", f"a partial copy left behind: {path}")
        for path in self.buffer.rglob("*"):
            if path.is_file():
                verdict.add("not-purged", "", f"buffer copy not purged (retention 0): {path}")
        for movie in self.movies:
            places = self.places(movie, Verdict())
            want = "primary" if movie.image else "quarantine"
            if want not in places:
                verdict.add("not-in-place", movie.name, f"{movie.name}: not on {want} ({places})")
            copies = len(self.quarantined_copies(movie))
            if not movie.image and copies != 1:
                verdict.add(
                    "quarantine-copies", movie.name, f"{movie.name}: {copies} in quarantine"
                )
        self.journal_agrees(verdict)
        return verdict

    def journal_agrees(self, verdict: Verdict) -> None:
        try:
            connection = sqlite3.connect(self.host.journal)
            connection.row_factory = sqlite3.Row
            (check,) = connection.execute("PRAGMA integrity_check").fetchone()
            rows = [dict(row) for row in connection.execute("SELECT * FROM movies ORDER BY id")]
            connection.close()
        except sqlite3.Error as error:
            verdict.add("journal-open", "", f"the journal does not open: {error}")
            return
        if check != "ok":
            verdict.add("journal-open", "", f"journal integrity_check: {check}")
        for row in rows:
            if row["state"] in ("seen", "matched", "copying", "copied", "verified"):
                name = Path(row["source_path"] or "").name
                verdict.add("journal-busy", name, f"row {row['id']} ({name}) left {row['state']}")
        for movie in self.movies:
            if not movie.image:
                continue
            mine = [
                row
                for row in rows
                if row["camera"] == "k3-cam-01"
                and row["image_filename"] == movie.image
                and row["rel_path"] == movie.rel
            ]
            if not mine:
                verdict.add("journal-no-record", movie.name, f"no record of {movie.rel}")
            elif not any(row["state"] == "purged" and row["hash"] == movie.digest for row in mine):
                states = [(row["state"], row["hash"] == movie.digest) for row in mine]
                verdict.add("journal-state", movie.name, f"rows (state, hash ok): {states}")
        for row in rows:  # no buffer copy purged whose primary copy is not verified
            if row["state"] != "purged":
                continue
            primary = Path(row["primary_path"] or "/nonexistent")
            expected = next((m for m in self.movies if m.rel == row["rel_path"]), None)
            if row["primary_verified_at"] is None:
                verdict.add("purged-unverified", "", f"purged {row['rel_path']} unverified")
            elif expected is not None and read_movie(primary) != expected.data:
                verdict.add("purged-unverified", "", f"purged {row['rel_path']}: {primary} wrong")
        quarantined = {row["dest_path"]: row for row in rows if row["state"] == "quarantined"}
        if self.quarantine.is_dir():
            for path in self.quarantine.iterdir():
                row = quarantined.get(str(path))
                name = self.movie_named(path.name)
                if row is None:
                    text = f"quarantine holds {path.name}, which the journal does not know"
                    verdict.add("journal-unknown-quarantine", name, text)
                elif row["hash"] != xxhash.xxh3_128(path.read_bytes()).hexdigest():
                    verdict.add("journal-state", name, f"quarantine {path.name}: hash differs")


# ---------------------------------------------------------------------------- trials


@dataclass
class Trial:
    seed: int
    boot: Boot
    after_cut: Verdict
    after_recovery: Verdict

    @property
    def problems(self) -> list[Problem]:
        return self.after_cut.problems + self.after_recovery.problems

    def report(self) -> str:
        return "\n".join(
            [
                f"seed {self.seed}: cut at point {self.boot.cut_at} ({self.boot.cut_phase}: "
                f"{self.boot.cut_op}); exit codes before the cut {self.boot.codes}",
                *(f"  after the cut: {p}" for p in self.after_cut.problems),
                *(f"  after recovery: {p}" for p in self.after_recovery.problems),
                "  the cut points before the cut:",
                *(f"    {line}" for line in self.boot.trace[-12:]),
            ]
        )


class PowerCutRun:
    """Trials on one machine with one set of movies; `plan` comes from a boot without a cut."""

    def __init__(self, host: Any, movies: list[Movie], workdir: Path) -> None:
        self.host = host
        self.movies = movies
        self.machine = Machine(host, workdir)
        self.workdir = workdir
        self.judge = Judge(host, movies)
        self.plan: dict[str, tuple[int, int]] = {}  # phase -> (first, last) cut point

    def reset(self) -> None:
        self.machine.fresh_device()
        put_on_camera(self.host.camera, self.movies)
        empty(self.host.primary)

    def survey(self) -> Boot:
        """A boot without a cut, to count each phase's cut points. Its end is a cut while the
        machine is idle, so the next boot and the judge run on what it left synced."""
        self.reset()
        log = self.workdir / "survey.log"
        log.unlink(missing_ok=True)
        boot = self.machine.boot(cut_at=None, cut_on=("$^", "$^"), log=log)
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

    def trial(self, seed: int, cut_at: int | None, cut_on: Pattern | None = None) -> Trial:
        self.reset()
        logs = [self.workdir / f"{kind}-{seed}.log" for kind in ("trial", "recovery")]
        files = [log.with_suffix(suffix) for log in logs for suffix in (".log", ".err", ".fs")]
        for path in files:
            path.unlink(missing_ok=True)
        boot = self.machine.boot(cut_at=cut_at, cut_on=cut_on, log=logs[0])
        self.machine.power_on(cut_at=None, log=logs[1])
        try:
            after_cut = self.judge.after_cut()
            codes = self.machine.run_services(logs[1])
            for _ in range(RECOVERY_PASSES - 1):
                if self.judge.idle():
                    break
                # What a service would find at its next poll: a file the cut brought back
                # (purge does not sync the folders it removes from) is adopted only once
                # it has been unchanged for the settle window.
                time.sleep(SETTLE_SECONDS + 0.2)
                codes = self.machine.run_services(logs[1])
            after_recovery = self.judge.after_recovery(codes)
        finally:
            self.machine.power_off()
        trial = Trial(seed, boot, after_cut, after_recovery)
        if not trial.problems:  # keep the logs of the trials that found something
            for path in files:
                path.unlink(missing_ok=True)
        return trial


def summary(trials: list[Trial], movies: list[Movie]) -> str:
    per_phase: dict[str, int] = {}
    for trial in trials:
        phase = trial.boot.cut_phase or "idle"
        per_phase[phase] = per_phase.get(phase, 0) + 1
    lost = sum(1 for trial in trials for problem in trial.problems if problem.code == "lost")
    failed = [trial.seed for trial in trials if trial.problems]
    tried = ", ".join(f"{phase} {count}" for phase, count in per_phase.items())
    return (
        f"power cuts tried: {len(trials)} ({tried}); movies judged per cut: {len(movies)}; "
        f"movies lost: {lost}; trials with problems: {len(failed)} {failed or ''}"
    )
