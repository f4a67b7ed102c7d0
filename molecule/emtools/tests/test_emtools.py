"""State of the test host after converge, idempotence and side_effect (MotionCor2 upgraded)."""

import json

import pytest

# One podman exec per command (the ansible backend would start one ansible run per command).
testinfra_hosts = ["podman://embuffer-emtools"]


def test_gpu_fact_says_no_gpu_and_carries_the_override(host):
    fact = host.file("/etc/ansible/facts.d/embuffer_gpu.fact")
    assert fact.mode == 0o644
    data = json.loads(fact.content_string)
    assert data["count"] == 0
    assert data["models"] == []
    assert data["driver"] == ""
    assert data["cuda_version"] == "11.8"
    assert data["cuda_version_source"] == "override"
    # the test image has neither nvidia-smi nor lspci: the module falls back to sysfs
    assert data["message"] == ("No NVIDIA GPU on this host (nvidia-smi is not installed; no NVIDIA 3D/VGA "
                               "controller in /sys/bus/pci/devices; lspci is not installed)")
    assert data["source"] == "none"


def test_gpu_role_installed_no_driver_and_left_apt_sources_alone(host):
    for package in ("nvidia-driver", "nvidia-cuda-toolkit", "cuda-drivers"):
        assert not host.package(package).is_installed
    sources = host.file("/etc/apt/sources.list.d/debian.sources")
    if sources.exists:
        assert "non-free " not in sources.content_string + " "


def test_cuda_118_build_of_motioncor2_was_chosen(host):
    for version, date in (("1.6.3", "Dec142022"), ("1.6.4", "Mar312023")):
        folder = "/opt/emtools/motioncor2/%s" % version
        assert host.file("%s/MotionCor2_%s_Cuda118_%s" % (folder, version, date)).mode == 0o755
        for other in ("102", "116", "121"):
            assert not host.file("%s/MotionCor2_%s_Cuda%s_%s" % (folder, version, other, date)).exists
        build = json.loads(host.file(folder + "/build.json").content_string)
        assert build["cuda"] == "11.8"


def test_gctf_pinned_to_cuda_101_and_ctffind_cpu_build(host):
    assert host.file("/opt/emtools/gctf/1.18/Gctf_v1.18_sm30-75_cu10.1").exists
    assert not host.file("/opt/emtools/gctf/1.18/Gctf_v1.18_sm30-75_cu10.2").exists
    assert host.run("gctf --version").stdout.strip() == "Gctf 1.18 stand-in, built for CUDA 10.1, sm_30-75"
    assert host.file("/opt/emtools/ctffind4/4.1.14/ctffind").exists
    assert not host.file("/opt/emtools/ctffind4/4.1.14/ctffind_plot_results.sh").exists
    assert host.run("ctffind4 --version").stdout.strip() == "ctffind 4.1.14 stand-in, CPU build"


def test_upgrade_kept_the_old_version_and_moved_the_stable_name(host):
    assert host.file("/opt/emtools/motioncor2/1.6.3").is_directory
    link = host.file("/usr/local/bin/motioncor2")
    assert link.is_symlink
    assert link.linked_to == "/opt/emtools/motioncor2/1.6.4/MotionCor2_1.6.4_Cuda118_Mar312023"
    result = host.run("motioncor2 --version")
    assert result.rc == 0
    assert result.stdout.strip() == "MotionCor2 1.6.4 stand-in, built for CUDA 11.8"


def test_failed_builds_left_no_trace_in_the_modules(host):
    assert not host.file("/etc/lmod/modules/motioncor2/1.7.0.lua").exists
    assert not host.file("/opt/emtools/gctf/1.18/Gctf_v1.18_sm30-75_cu10.2").exists


@pytest.mark.parametrize("module,version", [
    ("motioncor2/1.6.3", "1.6.3"),
    ("motioncor2/1.6.4", "1.6.4"),
    ("motioncor2", "1.6.4"),      # the default is the selected build (.version), not just the newest
])
def test_module_load_in_a_login_shell(host, module, version):
    result = host.run("bash -lc 'module load %s && motioncor2 --version && command -v motioncor2'" % module)
    assert result.rc == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "MotionCor2 %s stand-in, built for CUDA 11.8" % version
    # the module's folder comes before /usr/local/bin, whose stable name points at 1.6.4
    assert lines[1] == "/opt/emtools/motioncor2/%s/bin/motioncor2" % version


def test_gctf_and_ctffind_modules_load(host):
    result = host.run("bash -lc 'module load gctf/1.18 ctffind4/4.1.14 && module list 2>&1 && gctf --version'")
    assert result.rc == 0, result.stderr
    assert "gctf/1.18" in result.stdout and "ctffind4/4.1.14" in result.stdout
