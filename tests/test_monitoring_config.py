"""deploy/: Prometheus rules, Alertmanager config and Grafana dashboards, checked by the real tools."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streams.catalog import Catalog
from streams.dashboards import DASHBOARDS, all_queries, render

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (Debian package prometheus); .ci/run installs it",
)
needs_amtool = pytest.mark.skipif(
    shutil.which("amtool") is None,
    reason="amtool not installed (Debian package prometheus-alertmanager); .ci/run installs it",
)


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, cwd=DEPLOY / "prometheus", check=False)


@needs_promtool
def test_promtool_accepts_the_rules_and_the_config():
    rules = sorted(str(path) for path in (DEPLOY / "prometheus" / "rules").glob("*.yml"))
    checked = run("promtool", "check", "rules", *rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = run("promtool", "check", "config", "--syntax-only", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


@needs_promtool
def test_promtool_unit_tests_pass():
    result = run("promtool", "test", "rules", "tests/kbwatch-alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_rule_has_a_unit_test_and_a_runbook():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "kbwatch-alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((DEPLOY / "prometheus" / "tests" / "kbwatch-alerts.test.yml").read_text())
    tested = {case["alertname"] for test in tests["tests"] for case in test.get("alert_rule_test", [])}
    assert alerts == tested
    readme = (DEPLOY.parent / "README.md").read_text().lower()
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning")
            anchor = rule["annotations"]["runbook_url"].split("#")[1]
            assert f"## {anchor.replace('runbook-', 'runbook: ')}" in readme.replace("`", ""), anchor


@needs_amtool
def test_amtool_accepts_the_alertmanager_config():
    result = subprocess.run(
        ["amtool", "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_groups_by_kb_and_inhibits_device_alerts_under_a_regression():
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    assert config["route"]["group_by"] == ["alertname", "kb"]
    (inhibit,) = config["inhibit_rules"]
    assert inhibit["equal"] == ["kb"]
    device_rules = [
        rule.alertname for rule in Catalog().alert_rules() if rule.alertname != "UpdateRegression"
    ]
    target = inhibit["target_matchers"][0]
    assert all(name in target for name in device_rules)
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    assert "routing_key_file" in receivers["pagerduty"]["pagerduty_configs"][0]


def test_the_dashboards_in_deploy_are_the_generated_ones():
    for uid in DASHBOARDS:
        assert (DEPLOY / "grafana" / "dashboards" / f"{uid}.json").read_bytes() == render(uid), (
            f"run `kbwatch dashboards` to regenerate {uid}"
        )


def test_every_dashboard_query_names_real_metrics_or_recording_rules():
    import re

    from prometheus_client import CollectorRegistry

    from streams.metrics import Metrics

    registry = CollectorRegistry()
    Metrics.create(registry)
    names = {"up"}
    for family in registry.collect():
        names |= {sample.name for sample in family.samples}
    recording = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "kbwatch-recording.yml").read_text())
    names |= {rule["record"] for group in recording["groups"] for rule in group["rules"]}
    for uid, panel, expr in all_queries():
        for metric in re.findall(r"\b(kbwatch[:_][a-z0-9_:]*|up)\b", expr):
            assert metric in names, (uid, panel.title, metric)


def test_grafana_provisioning_points_at_the_dashboards():
    providers = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "kbwatch.yaml").read_text()
    )
    assert providers["apiVersion"] == 1 and providers["providers"][0]["type"] == "file"
    sources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "kbwatch-prometheus.yaml").read_text()
    )
    assert sources["datasources"][0]["type"] == "prometheus"
