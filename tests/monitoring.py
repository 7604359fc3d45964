"""The shipped Grafana dashboard and Prometheus rules, read back for the tests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

from tests.conftest import REPO

DASHBOARD = REPO / "etc" / "grafana" / "panko-collector.json"
RULES = REPO / "etc" / "prometheus" / "panko-collector-rules.yml"
RULES_TESTS = REPO / "tests" / "unit" / "data" / "panko-collector-rules-test.yml"

#: Grafana's variables, replaced by what they stand for when the query runs.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$instance": ".*"}
_NAME = re.compile(r"\bpanko_collector_[a-z_]+\b")


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_expressions() -> list[str]:
    """Every PromQL query of the dashboard, Grafana's variables filled in."""
    exprs = []
    for panel in _panels(json.loads(DASHBOARD.read_text())["panels"]):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            exprs.append(expr)
    return exprs


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def metric_names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in _NAME.findall(expr)}
