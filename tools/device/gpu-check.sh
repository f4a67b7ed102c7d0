#!/bin/bash
# GPU detection on a real GPU host: records what nvidia-smi and lspci print (test fixtures)
# and runs the nvidia_gpu_facts module's detection against the live machine, three ways:
# nvidia-smi, lspci without a driver answer, and the sysfs fallback. Writes to $OUT (or ./out).
set -u
out=${OUT:-out}
mkdir -p "$out"
module=plugins/modules/nvidia_gpu_facts.py
export LC_ALL=C
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/query.txt" 2>&1
echo "query rc=$?"
nvidia-smi >"$out/banner.txt" 2>&1
echo "banner rc=$?"
if command -v lspci >/dev/null; then lspci -nn >"$out/lspci.txt" 2>&1; else echo "no lspci"; fi
python3 - "$module" "$out" <<'PY'
import importlib.util, json, subprocess, sys
spec = importlib.util.spec_from_file_location("nvidia_gpu_facts", sys.argv[1])
gpu = importlib.util.module_from_spec(spec); spec.loader.exec_module(gpu)

def run(argv):
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env={"LC_ALL": "C", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
    except FileNotFoundError:
        return None
    return done.returncode, done.stdout, done.stderr

def without_smi(argv):  # the driver does not answer: fall back to the bus
    return None if argv[0] == "nvidia-smi" else run(argv)

def bare(argv):  # neither nvidia-smi nor lspci: sysfs only
    return None

results = {
    "live": gpu.detect(run),
    "no_nvidia_smi": gpu.detect(without_smi),
    "sysfs_only": gpu.detect(bare),
}
json.dump(results, open(sys.argv[2] + "/detect.json", "w"), indent=1)
for name, result in results.items():
    print(name, "->", result["gpu_count"], result["source"], result["models"], result["driver_version"], result["cuda_version"])
    print("   ", result["message"])
PY
for device in /sys/bus/pci/devices/*; do
  [[ $(cat "$device/vendor" 2>/dev/null) == 0x10de ]] || continue
  echo "$(basename "$device") class=$(cat "$device/class") device=$(cat "$device/device")"
done >"$out/sysfs.txt"
cat "$out/sysfs.txt"
