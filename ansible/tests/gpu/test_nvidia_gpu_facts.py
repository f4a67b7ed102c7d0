"""Unit tests of the GPU detection in plugins/modules/nvidia_gpu_facts.py.

The h200_x1 fixtures were recorded on a real H200 host (driver 580.159.04, no lspci installed)
with tools/device/gpu-check.sh, which also ran this detection against that live machine. The
other fixtures reproduce the output formats of nvidia-smi and lspci on A100, H100, RTX 3090,
RTX 4090 and RTX A6000 hosts and on hosts without an NVIDIA GPU.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MODULE_PATH = REPO / "plugins" / "modules" / "nvidia_gpu_facts.py"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

_spec = importlib.util.spec_from_file_location("nvidia_gpu_facts", MODULE_PATH)
gpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu)


def fixture(name):
    return (FIXTURES / name).read_text()


class FakeHost:
    """Answers the module's commands from recorded outputs; None means 'not installed'."""

    def __init__(self, query=None, banner=None, lspci=None, smi_rc=0, lspci_rc=0):
        self.query, self.banner, self.lspci = query, banner, lspci
        self.smi_rc, self.lspci_rc = smi_rc, lspci_rc
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[0] == "nvidia-smi":
            if self.query is None:
                return None
            if self.smi_rc != 0:
                return (self.smi_rc, self.query, "")
            return (0, self.banner if len(argv) == 1 else self.query, "")
        if argv[0] == "lspci":
            if self.lspci is None:
                return None
            return (self.lspci_rc, self.lspci, "")
        raise AssertionError("unexpected command %r" % argv)


GPU_HOSTS = [
    # fixture stem, count, models, driver, cuda, memory MiB of the first GPU
    ("a100_sxm4_x4", 4, ["NVIDIA A100-SXM4-80GB"], "535.161.08", "12.2", 81920),
    ("h100_pcie_x2", 2, ["NVIDIA H100 PCIe"], "550.54.15", "12.4", 81559),
    ("rtx3090", 1, ["NVIDIA GeForce RTX 3090"], "535.183.01", "12.2", 24576),
    ("rtx4090_x2", 2, ["NVIDIA GeForce RTX 4090"], "550.120", "12.4", 24564),
    ("rtx_a6000_x4", 4, ["NVIDIA RTX A6000"], "525.147.05", "12.0", 49140),
]


@pytest.mark.parametrize("stem,count,models,driver,cuda,memory", GPU_HOSTS)
def test_gpu_host_with_driver(stem, count, models, driver, cuda, memory):
    host = FakeHost(fixture(stem + ".query.txt"), fixture(stem + ".banner.txt"), fixture(stem + ".lspci.txt"))
    result = gpu.detect(host)
    assert result["gpu_count"] == count
    assert result["models"] == models
    assert result["driver_version"] == driver
    assert result["cuda_version"] == cuda
    assert result["source"] == "nvidia-smi"
    assert result["gpus"][0]["memory_mib"] == memory
    assert result["nvidia_smi_error"] == ""
    assert "%d NVIDIA GPU(s)" % count in result["message"] and cuda in result["message"]
    # nvidia-smi answered, so lspci is not needed
    assert all(call[0] == "nvidia-smi" for call in host.calls)


def test_recorded_h200_host():
    """What nvidia-smi printed on a real H200 host; nvidia-smi answers, lspci is never asked."""
    host = FakeHost(fixture("h200_x1.query.txt"), fixture("h200_x1.banner.txt"), lspci=None)
    result = gpu.detect(host)
    assert result["gpu_count"] == 1
    assert result["models"] == ["NVIDIA H200"]
    assert result["driver_version"] == "580.159.04"
    assert result["cuda_version"] == "13.0"
    assert result["gpus"][0]["memory_mib"] == 143771
    assert result["source"] == "nvidia-smi"
    assert all(call[0] == "nvidia-smi" for call in host.calls)


def test_recorded_h200_sysfs_when_the_driver_does_not_answer(tmp_path):
    """The same host's PCI functions of vendor 10de, as recorded from /sys/bus/pci/devices,
    laid out as sysfs folders: without nvidia-smi and lspci the GPU is still counted."""
    for line in fixture("h200_x1.sysfs.txt").splitlines():
        address, pci_class, device_id = line.split()
        folder = tmp_path / address
        folder.mkdir()
        (folder / "vendor").write_text("0x10de\n")
        (folder / "class").write_text(pci_class.split("=")[1] + "\n")
        (folder / "device").write_text(device_id.split("=")[1] + "\n")
    result = gpu.detect(FakeHost(query=None, lspci=None), sysfs_pci_root=str(tmp_path))
    assert result["gpu_count"] == 1
    assert result["source"] == "sysfs"
    assert result["gpus"][0]["pci_id"] == "10de:2335"
    assert result["gpus"][0]["pci_address"] == "0000:00:06.0"
    assert "driver does not answer" in result["message"]


LSPCI_GPUS = [
    # NVSwitch bridges and the ASPEED BMC display are not GPUs
    ("a100_sxm4_x4", 4, ["A100 SXM4 80GB"], "10de:20b2"),
    # the Matrox BMC display is not an NVIDIA GPU; lspci -D addresses keep their domain
    ("h100_pcie_x2", 2, ["H100 PCIe"], "10de:2331"),
    # the HDMI audio function of a GeForce is not a second GPU
    ("rtx3090", 1, ["GeForce RTX 3090"], "10de:2204"),
    ("rtx4090_x2", 2, ["GeForce RTX 4090"], "10de:2684"),
    ("rtx_a6000_x4", 4, ["RTX A6000"], "10de:2230"),
]


@pytest.mark.parametrize("stem,count,models,pci_id", LSPCI_GPUS)
def test_parse_lspci_counts_only_gpus(stem, count, models, pci_id):
    found = gpu.parse_lspci(fixture(stem + ".lspci.txt"))
    assert len(found) == count
    assert sorted({item["name"] for item in found}) == models
    assert {item["pci_id"] for item in found} == {pci_id}


def test_h100_addresses_keep_the_pci_domain():
    found = gpu.parse_lspci(fixture("h100_pcie_x2.lspci.txt"))
    assert [item["pci_address"] for item in found] == ["0000:17:00.0", "0000:ca:00.0"]


@pytest.mark.parametrize("stem", ["a100_sxm4_x4", "h100_pcie_x2", "rtx3090"])
def test_gpu_present_but_driver_not_loaded(stem):
    """The state right after the driver package was installed and before the reboot."""
    host = FakeHost(query=fixture("nvidia_smi_no_driver.txt"), lspci=fixture(stem + ".lspci.txt"), smi_rc=9)
    result = gpu.detect(host)
    expected = [item for item in LSPCI_GPUS if item[0] == stem][0]
    assert result["gpu_count"] == expected[1]
    assert result["source"] == "lspci"
    assert result["driver_version"] == "" and result["cuda_version"] == ""
    assert result["nvidia_smi_error"].startswith("NVIDIA-SMI has failed because it couldn't communicate")
    assert "driver does not answer" in result["message"]


def test_gpu_present_without_nvidia_smi():
    host = FakeHost(query=None, lspci=fixture("rtx4090_x2.lspci.txt"))
    result = gpu.detect(host)
    assert result["gpu_count"] == 2
    assert result["nvidia_smi_error"] == "nvidia-smi is not installed"


@pytest.mark.parametrize("lspci_fixture", ["no_gpu_server.lspci.txt", "kvm_guest.lspci.txt"])
def test_no_gpu_no_nvidia_smi(lspci_fixture):
    result = gpu.detect(FakeHost(query=None, lspci=fixture(lspci_fixture)))
    assert result["gpu_count"] == 0
    assert result["models"] == [] and result["gpus"] == []
    assert result["cuda_version"] == "" and result["driver_version"] == ""
    assert result["source"] == "none"
    assert result["message"] == (
        "No NVIDIA GPU on this host (nvidia-smi is not installed; no NVIDIA 3D/VGA controller in lspci)")


def test_no_gpu_and_nvidia_smi_cannot_reach_driver():
    host = FakeHost(query=fixture("nvidia_smi_no_driver.txt"), lspci=fixture("no_gpu_server.lspci.txt"), smi_rc=9)
    result = gpu.detect(host)
    assert result["gpu_count"] == 0
    assert "No NVIDIA GPU on this host" in result["message"]
    assert "couldn't communicate with the NVIDIA driver" in result["message"]


def test_nvidia_smi_no_devices_found():
    host = FakeHost(query=fixture("nvidia_smi_no_devices.txt"), lspci=fixture("kvm_guest.lspci.txt"), smi_rc=6)
    result = gpu.detect(host)
    assert result["gpu_count"] == 0
    assert result["nvidia_smi_error"] == "No devices were found"


def test_no_lspci_falls_back_to_sysfs(tmp_path):
    def device(address, vendor, device_id, pci_class):
        folder = tmp_path / address
        folder.mkdir()
        (folder / "vendor").write_text(vendor + "\n")
        (folder / "device").write_text(device_id + "\n")
        (folder / "class").write_text(pci_class + "\n")

    device("0000:00:02.0", "0x1a03", "0x2000", "0x030000")   # ASPEED BMC display
    device("0000:17:00.0", "0x10de", "0x2331", "0x030200")   # H100 PCIe
    device("0000:17:00.1", "0x10de", "0x22ba", "0x040300")   # NVIDIA audio function
    device("0000:c1:00.0", "0x10de", "0x22a3", "0x068000")   # NVSwitch
    result = gpu.detect(FakeHost(query=None, lspci=None), sysfs_pci_root=str(tmp_path))
    assert result["gpu_count"] == 1
    assert result["source"] == "sysfs"
    assert result["gpus"][0]["pci_id"] == "10de:2331"
    assert "lspci is not installed" in result["message"]


def test_no_lspci_and_no_sysfs_is_still_no_gpu(tmp_path):
    result = gpu.detect(FakeHost(query=None, lspci=None), sysfs_pci_root=str(tmp_path / "absent"))
    assert result["gpu_count"] == 0
    assert result["source"] == "none"
    assert "lspci is not installed" in result["message"]


@pytest.mark.parametrize("text,expected", [
    ("| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |", "12.4"),
    ("| NVIDIA-SMI 470.57.02    Driver Version: 470.57.02    CUDA Version: 11.4     |", "11.4"),
    ("| NVIDIA-SMI 535.104.05             Driver Version: 535.104.05   CUDA Version: N/A      |", ""),
    ("", ""),
])
def test_parse_cuda_version(text, expected):
    assert gpu.parse_cuda_version(text) == expected


def test_query_rows_with_unavailable_memory():
    rows = gpu.parse_query_gpu("NVIDIA GH200 480GB, 550.90.07, [N/A]\n")
    assert rows == [{"name": "NVIDIA GH200 480GB", "driver_version": "550.90.07", "memory_mib": None}]


def test_query_ignores_error_text_on_stdout():
    assert gpu.parse_query_gpu(fixture("nvidia_smi_no_driver.txt")) == []
    assert gpu.parse_query_gpu("No devices were found\n") == []


def test_module_runs_on_this_host_without_failing(tmp_path):
    """Run the module the way Ansible does, with no nvidia-smi on PATH: count 0, rc 0."""
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {
        "nvidia_smi": "embuffer-test-no-such-nvidia-smi", "sysfs_pci_root": str(tmp_path / "none"),
        "lspci": "embuffer-test-no-such-lspci"}}))
    completed = subprocess.run([sys.executable, str(MODULE_PATH), str(args)], capture_output=True, text=True,
                               env=dict(os.environ, PATH="/nonexistent"), check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    answer = json.loads(completed.stdout)
    assert answer["changed"] is False
    assert answer["gpu_count"] == 0
    assert answer["message"].startswith("No NVIDIA GPU on this host")
