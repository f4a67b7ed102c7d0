# -*- coding: utf-8 -*-
# Copyright: embuffer contributors
# SPDX-License-Identifier: BSD-3-Clause
"""Choose which facility artifact (tool build) fits a host's CUDA version."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import posixpath
import re

CPU_MARKERS = ("", "none", "cpu")
FORMATS = ("zip", "tar.gz", "binary")


def normalize_cuda(value):
    """'12.1', 12.1, '121', 'cuda12.1' -> '12.1'; None/''/'none'/'cpu' -> '' (a CPU build)."""
    if value is None:
        return ""
    text = str(value).strip().lower()
    if text in CPU_MARKERS:
        return ""
    text = re.sub(r"^(cuda|cu)", "", text)
    match = re.match(r"^(\d+)\.(\d+)", text)
    if match:
        return "%d.%d" % (int(match.group(1)), int(match.group(2)))
    match = re.match(r"^(\d+)$", text)
    if match and len(text) >= 3:
        # MotionCor2 spells CUDA 12.1 as "121" and 10.2 as "102".
        return "%d.%d" % (int(text[:-1]), int(text[-1]))
    if match:
        return "%d.0" % int(text)
    raise ValueError("not a CUDA version: %r" % (value,))


def _cuda_key(cuda):
    major, minor = cuda.split(".")
    return (int(major), int(minor))


def version_key(version):
    """Natural order: 1.6.10 after 1.6.9, 4.1.14 after 4.1.8."""
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.findall(r"\d+|[A-Za-z]+", str(version)))


def cuda_fits(build_cuda, host_cuda, match):
    """Whether a build made for build_cuda runs with the host's CUDA.

    backward: a build for the host's CUDA or any older one, majors included. The host's CUDA
    is the driver's (nvidia-smi), and a driver runs programs built for older CUDA releases;
    their runtime libraries must be installed, which the role's ldd check proves. (Seen on an
    H200: driver 580 reports CUDA 13.0 while MotionCor2 builds stop at 12.x.)
    minor: the same major, and a build minor not above the host's. exact: same major.minor.
    A CPU build ('') fits every host.
    """
    if build_cuda == "":
        return True
    if host_cuda == "":
        return False
    if match == "exact":
        return build_cuda == host_cuda
    build, host = _cuda_key(build_cuda), _cuda_key(host_cuda)
    if match == "minor":
        return build[0] == host[0] and build[1] <= host[1]
    return build <= host


def _describe(builds):
    parts = []
    for version in sorted({b["version"] for b in builds}, key=version_key):
        cudas = sorted({b["cuda"] for b in builds if b["version"] == version},
                       key=lambda c: (-1, -1) if c == "" else _cuda_key(c))
        kinds = (["CPU"] if "" in cudas else []) + (["CUDA " + ", ".join(c for c in cudas if c)] if any(cudas) else [])
        parts.append("%s (%s)" % (version, "; ".join(kinds)))
    return "; ".join(parts)


def _normalize(tool, index, entry):
    where = "%s artifact #%d" % (tool, index + 1)
    if not isinstance(entry, dict):
        raise ValueError("%s is not a mapping" % where)
    version = str(entry.get("version") or "").strip()
    if not version:
        raise ValueError("%s has no version" % where)
    src, url = entry.get("src") or "", entry.get("url") or ""
    if bool(src) == bool(url):
        raise ValueError("%s (%s) needs exactly one of src and url" % (where, version))
    sha256 = str(entry.get("sha256") or "").strip().lower()
    if not re.match(r"^[0-9a-f]{64}$", sha256):
        raise ValueError("%s (%s) needs a sha256 of 64 hexadecimal digits" % (where, version))
    fmt = entry.get("format") or "binary"
    if fmt not in FORMATS:
        raise ValueError("%s (%s): format %r is not one of %s" % (where, version, fmt, ", ".join(FORMATS)))
    member = entry.get("member") or ""
    if fmt != "binary" and not member:
        raise ValueError("%s (%s): a %s archive needs member (the binary's name or pattern inside it)"
                         % (where, version, fmt))
    try:
        cuda = normalize_cuda(entry.get("cuda"))
    except ValueError as exc:
        raise ValueError("%s (%s): %s" % (where, version, exc))
    location = src or url
    return {
        "tool": tool,
        "version": version,
        "cuda": cuda,
        "src": src,
        "url": url,
        "sha256": sha256,
        "format": fmt,
        "member": member,
        "archive_name": posixpath.basename(location.split("?", 1)[0].rstrip("/")),
    }


def emtools_select(artifacts, tool, host_cuda="", version="", match="backward"):
    """Pick one build of `tool` for a host; returns {'ok', 'msg', 'build'} (never raises)."""
    try:
        builds = [_normalize(tool, i, entry) for i, entry in enumerate(artifacts or [])]
        host = normalize_cuda(host_cuda)
    except ValueError as exc:
        return {"ok": False, "msg": str(exc), "build": {}}
    if not builds:
        return {"ok": False, "msg": "%s: no artifacts configured" % tool, "build": {}}
    wanted_version = str(version or "").strip()
    candidates = builds
    if wanted_version:
        candidates = [b for b in builds if b["version"] == wanted_version]
        if not candidates:
            return {"ok": False, "build": {}, "msg": "%s: version %s is not among the artifacts; available: %s"
                    % (tool, wanted_version, _describe(builds))}
    fitting = [b for b in candidates if cuda_fits(b["cuda"], host, match)]
    if not fitting:
        needed = ("CUDA %s (%s match)" % (host, match)) if host else \
            "a CPU build (this host has no CUDA: no GPU fact and no override)"
        return {"ok": False, "build": {}, "msg": "%s%s: no build for this host, which needs %s; available: %s"
                % (tool, " " + wanted_version if wanted_version else "", needed, _describe(candidates))}
    # Newest version first; within it the closest CUDA build, CPU builds last.
    best = max(fitting, key=lambda b: (version_key(b["version"]),
                                       (0, 0, 0) if b["cuda"] == "" else (1,) + _cuda_key(b["cuda"])))
    return {"ok": True, "build": best, "msg": "%s %s: %s build %s" % (
        tool, best["version"], "CUDA " + best["cuda"] if best["cuda"] else "CPU",
        best["member"] or best["archive_name"])}


class FilterModule(object):
    def filters(self):
        return {"emtools_select": emtools_select}
