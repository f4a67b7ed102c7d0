#!/usr/bin/env python3
"""Build stand-ins for the licensed EM tools, packaged the way the real downloads are.

The real MotionCor2, Gctf and CTFFIND4 may not be redistributed, so this scenario tests the
role with small shell programs that say what they are: each prints its tool, version and CUDA
build for --version and refuses anything else. Packaging follows the vendors':
- MotionCor2_<ver>_<date>.zip: one MotionCor2_<ver>_Cuda<NNN>_<date> binary per CUDA version;
- Gctf_v1.18.tar.gz: Gctf_v1.18_sm30-75_cu<X.Y> binaries;
- ctffind-4.1.14-linux64.tar.gz: bin/ctffind (CPU build) and a helper script;
- MotionCor2_1.7.0_Cuda118_broken: a real ELF program whose libstdc++.so.6 dependency was
  renamed to libcufft.so.10 (same length), the way a binary looks on a host without CUDA libraries.

Writes the archives and artifacts.yml (the role's artifact lists, with their sha256) into OUTDIR.
"""

import hashlib
import io
import json
import os
import sys
import tarfile
import zipfile

FIXED_TIME = (2023, 3, 31, 12, 0, 0)   # fixed member dates: the archives' sha256 is reproducible
FIXED_EPOCH = 1680264000

MOTIONCOR2 = {
    "1.6.3": ("Dec142022", ["102", "116", "118", "121"]),
    "1.6.4": ("Mar312023", ["102", "116", "118", "121"]),
}
GCTF_CUDAS = ["10.1", "10.2"]
CTFFIND_VERSION = "4.1.14"


def stand_in(tool, version, build):
    return (
        "#!/bin/sh\n"
        "# Test stand-in for the licensed %(tool)s binary (embuffer molecule scenario emtools).\n"
        "case \"$1\" in\n"
        "  --version) echo \"%(tool)s %(version)s stand-in, %(build)s\" ;;\n"
        "  *) echo \"%(tool)s stand-in: only --version is implemented\" >&2; exit 2 ;;\n"
        "esac\n" % {"tool": tool, "version": version, "build": build}
    ).encode()


def sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def write_zip(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.external_attr = 0o100755 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)


def write_tar_gz(path, members):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, FIXED_EPOCH
            info.uname = info.gname = "root"
            archive.addfile(info, io.BytesIO(data))
    import gzip
    with open(path, "wb") as handle:
        with gzip.GzipFile(fileobj=handle, mode="wb", mtime=FIXED_EPOCH, filename="") as gz:
            gz.write(raw.getvalue())


def broken_elf():
    """A dynamically linked program of this machine with a dependency renamed to libcufft.so.10."""
    for candidate in ("/usr/bin/apt", "/usr/bin/apt-get", "/usr/bin/apt-cache"):
        if os.path.exists(candidate):
            data = open(candidate, "rb").read()
            if b"libstdc++.so.6\0" in data:
                return data.replace(b"libstdc++.so.6\0", b"libcufft.so.10\0")
    raise SystemExit("no ELF program linked against libstdc++.so.6 found to build the broken stand-in")


def main(outdir, url_base):
    os.makedirs(outdir, exist_ok=True)
    lists = {}

    for version, (date, cudas) in MOTIONCOR2.items():
        folder = "MotionCor2_%s_%s" % (version, date)
        members = [(folder + "/MotionCor2_%s_Cuda%s_%s" % (version, nnn, date),
                    stand_in("MotionCor2", version, "built for CUDA %s.%s" % (nnn[:-1], nnn[-1])))
                   for nnn in cudas]
        members.append((folder + "/README.txt", b"Stand-in archive for the embuffer molecule tests.\n"))
        path = os.path.join(outdir, folder + ".zip")
        write_zip(path, members)
        digest = sha256(path)
        lists["emtools_test_motioncor2_" + version.replace(".", "")] = [
            {"version": version, "cuda": "%s.%s" % (nnn[:-1], nnn[-1]), "src": path, "sha256": digest,
             "format": "zip", "member": "MotionCor2_%s_Cuda%s_*" % (version, nnn)}
            for nnn in cudas]

    gctf_path = os.path.join(outdir, "Gctf_v1.18.tar.gz")
    write_tar_gz(gctf_path, [("Gctf_v1.18/bin/Gctf_v1.18_sm30-75_cu%s" % cuda,
                              stand_in("Gctf", "1.18", "built for CUDA %s, sm_30-75" % cuda)) for cuda in GCTF_CUDAS])
    gctf_digest = sha256(gctf_path)
    lists["emtools_test_gctf"] = [
        {"version": "1.18", "cuda": cuda, "url": url_base + "/Gctf_v1.18.tar.gz", "sha256": gctf_digest,
         "format": "tar.gz", "member": "Gctf_v1.18_sm30-75_cu%s" % cuda} for cuda in GCTF_CUDAS]

    ctffind_path = os.path.join(outdir, "ctffind-%s-linux64.tar.gz" % CTFFIND_VERSION)
    write_tar_gz(ctffind_path, [
        ("bin/ctffind", stand_in("ctffind", CTFFIND_VERSION, "CPU build")),
        ("bin/ctffind_plot_results.sh", b"#!/bin/sh\necho 'plot helper stand-in'\n"),
    ])
    lists["emtools_test_ctffind"] = [
        {"version": CTFFIND_VERSION, "cuda": "none", "src": ctffind_path, "sha256": sha256(ctffind_path),
         "format": "tar.gz", "member": "bin/ctffind"}]

    broken_path = os.path.join(outdir, "MotionCor2_1.7.0_Cuda118_broken")
    with open(broken_path, "wb") as handle:
        handle.write(broken_elf())
    lists["emtools_test_motioncor2_broken"] = [
        {"version": "1.7.0", "cuda": "11.8", "src": broken_path, "sha256": sha256(broken_path),
         "format": "binary"}]

    # JSON is YAML: the playbooks load this file with vars_files.
    with open(os.path.join(outdir, "artifacts.yml"), "w") as handle:
        json.dump(lists, handle, indent=2, sort_keys=True)
        handle.write("\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: make_artifacts.py OUTDIR URL_BASE")
    main(sys.argv[1], sys.argv[2])
