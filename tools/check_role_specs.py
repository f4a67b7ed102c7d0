"""Each role's meta/argument_specs.yml and defaults/main.yml must describe the same variables.

A variable documented in the spec but missing from the defaults (or the other way round)
is a variable a user cannot find, or one that ansible-core never validates; a default
stated in both places that differs is a lie in one of them. Run by `make test` (lint stage):

    python tools/check_role_specs.py [roles folder]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml


def spec_options(spec_file: Path) -> dict[str, dict[str, Any]]:
    """Every option of every entry point (the top-level ones: suboptions belong to them)."""
    spec = yaml.safe_load(spec_file.read_text()) or {}
    options: dict[str, dict[str, Any]] = {}
    for entry_point in (spec.get("argument_specs") or {}).values():
        options.update(entry_point.get("options") or {})
    return options


def problems_of(role: Path) -> list[str]:
    spec_file = role / "meta" / "argument_specs.yml"
    defaults_file = role / "defaults" / "main.yml"
    if not spec_file.exists():
        return [f"{role.name}: no meta/argument_specs.yml (its variables are never validated)"]
    options = spec_options(spec_file)
    defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else {}
    problems = []
    for name in sorted(set(defaults) - set(options)):
        problems.append(f"{role.name}: {name} has a default but no argument spec")
    for name in sorted(set(options) - set(defaults)):
        if not options[name].get("required"):
            problems.append(f"{role.name}: {name} is specified, not required, and has no default")
    for name in sorted(set(options) & set(defaults)):
        if options[name].get("required"):
            problems.append(f"{role.name}: {name} is required yet has a default")
        if "default" in options[name] and options[name]["default"] != defaults[name]:
            problems.append(
                f"{role.name}: {name} defaults to {defaults[name]!r} in defaults/main.yml "
                f"but to {options[name]['default']!r} in meta/argument_specs.yml"
            )
    return problems


def main(argv: list[str]) -> int:
    roles_folder = Path(argv[1] if len(argv) > 1 else Path(__file__).parents[1] / "roles")
    roles = sorted(path for path in roles_folder.iterdir() if (path / "tasks").is_dir())
    if not roles:
        print(f"no roles found in {roles_folder}", file=sys.stderr)
        return 1
    problems = [problem for role in roles for problem in problems_of(role)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"argument specs and defaults agree in {len(roles)} roles")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
