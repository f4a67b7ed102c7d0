"""Every module in ansible/library documents itself in a form ansible-doc can read, and
documents each option its argument spec accepts (a YAML slip in DOCUMENTATION makes
ansible-doc, and Galaxy's and the collection's docs, show nothing)."""

from __future__ import annotations

import ast
import json
import subprocess

import pytest
from buffer_host_harness import LIBRARY, MODULE_UTILS, ansible_tool

MODULES = sorted(path.stem for path in LIBRARY.glob("*.py"))


def spec_options(module: str) -> set[str]:
    """Option names the module adds to the shared login options: the keywords of
    `argument_spec.update(...)` or of `dict(leginondb_argument_spec(), ...)`."""
    tree = ast.parse((LIBRARY / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        updates_spec = (
            isinstance(func, ast.Attribute)
            and func.attr == "update"
            and isinstance(func.value, ast.Name)
            and func.value.id == "argument_spec"
        )
        extends_login = (
            isinstance(func, ast.Name)
            and func.id == "dict"
            and bool(node.args)
            and isinstance(node.args[0], ast.Call)
            and getattr(node.args[0].func, "id", "") == "leginondb_argument_spec"
        )
        if updates_spec or extends_login:
            names |= {keyword.arg for keyword in node.keywords if keyword.arg}
    return names


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_reads_the_module_and_every_option_is_documented(module, tmp_path):
    done = subprocess.run(
        [ansible_tool("ansible-doc"), "--json", module],
        env={
            "PATH": "/usr/bin:/bin",
            "ANSIBLE_LIBRARY": str(LIBRARY),
            "ANSIBLE_MODULE_UTILS": str(MODULE_UTILS),
            "ANSIBLE_HOME": str(tmp_path),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr[-2000:]
    document = json.loads(done.stdout)[module]
    documented = set(document["doc"]["options"])
    assert {"login_host", "login_user", "login_password", "config_file"} <= documented
    own = spec_options(module)
    assert own and own <= documented, own - documented
    assert document["examples"] and document["return"]
