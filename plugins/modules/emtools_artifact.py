#!/usr/bin/python
# Copyright: embuffer contributors
# SPDX-License-Identifier: BSD-3-Clause
# Ansible's module layout puts the imports after DOCUMENTATION, EXAMPLES and RETURN.
# ruff: noqa: E402
"""Verify a staged EM tool artifact and install one binary out of it."""

DOCUMENTATION = r"""
---
module: emtools_artifact
short_description: Verify an EM tool artifact's sha256 and install one binary from it
description:
  - Checks the sha256 of a staged artifact (a zip, a tar.gz or a bare binary) before anything
    else; a mismatch fails and writes nothing.
  - Creates I(dest_dir) (mode 0755) only once the artifact is verified.
  - Finds the one archive member that matches I(member) (a name or shell pattern, matched against
    the member's path and, for patterns without a slash, its base name) and installs it as
    I(dest_dir)/<base name of the member>. No match, or more than one, fails with the members
    listed.
  - Idempotent (the installed file's sha256 is compared with the member's), supports check mode
    and diff.
options:
  archive:
    description: Path of the staged artifact on the managed host.
    type: path
    required: true
  sha256:
    description: Expected sha256 of the artifact.
    type: str
    required: true
  format:
    description: How the artifact is packed.
    type: str
    choices: [zip, tar.gz, binary]
    default: binary
  member:
    description: Name or shell pattern of the binary inside a zip or tar.gz.
    type: str
    default: ""
  dest_dir:
    description: Folder that receives the binary, created when missing.
    type: path
    required: true
  name:
    description:
      File name in I(dest_dir); defaults to the member's base name (the artifact's for a binary).
    type: str
    default: ""
  bin_name:
    description:
      When set, I(dest_dir)/bin/<bin_name> becomes a relative symbolic link to the installed file.
    type: str
    default: ""
  manifest:
    description:
      When set, written as I(dest_dir)/build.json with the installed path and sha256 added.
    type: dict
extends_documentation_fragment:
  - ansible.builtin.files
author:
  - embuffer contributors (@embuffer)
"""

EXAMPLES = r"""
- name: Install the CUDA 11.8 build of MotionCor2 1.6.4
  emtools_artifact:
    archive: /var/cache/embuffer/emtools/motioncor2/MotionCor2_1.6.4_Mar31_2023.zip
    sha256: "{{ motioncor2_zip_sha256 }}"
    format: zip
    member: MotionCor2_1.6.4_Cuda118_*
    dest_dir: /opt/emtools/motioncor2/1.6.4
    owner: root
    group: root
    mode: "0755"
"""

RETURN = r"""
path:
  description: Installed file.
  returned: success
  type: str
  sample: /opt/emtools/motioncor2/1.6.4/MotionCor2_1.6.4_Cuda118_Mar312023
member:
  description: The archive member that was installed.
  returned: success
  type: str
sha256:
  description: sha256 of the installed file.
  returned: success
  type: str
present:
  description: Whether the installed file is on disk (false in check mode when it would be written).
  returned: always
  type: bool
command:
  description: The bin/<bin_name> link, when I(bin_name) is set.
  returned: when bin_name is set
  type: str
manifest:
  description: Path of build.json, when I(manifest) is set.
  returned: when manifest is set
  type: str
"""

import fnmatch
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zipfile

CHUNK = 1 << 20


def sha256_stream(stream):
    """sha256 of what a binary stream holds, read in chunks."""
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(CHUNK), b""):
        digest.update(block)
    return digest.hexdigest()


def sha256_file(path):
    """sha256 of a file's content."""
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def member_matches(name, pattern):
    """Whether an archive member matches by path or, for a pattern without a slash, base name."""
    name = name[2:] if name.startswith("./") else name
    if fnmatch.fnmatchcase(name, pattern):
        return True
    return "/" not in pattern and fnmatch.fnmatchcase(posixpath_basename(name), pattern)


def posixpath_basename(name):
    """Base name of an archive member or path ("/"-separated, trailing slash ignored)."""
    return name.rstrip("/").rsplit("/", 1)[-1]


class Archive:
    """Uniform access to the regular files of a zip, a tar.gz or a bare binary."""

    def __init__(self, path, fmt):
        self.path, self.fmt = path, fmt
        self._zip = self._tar = None
        if fmt == "zip":
            self._zip = zipfile.ZipFile(path)
        elif fmt == "tar.gz":
            # kept open for names() and open(); close() closes it
            self._tar = tarfile.open(path, mode="r:gz")  # noqa: SIM115

    def names(self):
        if self._zip is not None:
            return [info.filename for info in self._zip.infolist() if not info.is_dir()]
        if self._tar is not None:
            return [info.name for info in self._tar.getmembers() if info.isfile()]
        return [os.path.basename(self.path)]

    def open(self, name):
        if self._zip is not None:
            return self._zip.open(name)
        if self._tar is not None:
            return self._tar.extractfile(name)
        return open(self.path, "rb")

    def close(self):
        for handle in (self._zip, self._tar):
            if handle is not None:
                handle.close()


def choose_member(names, pattern, fmt):
    """The single member matching pattern, or (None, error text)."""
    if fmt == "binary":
        return names[0], None
    matches = [name for name in names if member_matches(name, pattern)]
    if len(matches) == 1:
        return matches[0], None
    listed = ", ".join(sorted(names)[:30]) + (" ..." if len(names) > 30 else "")
    if not matches:
        return None, f"no member matches {pattern!r}; the archive holds: {listed}"
    return None, (
        f"{len(matches)} members match {pattern!r} ({', '.join(sorted(matches))}); "
        "make member name exactly one"
    )


def ensure_dir(module, path, owner, group, changed):
    """Create path (and its parents) as a 0755 folder; returns the updated changed flag."""
    if not os.path.isdir(path):
        changed = True
        if not module.check_mode:
            os.makedirs(path, 0o755)
    if os.path.isdir(path):
        args = module.load_file_common_arguments(
            dict(module.params, mode="0755", owner=owner, group=group), path=path
        )
        changed = module.set_fs_attributes_if_different(args, changed)
    return changed


def ensure_link(module, link, target, owner, group, changed):
    """Make link a symbolic link to target (relative); a file in its way is an error."""
    if os.path.islink(link) and os.readlink(link) == target:
        pass
    elif os.path.lexists(link) and not os.path.islink(link):
        module.fail_json(msg=f"{link} exists and is not a symbolic link; not replacing it")
    else:
        changed = True
        if not module.check_mode:
            tmp = link + ".emtools-tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.rename(tmp, link)
    if os.path.islink(link) and (owner or group):
        if owner:
            changed = module.set_owner_if_different(link, owner, changed, expand=False)
        if group:
            changed = module.set_group_if_different(link, group, changed, expand=False)
    return changed


def ensure_content(module, path, text, changed):
    """Write text to path (0644, atomically) unless it holds exactly that already."""
    data = text.encode("utf-8")
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            if handle.read() == data:
                return changed
    if not module.check_mode:
        handle, tmp = tempfile.mkstemp(prefix=".emtools-", dir=os.path.dirname(path))
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        module.atomic_move(tmp, path)
    return True


# --- argument handling -----------------------------------------------------------------------


def build_module():
    """Argument handling: the AnsibleModule with this module's options and the file options."""
    from ansible.module_utils.basic import AnsibleModule

    return AnsibleModule(
        argument_spec={
            "archive": {"type": "path", "required": True},
            "sha256": {"type": "str", "required": True},
            "format": {"type": "str", "choices": ["zip", "tar.gz", "binary"], "default": "binary"},
            "member": {"type": "str", "default": ""},
            "dest_dir": {"type": "path", "required": True},
            "name": {"type": "str", "default": ""},
            "bin_name": {"type": "str", "default": ""},
            "manifest": {"type": "dict"},
        },
        add_file_common_args=True,
        supports_check_mode=True,
    )


# --- verify ----------------------------------------------------------------------------------


def verify_artifact(module):
    """Verify the staged artifact: it exists (in check mode, where staging did not run either,
    the run ends here reporting a change), its sha256 is the expected one, and a zip or tar.gz
    names its member. Fails the task, having written nothing, otherwise."""
    params = module.params
    expected = params["sha256"].strip().lower()
    if not os.path.isfile(params["archive"]):
        if module.check_mode:
            # The staging copy before this task did not happen in check mode either.
            guess = params["name"] or posixpath_basename(params["member"] or params["archive"])
            module.exit_json(
                changed=True,
                path=os.path.join(params["dest_dir"], guess),
                member=params["member"],
                sha256="",
                present=False,
                msg="artifact not staged yet (check mode)",
            )
        module.fail_json(msg=f"artifact {params['archive']} does not exist")
    actual = sha256_file(params["archive"])
    if actual != expected:
        module.fail_json(
            msg=f"sha256 mismatch for {params['archive']}: expected {expected}, got {actual}; "
            "nothing was installed",
            expected_sha256=expected,
            actual_sha256=actual,
        )
    if params["format"] != "binary" and not params["member"]:
        module.fail_json(msg=f"member is required for a {params['format']} artifact")


# --- install ---------------------------------------------------------------------------------


def open_archive(module):
    """The verified artifact opened as its format, or fail the task."""
    params = module.params
    try:
        return Archive(params["archive"], params["format"])
    except (zipfile.BadZipfile, tarfile.TarError, OSError) as exc:
        module.fail_json(msg=f"cannot read {params['archive']} as {params['format']}: {exc}")


def copy_member(module, archive, member, dest):
    """Write the member to dest through a temporary file in dest_dir and an atomic move."""
    handle, tmp = tempfile.mkstemp(prefix=".emtools-", dir=module.params["dest_dir"])
    try:
        with os.fdopen(handle, "wb") as out, archive.open(member) as stream:
            shutil.copyfileobj(stream, out, CHUNK)
        module.atomic_move(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def install_member(module, archive):
    """Install: pick the one matching member, create dest_dir, and copy the member there when
    the installed file's sha256 differs (not in check mode).

    Returns a dict: member, dest, wanted (the member's sha256), current (the installed file's,
    None when absent) and changed.
    """
    params = module.params
    member, error = choose_member(archive.names(), params["member"], params["format"])
    if error:
        module.fail_json(msg=f"{params['archive']}: {error}")
    # Only a verified artifact with exactly one matching member gets a folder.
    changed = ensure_dir(module, params["dest_dir"], params["owner"], params["group"], False)
    dest = os.path.join(params["dest_dir"], params["name"] or posixpath_basename(member))
    with archive.open(member) as stream:
        wanted = sha256_stream(stream)
    current = sha256_file(dest) if os.path.isfile(dest) else None
    if current != wanted:
        changed = True
        if not module.check_mode:
            copy_member(module, archive, member, dest)
    return {
        "member": member,
        "dest": dest,
        "wanted": wanted,
        "current": current,
        "changed": changed,
    }


def install(module):
    """Install the verified artifact's binary (see install_member); the archive is closed after."""
    archive = open_archive(module)
    try:
        return install_member(module, archive)
    finally:
        archive.close()


# --- extras and result -----------------------------------------------------------------------


def install_extras(module, installed, result, changed):
    """The binary's file attributes, then the optional bin/<bin_name> link and build.json;
    adds their paths to result and returns the updated changed flag."""
    params = module.params
    dest, wanted = installed["dest"], installed["wanted"]
    if not module.check_mode or os.path.exists(dest):
        file_args = module.load_file_common_arguments(params, path=dest)
        changed = module.set_fs_attributes_if_different(file_args, changed)
    if params["bin_name"]:
        # bin/ holds only the command's name, so a modulefile's PATH exposes nothing else.
        bin_dir = os.path.join(params["dest_dir"], "bin")
        changed = ensure_dir(module, bin_dir, params["owner"], params["group"], changed)
        result["command"] = os.path.join(bin_dir, params["bin_name"])
        changed = ensure_link(
            module,
            result["command"],
            "../" + os.path.basename(dest),
            params["owner"],
            params["group"],
            changed,
        )
    if params["manifest"] is not None:
        manifest = dict(params["manifest"], installed=dest, installed_sha256=wanted)
        result["manifest"] = os.path.join(params["dest_dir"], "build.json")
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        changed = ensure_content(module, result["manifest"], text, changed)
    return changed


def installed_result(module, installed):
    """The result's path, member, sha256, present and diff for the installed binary."""
    dest, wanted, current = installed["dest"], installed["wanted"], installed["current"]
    # present: the selected build is on disk now (false only in check mode before it was
    # installed).
    return {
        "path": dest,
        "member": installed["member"],
        "sha256": wanted,
        "present": current == wanted or not module.check_mode,
        "diff": {
            "before": {"path": dest, "sha256": current or "(absent)"},
            "after": {"path": dest, "sha256": wanted},
        },
    }


def main():
    """Parse the arguments, verify the artifact, install its binary and the extras, report."""
    module = build_module()
    verify_artifact(module)
    installed = install(module)
    result = installed_result(module, installed)
    changed = install_extras(module, installed, result, installed["changed"])
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
