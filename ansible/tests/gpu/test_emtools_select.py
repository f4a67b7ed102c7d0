"""Unit tests of the CUDA build selection (plugins/filter/emtools.py) and of the artifact
installer module (plugins/modules/emtools_artifact.py)."""

import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PLUGINS = REPO / "plugins"


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


emtools = load("emtools_filters", PLUGINS / "filter" / "emtools.py")
ARTIFACT_MODULE = PLUGINS / "modules" / "emtools_artifact.py"
SHA = "ab" * 32


def motioncor2(version, cudas):
    return [{"version": version, "cuda": cuda, "src": "/srv/MotionCor2_%s.zip" % version, "sha256": SHA,
             "format": "zip", "member": "MotionCor2_%s_Cuda%s_*" % (version, cuda.replace(".", ""))}
            for cuda in cudas]


BUILDS = motioncor2("1.6.3", ["10.2", "11.6", "11.8", "12.1"]) + motioncor2("1.6.4", ["11.6", "12.1"])


@pytest.mark.parametrize("host,match,version,cuda", [
    ("11.8", "minor", "1.6.4", "11.6"),   # newest version first, then the closest CUDA build
    ("12.4", "minor", "1.6.4", "12.1"),
    ("10.2", "minor", "1.6.3", "10.2"),
    ("12.1", "exact", "1.6.4", "12.1"),
    ("11.8", "exact", "1.6.3", "11.8"),   # exact: 1.6.4 has no 11.8 build
    ("11.8", "backward", "1.6.4", "11.6"),
    ("12.4", "backward", "1.6.4", "12.1"),
    ("13.0", "backward", "1.6.4", "12.1"),  # driver 580 on the recorded H200 host: CUDA 13.0
])
def test_selects_the_build_for_the_host_cuda(host, match, version, cuda):
    chosen = emtools.emtools_select(BUILDS, "motioncor2", host, "", match)
    assert chosen["ok"], chosen["msg"]
    assert (chosen["build"]["version"], chosen["build"]["cuda"]) == (version, cuda)


def test_default_accepts_older_cuda_majors_and_minor_does_not():
    """A current driver reports a CUDA major that no MotionCor2 build has yet (13.0 on the
    recorded H200): by default the newest older build is chosen; `minor` refuses it."""
    assert emtools.emtools_select(BUILDS, "motioncor2", "13.0")["build"]["cuda"] == "12.1"
    refused = emtools.emtools_select(BUILDS, "motioncor2", "13.0", "", "minor")
    assert not refused["ok"] and "needs CUDA 13.0 (minor match)" in refused["msg"]
    older = emtools.emtools_select(BUILDS, "motioncor2", "11.4")  # 1.6.4 has no build <= 11.4
    assert (older["build"]["version"], older["build"]["cuda"]) == ("1.6.3", "10.2")
    pinned = emtools.emtools_select(BUILDS, "motioncor2", "11.4", "1.6.4")
    assert not pinned["ok"] and "needs CUDA 11.4 (backward match)" in pinned["msg"]


def test_pinned_version_picks_its_closest_build():
    chosen = emtools.emtools_select(BUILDS, "motioncor2", "11.8", "1.6.3", "minor")
    assert chosen["build"]["cuda"] == "11.8"
    assert chosen["build"]["member"] == "MotionCor2_1.6.3_Cuda118_*"
    assert chosen["build"]["archive_name"] == "MotionCor2_1.6.3.zip"


def test_no_fitting_build_names_what_is_available_and_needed():
    chosen = emtools.emtools_select(BUILDS, "motioncor2", "11.4", "1.6.4", "minor")
    assert not chosen["ok"]
    assert chosen["msg"] == ("motioncor2 1.6.4: no build for this host, which needs CUDA 11.4 (minor match); "
                             "available: 1.6.4 (CUDA 11.6, 12.1)")


def test_newer_cuda_major_is_never_chosen_for_an_older_host():
    chosen = emtools.emtools_select(motioncor2("1.6.4", ["12.1"]), "motioncor2", "11.8", "", "minor")
    assert not chosen["ok"]
    assert "needs CUDA 11.8" in chosen["msg"] and "1.6.4 (CUDA 12.1)" in chosen["msg"]


def test_host_without_cuda_gets_only_cpu_builds():
    cpu = [{"version": "4.1.14", "cuda": "none", "src": "/srv/ctffind.tar.gz", "sha256": SHA,
            "format": "tar.gz", "member": "bin/ctffind"}]
    assert emtools.emtools_select(cpu, "ctffind4", "", "", "minor")["build"]["cuda"] == ""
    refused = emtools.emtools_select(BUILDS, "motioncor2", "", "", "minor")
    assert not refused["ok"]
    assert "this host has no CUDA" in refused["msg"]


def test_unknown_version_is_named():
    chosen = emtools.emtools_select(BUILDS, "motioncor2", "11.8", "1.7.0", "minor")
    assert chosen["msg"].startswith("motioncor2: version 1.7.0 is not among the artifacts; available: 1.6.3")


@pytest.mark.parametrize("broken,text", [
    ({"sha256": "abc"}, "64 hexadecimal digits"),
    ({"url": "https://artifacts.example/x.zip"}, "exactly one of src and url"),
    ({"format": "rar"}, "format 'rar'"),
    ({"member": ""}, "needs member"),
    ({"cuda": "eleven"}, "not a CUDA version"),
])
def test_bad_artifact_entries_are_explained(broken, text):
    entry = dict(BUILDS[0], **broken)
    chosen = emtools.emtools_select([entry], "motioncor2", "11.8", "", "minor")
    assert not chosen["ok"] and text in chosen["msg"]


@pytest.mark.parametrize("value,expected", [
    ("12.1", "12.1"), (11.8, "11.8"), ("121", "12.1"), ("102", "10.2"), ("cu10.1", "10.1"), ("12", "12.0"),
    (None, ""), ("none", ""), ("CPU", ""),
])
def test_normalize_cuda(value, expected):
    assert emtools.normalize_cuda(value) == expected


def test_version_order_is_natural():
    assert sorted(["1.6.10", "1.6.9", "1.10.0", "1.6.4"], key=emtools.version_key) == [
        "1.6.4", "1.6.9", "1.6.10", "1.10.0"]


# --- emtools_artifact module, run the way Ansible runs it -------------------------------------------------

def run_module(args, check_mode=False):
    payload = dict(args)
    if check_mode:
        payload["_ansible_check_mode"] = True
    path = Path(args["archive"]).parent / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
    completed = subprocess.run([sys.executable, str(ARTIFACT_MODULE), str(path)], capture_output=True, text=True,
                               check=False)
    assert completed.stdout.strip().startswith("{"), completed.stdout + completed.stderr
    return json.loads(completed.stdout)


@pytest.fixture
def zip_artifact(tmp_path):
    path = tmp_path / "MotionCor2_1.6.4_Mar31_2023.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for nnn in ("116", "118", "121"):
            archive.writestr("MotionCor2_1.6.4/MotionCor2_1.6.4_Cuda%s_Mar312023" % nnn, "build %s\n" % nnn)
    dest = tmp_path / "opt"
    dest.mkdir()
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), dest


def test_installs_one_member_then_is_idempotent(zip_artifact):
    path, digest, dest = zip_artifact
    args = {"archive": str(path), "sha256": digest, "format": "zip", "member": "MotionCor2_1.6.4_Cuda118_*",
            "dest_dir": str(dest), "mode": "0755"}
    first = run_module(args)
    assert first["changed"] is True, first
    installed = dest / "MotionCor2_1.6.4_Cuda118_Mar312023"
    assert installed.read_text() == "build 118\n"
    assert oct(installed.stat().st_mode & 0o777) == "0o755"
    assert sorted(os.listdir(dest)) == ["MotionCor2_1.6.4_Cuda118_Mar312023"]
    assert run_module(args)["changed"] is False


def test_wrong_sha256_writes_nothing(zip_artifact):
    path, _digest, dest = zip_artifact
    answer = run_module({"archive": str(path), "sha256": "0" * 64, "format": "zip", "member": "*Cuda118*",
                         "dest_dir": str(dest)})
    assert answer["failed"] is True
    assert answer["msg"].startswith("sha256 mismatch for %s: expected %s" % (path, "0" * 64))
    assert answer["msg"].endswith("nothing was installed")
    assert os.listdir(dest) == []


@pytest.mark.parametrize("pattern,text", [
    ("*Cuda999*", "no member matches '*Cuda999*'; the archive holds: MotionCor2_1.6.4/"),
    ("MotionCor2_1.6.4_Cuda1*", "3 members match"),
])
def test_member_must_match_exactly_one_file(zip_artifact, pattern, text):
    path, digest, dest = zip_artifact
    answer = run_module({"archive": str(path), "sha256": digest, "format": "zip", "member": pattern,
                         "dest_dir": str(dest)})
    assert answer["failed"] is True and text in answer["msg"]
    assert os.listdir(dest) == []


def test_tar_gz_member_by_path_and_check_mode(tmp_path):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for name in ("bin/ctffind", "bin/ctffind_plot_results.sh"):
            data = ("#!/bin/sh\necho %s\n" % name).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    path = tmp_path / "ctffind-4.1.14-linux64.tar.gz"
    path.write_bytes(raw.getvalue())
    dest = tmp_path / "opt"
    dest.mkdir()
    args = {"archive": str(path), "sha256": hashlib.sha256(raw.getvalue()).hexdigest(), "format": "tar.gz",
            "member": "bin/ctffind", "dest_dir": str(dest)}
    checked = run_module(args, check_mode=True)
    assert checked["changed"] is True and checked["present"] is False and os.listdir(dest) == []
    assert run_module(args)["path"] == str(dest / "ctffind")
    assert (dest / "ctffind").read_text() == "#!/bin/sh\necho bin/ctffind\n"


def test_creates_the_version_folder_bin_link_and_manifest(zip_artifact):
    path, digest, dest = zip_artifact
    version_dir = dest / "motioncor2" / "1.6.4"
    args = {"archive": str(path), "sha256": digest, "format": "zip", "member": "MotionCor2_1.6.4_Cuda118_*",
            "dest_dir": str(version_dir), "bin_name": "motioncor2", "manifest": {"tool": "motioncor2", "cuda": "11.8"},
            "mode": "0755"}
    first = run_module(args)
    assert first["changed"] is True, first
    link = version_dir / "bin" / "motioncor2"
    assert os.readlink(link) == "../MotionCor2_1.6.4_Cuda118_Mar312023"
    assert link.read_text() == "build 118\n"
    manifest = json.loads((version_dir / "build.json").read_text())
    assert manifest["cuda"] == "11.8"
    assert manifest["installed"] == str(version_dir / "MotionCor2_1.6.4_Cuda118_Mar312023")
    assert run_module(args)["changed"] is False
    # another CUDA build of the same version moves the link and keeps the first binary
    moved = run_module(dict(args, member="MotionCor2_1.6.4_Cuda121_*"))
    assert moved["changed"] is True
    assert os.readlink(link) == "../MotionCor2_1.6.4_Cuda121_Mar312023"
    assert (version_dir / "MotionCor2_1.6.4_Cuda118_Mar312023").exists()


def test_wrong_sha256_creates_no_version_folder(zip_artifact):
    path, _digest, dest = zip_artifact
    answer = run_module({"archive": str(path), "sha256": "1" * 64, "format": "zip", "member": "*Cuda118*",
                         "dest_dir": str(dest / "motioncor2" / "1.6.4"), "bin_name": "motioncor2"})
    assert answer["failed"] is True
    assert os.listdir(dest) == []


def test_a_file_in_place_of_the_bin_link_is_not_replaced(zip_artifact):
    path, digest, dest = zip_artifact
    (dest / "bin").mkdir()
    (dest / "bin" / "motioncor2").write_text("hand-installed\n")
    answer = run_module({"archive": str(path), "sha256": digest, "format": "zip", "member": "*Cuda118*",
                         "dest_dir": str(dest), "bin_name": "motioncor2"})
    assert answer["failed"] is True and "is not a symbolic link" in answer["msg"]
    assert (dest / "bin" / "motioncor2").read_text() == "hand-installed\n"
