"""The shipped dashboard and alert rules: valid PromQL, rules that fire when
they should (``promtool test rules``). That every metric they name exists is
checked against a real daemon's scrape in tests/functional/test_metrics.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.conftest import missing
from tests.monitoring import (
    DASHBOARD,
    RULES,
    RULES_TESTS,
    dashboard_expressions,
    metric_names,
    rule_expressions,
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        missing("promtool (Debian's prometheus package)")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_the_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_fire_when_they_should_and_only_then() -> None:
    result = promtool("test", "rules", str(RULES_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as the expression of a recording rule."""
    exprs = dashboard_expressions()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_shows_what_the_issue_lists() -> None:
    names = metric_names(dashboard_expressions())
    for wanted in ["messages_received_total", "events_stored_total", "events_duplicate_total",
                   "messages_dropped_total", "messages_dead_lettered_total",
                   "queue_messages", "event_lag_seconds_bucket",
                   "commit_duration_seconds_bucket", "batch_size_events_sum",
                   "storage_retries_total", "broker_reconnects_total",
                   "events_expired_total", "workers_consuming"]:
        assert f"panko_collector_{wanted}" in names, wanted
    assert DASHBOARD.read_text().count('"uid": "${datasource}"') >= len(dashboard_expressions())


def test_each_alert_is_explained_in_the_readme() -> None:
    readme = (Path(DASHBOARD).parents[2] / "README.md").read_text()
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = [rule["alert"] for group in groups for rule in group["rules"]]
    assert len(alerts) == 6
    for alert in alerts:
        assert f"`{alert}`" in readme, alert
    assert metric_names(rule_expressions())
