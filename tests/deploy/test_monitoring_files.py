"""The Grafana dashboard and the Prometheus alert rules in deploy/: every expression parses, and
every metric they name is one Tollgate exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

import tollgate.ops.metrics
import tollgate.ops.tasks
import tollgate.security.metrics  # noqa: F401 - and the rate limiter's

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "tollgate.json"
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = REPO_ROOT / "deploy" / "prometheus" / "alerts_test.yml"
# Prometheus' own series, and PromQL words that look like names.
NOT_TOLLGATE = {"up"}
_METRIC = re.compile(r"\b(tollgate_[a-z0-9_]+)\b")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (scripts/ensure-promtool installs it)"
)


def exported_names() -> set[str]:
    """Every sample name Tollgate's registry can expose (counters with _total, histograms with
    _bucket/_sum/_count, the gauges read from the worker's snapshot, the backup gauges)."""
    return set(REGISTRY._names_to_collectors)


def dashboard_expressions() -> list[tuple[str, str]]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return [
        (f"{panel['title']} / {target['refId']}", target["expr"])
        for panel in panels
        for target in panel.get("targets", [])
    ]


def test_every_panel_has_a_query_and_the_dashboard_covers_each_area() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    graphs = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert all(panel.get("targets") for panel in graphs)
    rows = {panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"}
    assert rows == {"HTTP", "Database", "Cache", "Background work", "Billing", "Backups"}
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


@pytest.mark.parametrize("source", [DASHBOARD, ALERTS], ids=lambda path: path.name)
def test_every_metric_named_is_one_tollgate_exports(source: Path) -> None:
    named = set(_METRIC.findall(source.read_text()))
    assert named, "no Tollgate metric found"
    assert named - exported_names() == set()


def test_the_dashboard_shows_every_metric_tollgate_exports() -> None:
    shown = set(_METRIC.findall(DASHBOARD.read_text()))
    families = {
        re.sub(r"_(total|created|bucket|count|sum)$", "", name)
        for name in exported_names()
        if name.startswith("tollgate_")
    }
    missing = {name for name in families if not any(s.startswith(name) for s in shown)}
    assert missing == set()


def test_an_alert_covers_each_failure_the_operator_must_hear_of() -> None:
    alerts = set(re.findall(r"- alert: (\w+)", ALERTS.read_text()))
    assert {
        "TollgateHighErrorRate",
        "TollgateHighLatencyP99",
        "TollgateNotReady",
        "TollgateDbPoolSaturated",
        "TollgateQueueBacklog",
        "TollgateOutboxLag",
        "TollgateInboxLag",
        "TollgateBillingClockStalled",
        "TollgatePaymentFailureSpike",
        "TollgateReconciliationMismatches",
        "TollgateBackupStale",
        "TollgateRestoreDrillFailed",
    } <= alerts
    tested = set(re.findall(r"alertname: (\w+)", ALERTS_TEST.read_text()))
    assert alerts == tested


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    # promtool parses each expression as a recording rule's: the PromQL parser Prometheus runs.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"tollgate_dashboard:expr_{n}", "expr": expr}
                    for n, (_, expr) in enumerate(dashboard_expressions())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    completed = _promtool("check", "rules", str(path))
    assert completed.returncode == 0, completed.stdout + completed.stderr


@needs_promtool
def test_the_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = _promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", str(ALERTS_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr
