"""The Prometheus alert rules shipped in files/prometheus: promtool accepts them, their unit tests
pass, every alert is tested both firing and silent, and the tests really catch a broken rule."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
RULES_DIR = REPO / "files" / "prometheus"
RULES = RULES_DIR / "embuffer.rules.yml"
RULE_TESTS = RULES_DIR / "embuffer.rules.test.yml"
PROMTOOL = shutil.which("promtool") or (
    "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
)


def promtool(
    *args: str, cwd: Path = RULES_DIR, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    if PROMTOOL is None:
        reason = (
            "promtool not found on PATH or at /usr/bin/promtool; install Debian's "
            "'prometheus' package (tools/setup-host.sh does)"
        )
        print(reason)
        pytest.skip(reason)
    return subprocess.run(
        [PROMTOOL, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def alerts() -> dict[str, dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_check_rules_accepts_the_rules_file():
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_test_rules_passes():
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_issue_alerts_exist_with_severity_and_operator_text():
    wanted = {
        "EmbufferIngestStalled",
        "EmbufferArchiveBacklogGrowing",
        "EmbufferBufferAboveWatermark",
        "EmbufferBufferFullSoon",
        "EmbufferVerificationFailure",
        "EmbufferQuarantineGrowing",
        "EmbufferMetricsDown",
        "EmbufferServiceDown",
        "EmbufferFileHeldOnCamera",
    }
    rules = alerts()
    assert wanted <= set(rules)
    for name, rule in rules.items():
        labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
        assert isinstance(labels, dict) and labels.get("severity") in {"warning", "critical"}, name
        assert isinstance(annotations, dict), name
        assert {"summary", "description"} <= set(annotations), name


def markdown_sections(path: Path) -> dict[str, str]:
    """{anchor: text under the heading} as GitHub renders a Markdown file's headings: lower
    case, punctuation dropped, spaces as hyphens."""
    sections: dict[str, str] = {}
    anchor = ""
    for line in path.read_text().splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            title = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchor = title.replace(" ", "-")
            sections[anchor] = ""
        elif anchor:
            sections[anchor] += line + "\n"
    return sections


def test_every_alert_links_a_runbook_section_that_says_what_to_do():
    for name, rule in alerts().items():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        url = annotations.get("runbook_url")
        assert isinstance(url, str), f"{name} has no runbook_url"
        document, _, anchor = url.partition("#")
        assert document.startswith("docs/") and document.endswith(".md") and anchor, (name, url)
        path = REPO / document
        assert path.is_file(), f"{name}: {document} does not exist"
        sections = markdown_sections(path)
        assert anchor in sections, f"{name}: no heading with anchor #{anchor} in {document}"
        assert "**Do:**" in sections[anchor], f"{name}: {url} does not say what to do"


def test_the_runbook_has_a_section_for_each_alert_and_no_other():
    sections = markdown_sections(REPO / "docs" / "runbook.md")
    alert_anchors = {name.lower() for name in alerts()}
    runbook_anchors = {anchor for anchor in sections if anchor.startswith("embuffer")}
    assert runbook_anchors == alert_anchors


def test_every_alert_is_tested_both_firing_and_silent():
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired: set[str] = set()
    silent: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    assert set(alerts()) <= fired, f"never shown firing: {set(alerts()) - fired}"
    assert set(alerts()) <= silent, f"never shown silent: {set(alerts()) - silent}"


@pytest.mark.parametrize(
    ("alert", "broken"),
    [
        # would page on a healthy buffer
        ("EmbufferBufferFullSoon", ("< 12 * 3600", "< 200 * 3600")),
        ("EmbufferIngestStalled", ("for: 5m", "for: 50m")),  # would never page in time
        ("EmbufferMetricsDown", ("> 300", "> 300000")),  # would miss a stale textfile
        ("EmbufferFileHeldOnCamera", ("> 0", "> 1")),  # would miss a single held file
        ("EmbufferMovieWaitingForRoom", ("> 0", "> 1")),  # would miss one movie that waits
        ("EmbufferQuarantineStoppedAtReserve", ("for: 5m", "for: 50m")),  # would page too late
    ],
)
def test_the_rule_tests_catch_a_broken_rule(tmp_path, alert, broken):
    text = RULES.read_text()
    start = text.index(f"- alert: {alert}")
    end = text.find("- alert:", start + 1)
    end = len(text) if end < 0 else end
    block = text[start:end]
    assert broken[0] in block
    (tmp_path / RULES.name).write_text(
        text[:start] + block.replace(broken[0], broken[1]) + text[end:]
    )
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert f"alertname: {alert}" in result.stdout + result.stderr
