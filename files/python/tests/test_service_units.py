"""The systemd units of roles/embuffer_service, rendered by Ansible from the role's own
templates, defaults and vars: `systemd-analyze verify` finds nothing, the metrics exporter may
write only where SQLite keeps the journal's index (and its textfile), and every comment about
capabilities says what the line under it does. The molecule scenario checks the same units
installed on Debian 12 and 13, with `systemd-analyze security` thresholds."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "roles" / "embuffer_service"
PLAYBOOK = """
- name: Render the embuffer units as the role writes them
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - {repo}/roles/embuffer_common/defaults/main.yml
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
  tasks:
    - name: Render each service unit
      ansible.builtin.template:
        src: {role}/templates/service.j2
        dest: "{{{{ out }}}}/{{{{ item.name }}}}.service"
        mode: "0644"
      loop: "{{{{ __embuffer_service_all_units }}}}"
    - name: Render each timer
      ansible.builtin.template:
        src: {role}/templates/timer.j2
        dest: "{{{{ out }}}}/{{{{ item.name }}}}.timer"
        mode: "0644"
      loop: "{{{{ __embuffer_service_units | selectattr('timer', 'defined') | list }}}}"
"""
CAMERAS = [{"host": "k3-cam-01", "path": "/mnt/k3-cam-01"}]
COPIER_WRITES = {
    "/bufferdata/frames",
    "/bufferdata/quarantine",
    "/var/lib/embuffer",
    "/mnt/k3-cam-01",
    "/primary/frames",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The units for each metrics mode, rendered once for the module."""
    folder = tmp_path_factory.mktemp("units")
    return {mode: render(folder, mode) for mode in ("serve", "textfile")}


def render(tmp_path: Path, metrics_mode: str) -> Path:
    playbook = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
    if playbook is None:
        pytest.skip("ansible-playbook is not installed next to this Python")
    out = tmp_path / metrics_mode
    out.mkdir()
    (tmp_path / "render.yml").write_text(PLAYBOOK.format(repo=REPO, role=ROLE))
    extra = {
        "out": str(out),
        "embuffer_cameras": CAMERAS,
        "embuffer_service_metrics_mode": metrics_mode,
        # ExecStart must name an executable for `systemd-analyze verify`: this venv's
        "embuffer_service_venv": sys.prefix,
        "ansible_python_interpreter": sys.executable,
    }
    result = subprocess.run(
        [playbook, "-i", "localhost,", str(tmp_path / "render.yml"), "-e", json.dumps(extra)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def settings(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("metrics_mode", ["serve", "textfile"])
def test_the_rendered_units_pass_systemd_analyze_verify(rendered, metrics_mode):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    units = sorted(rendered[metrics_mode].iterdir())
    assert {unit.name for unit in units} == {
        "embuffer-ingest.service",
        "embuffer-archive.service",
        "embuffer-purge.service",
        "embuffer-purge.timer",
        "embuffer-metrics.service",
    }

    result = subprocess.run(
        [analyze, "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_copiers_and_the_purge_write_to_embuffer_s_folders(rendered):
    out = rendered["serve"]
    for name in ("embuffer-ingest", "embuffer-archive", "embuffer-purge"):
        unit = settings(out / f"{name}.service")
        assert set(" ".join(unit["ReadWritePaths"]).split()) == COPIER_WRITES, name


@pytest.mark.parametrize(
    ("metrics_mode", "metrics_writes"),
    [
        ("serve", {"/var/lib/embuffer"}),
        ("textfile", {"/var/lib/embuffer", "/var/lib/prometheus/node-exporter"}),
    ],
)
def test_the_metrics_exporter_writes_only_the_journal_index_and_textfile(
    rendered, metrics_mode, metrics_writes
):
    metrics = settings(rendered[metrics_mode] / "embuffer-metrics.service")
    assert set(" ".join(metrics["ReadWritePaths"]).split()) == metrics_writes
    assert metrics["ProtectSystem"] == ["strict"]
    assert metrics["CapabilityBoundingSet"] == [""]
    assert "AmbientCapabilities" not in metrics
    assert metrics["RestrictSUIDSGID"] == ["yes"]
    assert "@chown" not in metrics["SystemCallFilter"]


def test_each_capability_comment_sits_above_what_it_describes(rendered):
    for unit in rendered["serve"].glob("*.service"):
        lines = unit.read_text().splitlines()
        for index, line in enumerate(lines):
            if line == "# Empty: no capability at all.":
                assert lines[index + 1] == "CapabilityBoundingSet=", unit.name
            if line.startswith("CapabilityBoundingSet=") and line != "CapabilityBoundingSet=":
                assert "Empty" not in lines[index - 1], unit.name
                capabilities = line.partition("=")[2]
                assert re.fullmatch(r"(CAP_[A-Z_]+ ?)+", capabilities), unit.name
