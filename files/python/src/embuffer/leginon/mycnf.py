"""The `[client]` group of a my.cnf-style option file, read as the MySQL client reads it.

The one reader of these rules in embuffer; `plugins/module_utils/leginondb.py` (which runs
on hosts without this package) follows the same rules, and a test feeds both the same files:
- `[group]` headers; only `[client]` counts; `#` and `;` start comment lines;
- `name = value`, or a bare `name` (an empty value); names lower-cased, `-` read as `_`;
- a value may be quoted ('...' or "..."); unquoted, a `#` ends it and trailing blanks go;
- escapes `\\b \\t \\n \\r \\s \\\\ \\" \\'` (anything else keeps its backslash);
- `!include FILE` and `!includedir FOLDER` (its `*.cnf`, in name order), relative to the
  including file; a file is read once; later values win.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "r": "\r", "s": " ", "\\": "\\", '"': '"', "'": "'"}


class OptionFileError(Exception):
    pass


def option_value(text: str) -> str:
    """Decode one value: optional quotes, escape sequences, a trailing # comment."""
    text = text.strip()
    quote = text[0] if text[:1] in ("'", '"') else None
    position = 1 if quote else 0
    out: list[str] = []
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text):
            following = text[position + 1]
            out.append(ESCAPES.get(following, "\\" + following))
            position += 2
            continue
        if (quote and char == quote) or (not quote and char == "#"):
            break
        out.append(char)
        position += 1
    value = "".join(out)
    return value if quote else value.rstrip()


def client_options(path: Path, _seen: set[str] | None = None) -> dict[str, str]:
    seen = set() if _seen is None else _seen
    real = os.path.realpath(path)
    if real in seen:
        return {}
    seen.add(real)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise OptionFileError(f"cannot read the option file {path}: {error}") from None
    options: dict[str, str] = {}
    section: str | None = None
    for raw in lines:
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith(("!include ", "!includedir ")):
            directive, target = line.split(None, 1)
            where = os.path.join(os.path.dirname(path), target.strip())
            included = [where] if directive == "!include" else sorted(glob.glob(f"{where}/*.cnf"))
            for name in included:
                options.update(client_options(Path(name), seen))
            continue
        if line.startswith("["):
            end = line.find("]")
            section = line[1:end].strip().lower() if end > 0 else None
            continue
        if section != "client":
            continue
        name, separator, value = line.partition("=")
        options[name.strip().lower().replace("-", "_")] = option_value(value) if separator else ""
    return options
