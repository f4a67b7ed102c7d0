"""The names of partial copies: `.<final name>.<16 random hex>.embuffer-partial`.

A partial copy is written under a name nobody can prepare in advance (O_EXCL, random) and
that every part of embuffer recognises as its own: the scanner skips it, a copy removes the
leftovers a kill left before it starts again, and the folder listings leave it out.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from embuffer.safecopy import nofollow

PARTIAL_SUFFIX = ".embuffer-partial"


def partial_prefix(final_name: str) -> str:
    """Partial copies of `final_name` are `.<final_name>.<16 random hex>.embuffer-partial`:
    a name nobody can prepare in advance (created with O_EXCL), still recognisable as ours."""
    return f".{final_name}."


# What a partial name adds to the final one: "." + "." + 16 random hex + PARTIAL_SUFFIX.
PARTIAL_NAME_EXTRA_BYTES = 2 + 16 + len(PARTIAL_SUFFIX)


def is_partial_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(PARTIAL_SUFFIX)


def partials_of(final: Path) -> list[str]:
    """The names of partial copies of `final` in its folder (those left by a kill), never
    the set-aside earlier copies (`.<name>.earlier-<n>.embuffer-partial`)."""
    pattern = re.compile(
        re.escape(partial_prefix(final.name))
        + r"(?:[0-9a-f]{16}\.)?"
        + re.escape(PARTIAL_SUFFIX[1:])
        + "$"
    )
    try:
        with nofollow.folder(final.parent) as folder_fd:
            return sorted(name for name in os.listdir(folder_fd) if pattern.match(name))
    except (FileNotFoundError, NotADirectoryError):
        return []


def remove_partials(final: Path) -> None:
    """Remove every partial copy of `final` (files or folders) left by an interrupted copy."""
    for name in partials_of(final):
        nofollow.remove(final.parent / name)
