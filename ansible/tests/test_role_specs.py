"""The check that each role's argument specs and defaults name the same variables."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

REPOSITORY = Path(__file__).parents[2]
_spec = importlib.util.spec_from_file_location(
    "check_role_specs", REPOSITORY / "tools" / "check_role_specs.py"
)
assert _spec is not None and _spec.loader is not None
check_role_specs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_role_specs)


def make_role(root: Path, spec: str, defaults: str) -> Path:
    role = root / "demo_role"
    for folder in ("tasks", "meta", "defaults"):
        (role / folder).mkdir(parents=True)
    (role / "tasks" / "main.yml").write_text("---\n[]\n")
    (role / "meta" / "argument_specs.yml").write_text(textwrap.dedent(spec))
    (role / "defaults" / "main.yml").write_text(textwrap.dedent(defaults))
    return role


def test_every_role_of_the_repository_agrees():
    assert check_role_specs.main(["check", str(REPOSITORY / "roles")]) == 0


def test_each_kind_of_disagreement_is_named(tmp_path):
    role = make_role(
        tmp_path,
        """\
        argument_specs:
          main:
            options:
              demo_documented_only: {type: str}
              demo_path: {type: str, default: /srv/a}
              demo_required: {type: str, required: true}
              demo_required_with_default: {type: str, required: true}
        """,
        """\
        demo_path: /srv/b
        demo_undocumented: 1
        demo_required_with_default: x
        """,
    )
    found = check_role_specs.problems_of(role)
    problems = "\n".join(found)
    assert "demo_undocumented has a default but no argument spec" in problems
    assert "demo_documented_only is specified, not required, and has no default" in problems
    assert "demo_path defaults to '/srv/b' in defaults/main.yml but to '/srv/a'" in problems
    assert "demo_required_with_default is required yet has a default" in problems
    assert not [p for p in found if p.startswith("demo_role: demo_required ")], "that one is right"
    assert check_role_specs.main(["check", str(tmp_path)]) == 1
