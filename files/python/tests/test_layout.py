"""The package's house rules, as drawn in docs/architecture.md: which part may import which.

A part may import only the parts below it in the drawing; `embuffer.__version__` is open to
all. A new import that breaks the layering fails here, with the module and the import named,
so the drawing and the code cannot drift apart.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import embuffer

PACKAGE = Path(embuffer.__file__).parent

# part -> the parts it may import (docs/architecture.md draws the same graph)
ALLOWED = {
    "journal": set(),
    "safecopy": {"journal"},
    "leginon": {"journal", "safecopy"},
    "config": {"leginon"},
    "ingest": {"journal", "safecopy", "leginon", "config"},
    "archive": {"journal", "safecopy", "leginon", "config"},
    "report": {"journal", "safecopy", "leginon", "config", "ingest", "archive"},
    "cli": {"journal", "safecopy", "leginon", "config", "ingest", "archive", "report"},
}


def part_of(path: Path, root: Path) -> str:
    relative = path.relative_to(root).with_suffix("")
    return relative.parts[0]


def imported_parts(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not node.module or node.level:
            continue
        if node.module == "embuffer":
            found += [(node.lineno, alias.name) for alias in node.names]
        elif node.module.startswith("embuffer."):
            found.append((node.lineno, node.module.split(".")[1]))
    return found


def layering_violations(root: Path) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "__init__.py":
            continue
        part = part_of(path, root)
        if part not in ALLOWED:
            problems.append(f"{path.relative_to(root)}: part {part!r} is not in the drawing")
            continue
        for line, target in imported_parts(ast.parse(path.read_text())):
            if target in (part, "__version__") or target in ALLOWED[part]:
                continue
            problems.append(f"{path.relative_to(root)}:{line}: {part} may not import {target}")
    return problems


def test_every_import_follows_the_drawing() -> None:
    assert layering_violations(PACKAGE) == []


def test_an_upward_import_is_named(tmp_path: Path) -> None:
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / "store.py").write_text("from embuffer.ingest.worker import X\n")
    (tmp_path / "stray.py").write_text("import os\n")
    assert layering_violations(tmp_path) == [
        "journal/store.py:1: journal may not import ingest",
        "stray.py: part 'stray' is not in the drawing",
    ]


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_of_the_drawing_exists(part: str) -> None:
    assert (PACKAGE / part).is_dir() or (PACKAGE / f"{part}.py").is_file()
