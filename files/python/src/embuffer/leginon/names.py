"""Names that come from leginondb become paths on the buffer: check them before any use.

The services write with capabilities that override file permissions, so an image filename of
`../../var/lib/embuffer/journal` must never become a destination, and a session path must
lie under the buffer root once symbolic links are resolved, not only as a string. A row that
fails is reported (the movie is quarantined with the reason); it is never followed.
"""

from __future__ import annotations

import os


def name_problem(name: str, what: str) -> str | None:
    """Why `name` cannot be one path component, or None when it can."""
    if not name:
        return f"{what} is empty"
    if "\x00" in name:
        return f"{what} {name!r} contains a NUL byte"
    if "/" in name:
        return f"{what} {name!r} contains '/': it would leave its folder"
    if name in (".", ".."):
        return f"{what} {name!r} names a folder, not a file"
    if len(os.fsencode(name)) > 200:  # room for `.frames.tif` and the partial name's marks
        return f"{what} {name[:40]!r}... is longer than 200 bytes"
    return None


def contained(folder: str, root: str) -> bool:
    """Whether `folder` lies in (or is) `root` once both are resolved: `..` and symbolic
    links (a session owner's, say) cannot lead out. A folder that does not exist yet is
    judged by its deepest existing ancestor, resolved, plus the rest, normalised."""
    return _within(_resolved(folder), os.path.realpath(root))


def _resolved(path: str) -> str:
    path = os.path.normpath(path)
    head, rest = path, ""
    while head and not os.path.lexists(head):
        head, tail = os.path.split(head)
        rest = os.path.join(tail, rest) if rest else tail
        if not tail:
            break
    base = os.path.realpath(head) if head else ""
    return os.path.normpath(os.path.join(base, rest)) if rest else base


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
