"""Names from a camera share or leginondb as text that stays on one line.

A camera file name and a leginondb image filename are chosen by whoever writes them, and a
newline in one would otherwise start a new line in the service log (under systemd, a new
journald entry), so a forged `INFO embuffer.verifiers: ...` entry could follow it; an escape
sequence would repaint the terminal of whoever reads `embuffer status`. Every log record,
event detail and status line goes through `one_line` on its way out: control characters
(C0, DEL, C1), line and paragraph separators, bidi overrides and every other character
Python does not call printable are written as Python-style escapes (`\\n`, `\\x1b`,
`\\u2028`). Backslashes stay as they are, so the common line reads as before; the escape is
there to keep one event on one line, not to make the text reversible.

It sits in the journal package, the bottom of the drawing, because the journal's event rows
need it and every other part (the logging setup in cli/, the status screens in report/) may
import from here.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """`text` with every character that is not printable escaped (see the module's doc)."""
    if text.isprintable():  # nearly every line: no copy
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
