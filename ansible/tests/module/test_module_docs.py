"""Every module of the collection (plugins/modules) documents itself in a form ansible-doc can
read under its FQCN, and documents each option its argument spec accepts (a YAML slip in
DOCUMENTATION makes ansible-doc, and Galaxy's and the collection's docs, show nothing)."""

from __future__ import annotations

import ast
import json
import subprocess

import pytest
from buffer_host_harness import COLLECTION, COLLECTIONS_PATH, MODULES, ansible_tool

MODULE_NAMES = sorted(path.stem for path in MODULES.glob("*.py"))
LOGIN_OPTIONS = {"login_host", "login_user", "login_password", "config_file"}


def _keys(node: ast.AST) -> set[str]:
    """Option names of an argument spec written as `{...}` or `dict(...)`."""
    if isinstance(node, ast.Dict):
        return {key.value for key in node.keys if isinstance(key, ast.Constant)}
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "dict":
        return {keyword.arg for keyword in node.keywords if keyword.arg}
    return set()


def _extends_login(node: ast.AST) -> bool:
    """`leginondb_argument_spec()` itself, or `dict(leginondb_argument_spec(), ...)`."""
    if not isinstance(node, ast.Call):
        return False
    if getattr(node.func, "id", "") == "leginondb_argument_spec":
        return True
    return getattr(node.func, "id", "") == "dict" and any(map(_extends_login, node.args))


def spec_options(module: str) -> tuple[set[str], bool]:
    """The option names the module declares itself, and whether it takes the shared login
    options: from `AnsibleModule(argument_spec=...)`, `argument_spec = ...` and
    `argument_spec.update(...)`."""
    tree = ast.parse((MODULES / f"{module}.py").read_text())
    names: set[str] = set()
    login = False
    for node in ast.walk(tree):
        spec: ast.AST | None = None
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "AnsibleModule":
            spec = next((k.value for k in node.keywords if k.arg == "argument_spec"), None)
        elif isinstance(node, ast.Assign) and any(
            getattr(target, "id", "") == "argument_spec" for target in node.targets
        ):
            spec = node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "update"
            and getattr(node.func.value, "id", "") == "argument_spec"
        ):
            names |= {keyword.arg for keyword in node.keywords if keyword.arg}
        if spec is not None:
            names |= _keys(spec)
            login = login or _extends_login(spec)
    return names, login


def test_the_collection_has_the_modules_the_roles_call():
    assert MODULE_NAMES == [
        "emtools_artifact",
        "leginon_buffer_host",
        "leginon_frames_name_index",
        "nvidia_gpu_facts",
    ]


@pytest.mark.parametrize("module", MODULE_NAMES)
def test_ansible_doc_reads_the_module_and_every_option_is_documented(module, tmp_path):
    fqcn = f"{COLLECTION}.{module}"
    done = subprocess.run(
        [ansible_tool("ansible-doc"), "--json", fqcn],
        env={
            "PATH": "/usr/bin:/bin",
            "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS_PATH),
            "ANSIBLE_HOME": str(tmp_path),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr[-2000:]
    document = json.loads(done.stdout)[fqcn]
    documented = set(document["doc"]["options"])
    own, login = spec_options(module)
    assert own and own <= documented, own - documented
    if login:
        assert documented >= LOGIN_OPTIONS, LOGIN_OPTIONS - documented
    # validate-modules (ansible-test sanity) wants each author as "Name (@github)"
    assert all(author.endswith(")") and "(@" in author for author in document["doc"]["author"])
    assert document["examples"] and document["return"]
