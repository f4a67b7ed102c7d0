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


def make_role(root: Path, spec: str, defaults: str, name: str = "demo_role") -> Path:
    role = root / name
    for folder in ("tasks", "meta", "defaults"):
        (role / folder).mkdir(parents=True)
    (role / "tasks" / "main.yml").write_text("---\n[]\n")
    (role / "meta" / "argument_specs.yml").write_text(textwrap.dedent(spec))
    (role / "defaults" / "main.yml").write_text(textwrap.dedent(defaults))
    return role


def test_every_role_of_the_repository_agrees():
    assert check_role_specs.main(["check", str(REPOSITORY / "roles")]) == 0


def test_the_shared_facts_have_one_owner():
    """embuffer_common owns the facts several roles read; the check covers it too."""
    common = REPOSITORY / "roles" / "embuffer_common"
    assert check_role_specs.problems_of(common) == []
    assert check_role_specs.prefix_of(common) == "embuffer_"
    shared = set(check_role_specs.defaults_of(common))
    assert {
        "embuffer_user",
        "embuffer_group",
        "embuffer_group_gid",
        "embuffer_buffer_root",
        "embuffer_buffer_hostname",
        "embuffer_quarantine",
        "embuffer_state_dir",
        "embuffer_primary_root",
        "embuffer_cameras",
    } <= shared
    for role in sorted((REPOSITORY / "roles").iterdir()):
        if role != common and (role / "tasks").is_dir():
            assert not shared & set(check_role_specs.defaults_of(role)), role.name


def ownership_problems(root: Path, roles: dict[str, str]) -> str:
    """The ownership problems of roles {name: the one variable it declares} under root."""
    made = []
    for name, variable in roles.items():
        spec = f"argument_specs:\n  main:\n    options:\n      {variable}: {{default: x}}\n"
        made.append(make_role(root, spec, f"{variable}: x\n", name=name))
    return "\n".join(check_role_specs.ownership_problems(made))


def test_a_copy_of_another_roles_fact_is_named(tmp_path):
    right = {"demo_common": "demo_user", "demo_store": "demo_store_mode"}
    assert ownership_problems(tmp_path / "right", right) == ""

    copies = {
        "demo_common": "demo_user",
        "demo_other": "demo_user",  # a copy of the shared fact
        "demo_store": "demo_store_mode",
        "demo_extra": "demo_store_mode",  # a copy of another role's fact
    }
    problems = ownership_problems(tmp_path / "copies", copies)
    assert "demo_other: demo_user lacks the role's prefix demo_other_" in problems
    assert "demo_extra: demo_store_mode lacks the role's prefix demo_extra_" in problems
    assert "demo_user is declared by 2 roles (demo_common, demo_other)" in problems
    assert "demo_store_mode is declared by 2 roles (demo_extra, demo_store)" in problems

    greedy = {"demo_common": "demo_store_mode", "demo_store": "demo_store_user"}
    problems = ownership_problems(tmp_path / "greedy", greedy)
    assert problems == "demo_common: demo_store_mode carries the prefix of role demo_store"
    assert check_role_specs.main(["check", str(tmp_path / "greedy")]) == 1


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
