# Copyright: embuffer contributors
# SPDX-License-Identifier: BSD-3-Clause
"""Print, as one JSON object, the [Images] path of leginon.cfg and of its backup copy.

Usage: leginon_images_path.py LEGINON_CFG BACKUP. For each file ("config", "backup"): whether it exists, the value Leginon reads
(configparser, as Leginon does), the delimiter of the active `path` line ("=" or ":"; the
ini_file module only rewrites "="), a parse error if Leginon could not read the file, and
its owner, group and mode (the backup copy keeps them).
"""

import configparser
import grp
import json
import os
import pwd
import re
import sys

ACTIVE_PATH = re.compile(r"^[ \t]*path[ \t]*([=:])")
SECTION = re.compile(r"^\[([^\]]+)\]")


def describe(filename):
    try:
        with open(filename, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return {"path": filename, "exists": False, "images_path": None, "delimiter": None,
                "error": None}
    info = os.stat(filename)
    result = {
        "path": filename,
        "exists": True,
        "images_path": None,
        "delimiter": None,
        "error": None,
        "owner": pwd.getpwuid(info.st_uid).pw_name,
        "group": grp.getgrgid(info.st_gid).gr_name,
        "mode": "%04o" % (info.st_mode & 0o7777),
    }
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text, source=filename)
    except configparser.Error as error:
        result["error"] = str(error).replace("\n", " ")
        return result
    result["images_path"] = parser.get("Images", "path", fallback=None)
    section = None
    for line in text.splitlines():
        header = SECTION.match(line)
        if header:
            section = header.group(1).strip()
            continue
        found = ACTIVE_PATH.match(line)
        if section == "Images" and found:
            result["delimiter"] = found.group(1)
    return result


print(json.dumps({"config": describe(sys.argv[1]), "backup": describe(sys.argv[2])}))
