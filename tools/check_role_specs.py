"""Each role's meta/argument_specs.yml and defaults/main.yml must describe the same variables,
and each variable has one owner.

A variable documented in the spec but missing from the defaults (or the other way round)
is a variable a user cannot find, or one that ansible-core never validates; a default
stated in both places that differs is a lie in one of them. A role's variables carry its
name as their prefix (embuffer_storage_*); the facts several roles share belong to the
internal common role (embuffer_common), whose variables carry the bare prefix (embuffer_*)
and none of another role's. A variable with a default in two roles is two copies of one
fact that the inventory would have to keep in step. Run by `make test` (lint stage):

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


COMMON_SUFFIX = "_common"


def defaults_of(role: Path) -> dict[str, Any]:
    defaults_file = role / "defaults" / "main.yml"
    return (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else {}


def problems_of(role: Path) -> list[str]:
    spec_file = role / "meta" / "argument_specs.yml"
    if not spec_file.exists():
        return [f"{role.name}: no meta/argument_specs.yml (its variables are never validated)"]
    options = spec_options(spec_file)
    defaults = defaults_of(role)
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


def prefix_of(role: Path) -> str:
    """The prefix of a role's variables: its name, or for the common role the bare namespace
    (embuffer_common owns embuffer_*)."""
    if role.name.endswith(COMMON_SUFFIX):
        return role.name.removesuffix(COMMON_SUFFIX) + "_"
    return role.name + "_"


def ownership_problems(roles: list[Path]) -> list[str]:
    """Each variable is named after the role that owns it and declared by that role only."""
    problems = []
    owners: dict[str, list[str]] = {}
    own_prefixes = {role.name: prefix_of(role) for role in roles}
    for role in roles:
        names = set(defaults_of(role))
        spec_file = role / "meta" / "argument_specs.yml"
        if spec_file.exists():
            names |= set(spec_options(spec_file))
        for name in sorted(names):
            owners.setdefault(name, []).append(role.name)
            if not name.startswith(own_prefixes[role.name]):
                problems.append(
                    f"{role.name}: {name} lacks the role's prefix {own_prefixes[role.name]}"
                )
                continue
            for other, other_prefix in sorted(own_prefixes.items()):
                longer = len(other_prefix) > len(own_prefixes[role.name])
                if other != role.name and longer and name.startswith(other_prefix):
                    problems.append(f"{role.name}: {name} carries the prefix of role {other}")
    for name, declared_by in sorted(owners.items()):
        if len(declared_by) > 1:
            problems.append(
                f"{name} is declared by {len(declared_by)} roles "
                f"({', '.join(sorted(declared_by))}): "
                "one role owns each fact; the others read it (a fact several roles share "
                "belongs to the common role)"
            )
    return problems


def main(argv: list[str]) -> int:
    roles_folder = Path(argv[1] if len(argv) > 1 else Path(__file__).parents[1] / "roles")
    roles = sorted(path for path in roles_folder.iterdir() if (path / "tasks").is_dir())
    if not roles:
        print(f"no roles found in {roles_folder}", file=sys.stderr)
        return 1
    problems = [problem for role in roles for problem in problems_of(role)]
    problems += ownership_problems(roles)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"argument specs and defaults agree in {len(roles)} roles")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
