"""Power cuts on the buffer server at many points of ingest, archive and purge: no movie is
ever lost, nothing half-written carries a final name, and the next boot repairs everything
by itself (support/powercut.py; the filesystem model: support/powercut_fs.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from support.powercut import CONFIG, PHASES, PURGE_CONFIG, PowerCutRun, mixed_movies, summary

pytestmark = [pytest.mark.fault, pytest.mark.powercut]

# Cut points sampled per phase: ingest has most of them (copies, publishes, the journal
# barrier before each camera removal), archive only the journal's (primary is another
# machine), purge one barrier and one removal per movie. POWERCUT_CUTS=ingest:N,... changes it.
DEFAULT_CUTS = {"ingest": 105, "archive": 45, "purge": 55}


def fuse_missing() -> str | None:
    if os.geteuid() != 0:
        return "mounting the power-cut filesystem needs root"
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        return "no /dev/fuse or fusermount3 (Debian fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as error:
        return f"mfusepy unusable: {error}"
    return None


@pytest.fixture
def powercut(host, registered, tmp_path: Path):
    reason = fuse_missing()
    if reason:
        pytest.skip(reason)
    host.write_config(extra=PURGE_CONFIG, **CONFIG)
    run = PowerCutRun(host, mixed_movies(host, registered), tmp_path / "powercut")
    yield run
    run.machine.power_off()


def cuts_per_phase() -> dict[str, int]:
    wanted = dict(DEFAULT_CUTS)
    for item in filter(None, os.environ.get("POWERCUT_CUTS", "").split(",")):
        phase, count = item.split(":")
        wanted[phase] = int(count)
    return wanted


def seeds(phase: str, count: int) -> list[int]:
    """Seed = phase number * 10000 + trial number: a seed names its phase and its point."""
    return [PHASES.index(phase) * 10000 + number for number in range(count)]


def test_every_movie_survives_power_cuts_during_ingest_archive_and_purge(powercut, capsys):
    survey = powercut.survey()
    assert all(survey.codes.get(phase) == 0 for phase in PHASES), survey.codes
    assert set(powercut.plan) == set(PHASES), f"a phase without cut points: {survey.points}"
    trials = []
    replay = os.environ.get("POWERCUT_SEED")
    for phase, count in cuts_per_phase().items():
        for seed in seeds(phase, count):
            if replay and seed != int(replay):
                continue
            cut_at = int(os.environ.get("POWERCUT_CUT_AT") or powercut.pick(seed, phase))
            trials.append(powercut.trial(seed, cut_at))
    with capsys.disabled():
        print(f"\n{summary(trials, powercut.movies)}\ncut points per phase: {survey.points}")
    failed = [trial.report() for trial in trials if trial.problems]
    assert not failed, "\n\n".join(failed)


# What the first runs of this suite found (fixed in the engine since): each replayed by what
# its cut point does, so that the number of cut points before it does not matter.
REGRESSIONS = {
    # A cut after a quarantine copy was published and before the journal barrier: the
    # camera file was still there and the next start quarantined it again as `name.1`,
    # leaving the first copy known to no journal row. Now quarantine adopts its own
    # identical copy.
    "quarantine copy made twice": (
        "unlink /quarantine/k3-cam-01/.20261126_999002_00.tif",
        "journal.sqlite-wal",
    ),
    # A cut after a movie left the camera share and before its `.xml` sidecar was copied:
    # the sidecar got its journal row only afterwards, so nothing ever moved it. Now its row
    # is written before the movie's source goes, and recover() finishes it.
    "sidecar stranded on the camera share": (
        "unlink /quarantine/k3-cam-01/.20261126_999001_00.mrc",
        "create /quarantine/.*\\.xml",
    ),
    # A cut after a DE folder was published and before the journal recorded the copy: the
    # retry adopted the identical folder without its manifest and removed none of the camera
    # copy's members. Now the adoption records the manifest.
    "DE folder stranded on the camera share": (
        "open /frames/.*/pc_00004en.frames/sub/extra.dat",
        "journal.sqlite-wal",
    ),
}


@pytest.mark.parametrize("defect", sorted(REGRESSIONS))
def test_power_cut_that_once_needed_a_hand_is_repaired_by_the_next_boot(powercut, defect):
    trial = powercut.trial(0, None, cut_on=REGRESSIONS[defect])
    assert trial.boot.cut_at is not None, "the cut point was not reached"
    assert not trial.problems, trial.report()
