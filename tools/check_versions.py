#!/usr/bin/env python3
"""One version for the package, the collection and the roles (docs/releasing.md).

The package (files/python/pyproject.toml and embuffer.__version__, which `embuffer --version`
prints) and the collection (galaxy.yml, which ships the roles and the package) must carry the
same semantic version; no role may declare a version of its own (the roles ship at the
collection's); the version may not be older than the newest release in
changelogs/changelog.yaml (a release is cut at the version the tree carries, or the tree is
already on its way to the next one). Prints each source and exits 1 naming every disagreement.

    python tools/check_versions.py              # the check (run-tests.sh lint stage)
    python tools/check_versions.py --set 0.2.0  # the bump: all three places, then the check
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "files/python/pyproject.toml"
PACKAGE_INIT = ROOT / "files/python/src/embuffer/__init__.py"
GALAXY = ROOT / "galaxy.yml"
CHANGELOG = ROOT / "changelogs/changelog.yaml"


def parse_semver(text: str) -> tuple[int, int, int, str] | None:
    """MAJOR.MINOR.PATCH with an optional -prerelease (semver.org); None if it is not one."""
    core, _, prerelease = text.partition("-")
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() and (p == "0" or p[0] != "0") for p in parts):
        return None
    if "-" in text and not prerelease:
        return None
    return int(parts[0]), int(parts[1]), int(parts[2]), prerelease


def release_order(version: tuple[int, int, int, str]) -> tuple[int, int, int, int, str]:
    """A prerelease comes before its release (1.0.0-rc1 < 1.0.0)."""
    major, minor, patch, prerelease = version
    return major, minor, patch, 0 if prerelease else 1, prerelease


def package_init_version() -> str | None:
    for node in ast.parse(PACKAGE_INIT.read_text()).body:
        names = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        value = getattr(node, "value", None)
        if "__version__" in names and isinstance(value, ast.Constant):
            return str(value.value)
    return None


def declared_versions() -> dict[str, str | None]:
    pyproject = tomllib.loads(PYPROJECT.read_text())
    galaxy = yaml.safe_load(GALAXY.read_text()) if GALAXY.exists() else {}
    return {
        "files/python/pyproject.toml [project] version": pyproject["project"].get("version"),
        "embuffer.__version__ (embuffer --version)": package_init_version(),
        "galaxy.yml version (the collection and its roles)": (galaxy or {}).get("version"),
    }


def roles_with_own_version() -> list[str]:
    found = []
    for meta in sorted(ROOT.glob("roles/*/meta/main.yml")):
        info = (yaml.safe_load(meta.read_text()) or {}).get("galaxy_info") or {}
        if "version" in info:
            found.append(f"{meta.relative_to(ROOT)}: galaxy_info.version {info['version']}")
    return found


def released_versions() -> list[str]:
    if not CHANGELOG.exists():
        return []
    releases = (yaml.safe_load(CHANGELOG.read_text()) or {}).get("releases") or {}
    return [str(version) for version in releases]


def problems() -> list[str]:
    found: list[str] = []
    versions = declared_versions()
    for source, version in versions.items():
        print(f"{version or '(none)':>12}  {source}")
        if version is None:
            found.append(f"{source}: no version")
        elif parse_semver(version) is None:
            found.append(f"{source}: {version!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    distinct = {version for version in versions.values() if version is not None}
    if len(distinct) > 1:
        found.append(f"the versions disagree: {', '.join(sorted(distinct))}")
    found.extend(f"{role}: roles ship at the collection's" for role in roles_with_own_version())
    released = [v for v in released_versions() if parse_semver(v) is not None]
    bad = [v for v in released_versions() if parse_semver(v) is None]
    found.extend(f"changelogs/changelog.yaml: release {v!r} is no semantic version" for v in bad)
    if released and len(distinct) == 1:
        newest = max(released, key=lambda v: release_order(parse_semver(v) or (0, 0, 0, "")))
        print(f"{newest:>12}  newest release in changelogs/changelog.yaml")
        current = parse_semver(next(iter(distinct)))
        if current is not None and release_order(current) < release_order(
            parse_semver(newest) or (0, 0, 0, "")
        ):
            found.append(f"the tree's version is older than the release {newest} already cut")
    return found


def set_version(version: str) -> None:
    """Write `version` where it is declared, each file otherwise as it was."""
    if parse_semver(version) is None:
        raise SystemExit(f"check_versions: {version!r} is not a semantic version")
    for path, pattern in (
        (PYPROJECT, r'(?m)^(version = ")[^"]*(")$'),
        (PACKAGE_INIT, r'(?m)^(__version__ = ")[^"]*(")$'),
        (GALAXY, r"(?m)^(version: )\S+()$"),
    ):
        text, count = re.subn(pattern, rf"\g<1>{version}\g<2>", path.read_text(), count=1)
        if count != 1:
            raise SystemExit(f"check_versions: no version line in {path.relative_to(ROOT)}")
        path.write_text(text)


def main() -> int:
    if sys.argv[1:2] == ["--set"] and len(sys.argv) == 3:
        set_version(sys.argv[2])
    elif sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    found = problems()
    for problem in found:
        print(f"check_versions: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
