#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: embuffer contributors
# SPDX-License-Identifier: BSD-3-Clause
"""Detect NVIDIA GPUs, their driver and CUDA version without ever failing on a host without one."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: nvidia_gpu_facts
short_description: Detect NVIDIA GPUs, driver and CUDA version
description:
  - Runs C(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader) and plain
    C(nvidia-smi) (for the C(CUDA Version) of its banner).
  - When nvidia-smi is missing or cannot talk to the driver, counts the NVIDIA 3D and VGA controllers
    that C(lspci -nn) lists (vendor C(10de), class C(0300) or C(0302)); without lspci it reads
    C(/sys/bus/pci/devices) instead. NVSwitch bridges and the GPUs' audio and USB functions are not GPUs.
  - A host without a GPU, without nvidia-smi or without a working driver is not an error, the module
    reports C(gpu_count=0) (or the lspci count with an empty driver) and says why in C(message).
  - Never changes the host.
options:
  nvidia_smi:
    description: Name or path of the nvidia-smi executable.
    type: str
    default: nvidia-smi
  lspci:
    description: Name or path of the lspci executable.
    type: str
    default: lspci
  sysfs_pci_root:
    description: Folder that lists PCI devices, read when lspci is not installed.
    type: path
    default: /sys/bus/pci/devices
author:
  - embuffer contributors (@embuffer)
"""

EXAMPLES = r"""
- name: Detect NVIDIA GPUs
  nvidia_gpu_facts:
  register: gpu

- name: Show what was found
  ansible.builtin.debug:
    msg: "{{ gpu.gpu_count }} GPU(s): {{ gpu.models | join(', ') }}, CUDA {{ gpu.cuda_version }}"
"""

RETURN = r"""
gpu_count:
  description: Number of NVIDIA GPUs found (0 when none).
  returned: always
  type: int
  sample: 2
models:
  description: Distinct GPU model names, in the order found.
  returned: always
  type: list
  elements: str
  sample: ["NVIDIA A100-SXM4-80GB"]
gpus:
  description: One entry per GPU (name, driver_version, memory_mib; pci_address and pci_id from lspci).
  returned: always
  type: list
  elements: dict
driver_version:
  description: NVIDIA driver version from nvidia-smi, empty when the driver does not answer.
  returned: always
  type: str
  sample: "550.54.15"
cuda_version:
  description: Highest CUDA version the driver supports (nvidia-smi banner), empty when unknown.
  returned: always
  type: str
  sample: "12.4"
source:
  description: Where the count comes from, C(nvidia-smi), C(lspci), C(sysfs) or C(none).
  returned: always
  type: str
message:
  description: One human sentence saying what was found, or why nothing was.
  returned: always
  type: str
nvidia_smi_error:
  description: Why nvidia-smi gave no answer (not installed, or its first error line), empty when it did.
  returned: always
  type: str
"""

import os
import re

NVIDIA_VENDOR_ID = "10de"
# PCI classes of GPUs: 0300 VGA compatible controller, 0302 3D controller (data-centre cards).
GPU_PCI_CLASSES = ("0300", "0302")
QUERY_ARGS = ["--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]

_CUDA_RE = re.compile(r"CUDA Version\s*:\s*(\d+\.\d+)")
_DRIVER_RE = re.compile(r"Driver Version\s*:\s*([0-9][0-9.]*)")
_LSPCI_RE = re.compile(
    r"^(?P<address>(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s+"
    r"(?P<class_name>[^\[]*?)\s*\[(?P<class_id>[0-9a-fA-F]{4})\]:\s+"
    r"(?P<description>.*?)\s*\[(?P<vendor>[0-9a-fA-F]{4}):(?P<device>[0-9a-fA-F]{4})\]"
    r"(?:\s+\(rev [0-9a-fA-F]+\))?\s*$"
)
_NOT_A_VALUE = ("", "[n/a]", "n/a", "[not supported]", "[unknown error]")


def _clean(value):
    value = value.strip()
    return "" if value.lower() in _NOT_A_VALUE else value


def parse_memory_mib(text):
    """'81920 MiB' -> 81920; anything nvidia-smi cannot report ('[N/A]') -> None."""
    match = re.match(r"^\s*(\d+)\s*MiB\s*$", text or "")
    return int(match.group(1)) if match else None


def parse_query_gpu(output):
    """Parse `nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader`.

    GPU names may themselves hold commas (none of NVIDIA's do today), so the two last fields are
    taken from the right.
    """
    gpus = []
    for line in (output or "").splitlines():
        line = line.strip()
        if not line:
            continue
        fields = line.rsplit(",", 2)
        if len(fields) != 3:
            continue
        name, driver, memory = (field.strip() for field in fields)
        if not _clean(name) or not re.match(r"^(\d+(\.\d+)*|\[N/A\])$", driver, re.IGNORECASE):
            # nvidia-smi prints its errors on stdout; they are not GPUs.
            continue
        gpus.append({
            "name": _clean(name),
            "driver_version": _clean(driver),
            "memory_mib": parse_memory_mib(memory),
        })
    return gpus


def parse_cuda_version(banner):
    """'CUDA Version: 12.4' in the nvidia-smi banner -> '12.4'; '' when absent."""
    match = _CUDA_RE.search(banner or "")
    return match.group(1) if match else ""


def parse_banner_driver(banner):
    match = _DRIVER_RE.search(banner or "")
    return match.group(1) if match else ""


def _model_from_description(description):
    """'NVIDIA Corporation GA100 [A100 SXM4 80GB]' -> 'A100 SXM4 80GB' (the marketing name)."""
    names = re.findall(r"\[([^\]]+)\]", description)
    if names:
        return names[-1]
    return re.sub(r"^NVIDIA Corporation\s+", "", description).strip()


def parse_lspci(output):
    """NVIDIA 3D/VGA controllers in `lspci -nn` output (bridges, audio and USB functions skipped)."""
    gpus = []
    for line in (output or "").splitlines():
        match = _LSPCI_RE.match(line.strip())
        if not match:
            continue
        if match.group("vendor").lower() != NVIDIA_VENDOR_ID:
            continue
        if match.group("class_id") not in GPU_PCI_CLASSES:
            continue
        gpus.append({
            "name": _model_from_description(match.group("description")),
            "pci_address": match.group("address"),
            "pci_id": "%s:%s" % (match.group("vendor").lower(), match.group("device").lower()),
        })
    return gpus


def _read_first_line(path):
    try:
        with open(path) as handle:
            return handle.readline().strip()
    except (IOError, OSError):
        return ""


def scan_sysfs(root):
    """NVIDIA GPUs under /sys/bus/pci/devices: vendor 0x10de and class 0x0300xx or 0x0302xx."""
    gpus = []
    try:
        entries = sorted(os.listdir(root))
    except (IOError, OSError):
        return gpus
    for entry in entries:
        vendor = _read_first_line(os.path.join(root, entry, "vendor")).lower()
        pci_class = _read_first_line(os.path.join(root, entry, "class")).lower()
        device = _read_first_line(os.path.join(root, entry, "device")).lower()
        if vendor != "0x" + NVIDIA_VENDOR_ID or pci_class[2:6] not in GPU_PCI_CLASSES:
            continue
        device_id = device[2:] if device.startswith("0x") else device
        gpus.append({
            "name": "NVIDIA device %s:%s" % (NVIDIA_VENDOR_ID, device_id),
            "pci_address": entry,
            "pci_id": "%s:%s" % (NVIDIA_VENDOR_ID, device_id),
        })
    return gpus


def _first_line(text):
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def _unique(items):
    seen = []
    for item in items:
        if item and item not in seen:
            seen.append(item)
    return seen


def detect(run, nvidia_smi="nvidia-smi", lspci="lspci", sysfs_pci_root="/sys/bus/pci/devices"):
    """Detect GPUs. `run(argv)` returns (rc, stdout, stderr), or None when the program is missing."""
    result = {
        "gpu_count": 0, "models": [], "gpus": [], "driver_version": "", "cuda_version": "",
        "source": "none", "message": "", "nvidia_smi_error": "",
    }

    smi_gpus = []
    query = run([nvidia_smi] + QUERY_ARGS)
    if query is None:
        result["nvidia_smi_error"] = "nvidia-smi is not installed"
    else:
        rc, out, err = query
        smi_gpus = parse_query_gpu(out) if rc == 0 else []
        if rc != 0:
            result["nvidia_smi_error"] = _first_line(out) or _first_line(err) or "nvidia-smi exited with %d" % rc
        elif not smi_gpus:
            result["nvidia_smi_error"] = _first_line(out) or _first_line(err) or "nvidia-smi listed no GPU"

    if smi_gpus:
        banner = run([nvidia_smi])
        banner_text = banner[1] if banner is not None and banner[0] == 0 else ""
        result["gpus"] = smi_gpus
        result["gpu_count"] = len(smi_gpus)
        result["source"] = "nvidia-smi"
        result["driver_version"] = smi_gpus[0]["driver_version"] or parse_banner_driver(banner_text)
        result["cuda_version"] = parse_cuda_version(banner_text)
        result["models"] = _unique(gpu["name"] for gpu in smi_gpus)
        result["message"] = "%d NVIDIA GPU(s) found by nvidia-smi: %s; driver %s, CUDA %s" % (
            result["gpu_count"], ", ".join(result["models"]), result["driver_version"] or "unknown",
            result["cuda_version"] or "unknown")
        return result

    listing = run([lspci, "-nn"])
    if listing is not None and listing[0] == 0:
        bus_gpus, bus_source, bus_note = parse_lspci(listing[1]), "lspci", "lspci"
    else:
        bus_gpus, bus_source = scan_sysfs(sysfs_pci_root), "sysfs"
        bus_note = "%s; lspci %s" % (sysfs_pci_root, "is not installed" if listing is None else "failed")

    if bus_gpus:
        result["gpus"] = bus_gpus
        result["gpu_count"] = len(bus_gpus)
        result["source"] = bus_source
        result["models"] = _unique(gpu["name"] for gpu in bus_gpus)
        result["message"] = (
            "%d NVIDIA GPU(s) found by %s (%s) but the driver does not answer: %s"
            % (result["gpu_count"], bus_note, ", ".join(result["models"]), result["nvidia_smi_error"]))
    else:
        result["message"] = "No NVIDIA GPU on this host (%s; no NVIDIA 3D/VGA controller in %s)" % (
            result["nvidia_smi_error"], bus_note)
    return result


def main():
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(
        argument_spec=dict(
            nvidia_smi=dict(type="str", default="nvidia-smi"),
            lspci=dict(type="str", default="lspci"),
            sysfs_pci_root=dict(type="path", default="/sys/bus/pci/devices"),
        ),
        supports_check_mode=True,
    )

    def run(argv):
        executable = module.get_bin_path(argv[0], opt_dirs=["/usr/sbin", "/sbin", "/usr/bin"])
        if executable is None:
            return None
        # LC_ALL=C: the banner's "CUDA Version" is not translated, but error texts would be.
        return module.run_command([executable] + argv[1:], environ_update={"LC_ALL": "C"})

    result = detect(run, module.params["nvidia_smi"], module.params["lspci"], module.params["sysfs_pci_root"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
