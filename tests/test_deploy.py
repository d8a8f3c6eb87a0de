"""deploy/: the Prometheus rules pass promtool (or, without it, parse), and every metric the
rules and the Grafana dashboard query is one that `/metrics` really exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from sessions_app import metrics
from sessions_app.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus" / "chatgate-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "chatgate-rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "chatgate-dashboard.json"
METRIC = re.compile(r"\bchatgate_[a-z_]+\b")


def rule_exprs() -> list[str]:
    document = yaml.safe_load(RULES.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    for rule in rules:
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(rule), rule
    return [str(rule["expr"]) for rule in rules]


def dashboard_exprs() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in document["panels"] for t in panel["targets"]]
    for variable in document["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["definition"])
    return exprs


def exposed_sample_names() -> set[str]:
    """Sample names of a `/metrics` page after traffic that fills every family."""
    staff = get_user_model().objects.create_user(username="ops", is_staff=True)
    _row, raw = ApiToken.issue(name="ops", owner=staff, can_act_for_users=True)
    Client(headers={"authorization": f"Bearer {raw}"}).get("/api/v1/session/position/ann")
    metrics.answer_observe(seconds=1.5, event="backend_errors")
    metrics.chat_event("capacity_timeouts")
    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_rules_pass_promtool_or_parse() -> None:
    exprs = rule_exprs()  # parses, and every rule has its parts
    assert len(exprs) >= 4
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed; the rules were parsed only")
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        result = subprocess.run(
            [promtool, *args], capture_output=True, text=True, timeout=60, cwd=RULES.parent
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_queried_metric_exists_on_metrics() -> None:
    exposed = exposed_sample_names()
    queried = {name for expr in rule_exprs() + dashboard_exprs() for name in METRIC.findall(expr)}
    assert queried, "no chatgate metric found in the rules or the dashboard"
    missing = queried - exposed
    assert not missing, f"queried but not exposed: {sorted(missing)}"
    # The dashboard covers what the issue asks of it.
    for needed in (
        "chatgate_queued_sessions",
        "chatgate_active_sessions",
        "chatgate_generating_queries",
        "chatgate_queue_wait_seconds_bucket",
        "chatgate_generation_seconds_bucket",
        "chatgate_backend_errors_total",
        "chatgate_http_request_seconds_bucket",
    ):
        assert any(needed in expr for expr in dashboard_exprs()), needed
