"""Per-endpoint request metrics: labels are route templates (bounded), on `/metrics` and in
the console's per-minute series, under ordinary traffic and under schemathesis."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from prometheus_client.parser import text_string_to_metric_families

from sessions_app import metrics
from sessions_app.models import ApiToken
from tests.live import start_daphne

pytestmark = pytest.mark.django_db(transaction=True)


def url_templates() -> set[str]:
    """Every route template the URLconf can produce, walked independently of the middleware."""
    found: set[str] = set()

    def walk(patterns: list[URLPattern | URLResolver], prefix: str) -> None:
        for entry in patterns:
            text = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, text)
            else:
                found.add(metrics.route_template(text))

    walk(get_resolver().url_patterns, "")
    return found | {metrics.UNMATCHED}


def route_labels(text: str) -> set[str]:
    for family in text_string_to_metric_families(text):
        if family.name == "chatgate_http_requests":
            return {s.labels["route"] for s in family.samples}
    raise AssertionError("chatgate_http_requests missing from /metrics")


def test_route_template_names_parameters_not_values() -> None:
    assert (
        metrics.route_template("api/v1/session/position/<str:user_id>")
        == "/api/v1/session/position/{user_id}"
    )
    assert metrics.route_template("admin/^(?P<app_label>auth|sessions_app)/$") == (
        "/admin/{app_label}/"
    )
    assert metrics.method_label("BREW") == "OTHER"


def test_position_calls_for_many_users_share_one_label() -> None:
    staff = get_user_model().objects.create_user(username="ops", is_staff=True)
    _row, raw = ApiToken.issue(name="ops", owner=staff, can_act_for_users=True)
    client = Client(headers={"authorization": f"Bearer {raw}"})
    for name in ("ann", "bob", "kim"):
        client.get(f"/api/v1/session/position/{name}")
    Client().get("/no/such/page/1")
    Client().get("/no/such/page/2")

    text = metrics.metrics_text().decode()
    labels = route_labels(text)
    assert "/api/v1/session/position/{user_id}" in labels
    assert metrics.UNMATCHED in labels
    assert not any("ann" in label or "/no/such" in label for label in labels), labels
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {
        (s.labels["route"], s.labels["method"]): s.value
        for s in families["chatgate_http_requests"].samples
    }
    assert requests[("/api/v1/session/position/{user_id}", "GET")] == 3
    assert requests[(metrics.UNMATCHED, "GET")] == 2
    latency = families["chatgate_http_request_seconds"].samples
    count = [
        s.value
        for s in latency
        if s.name.endswith("_count") and s.labels["route"] == "/api/v1/session/position/{user_id}"
    ]
    assert count == [3]

    # The console's series, filtered by endpoint, sees the same three requests.
    series = metrics.minute_series(
        minutes=2, now=time.time(), endpoint="/api/v1/session/position/{user_id}"
    )
    assert sum(m.requests for m in series) == 3
    assert "/api/v1/session/position/{user_id}" in metrics.endpoint_routes()


@pytest.mark.slow
def test_labels_stay_bounded_under_schemathesis(tmp_path: Path) -> None:
    server = start_daphne(tmp_path, API_CREATE_RATE_PER_MINUTE="2000")
    try:
        owner = get_user_model().objects.create_user(username="fuzz", is_staff=True)
        _row, raw = ApiToken.issue(name="fuzz", owner=owner, can_act_for_users=True)
        binary = Path(sys.executable).with_name("schemathesis")
        subprocess.run(
            [
                str(binary), "run", f"{server.url}/api/v1/openapi.json",
                "--header", f"Authorization: Bearer {raw}",
                "--max-examples", "15", "--max-time", "40", "--workers", "1", "--seed", "12",
                "--generation-database", "none", "--no-color",
            ],
            capture_output=True, text=True, timeout=180, cwd=tmp_path,
        )  # fmt: skip
        # Some raw paths outside the API too: each must land on a template or `unmatched`.
        with httpx.Client(base_url=server.url) as http:
            for path in ("/x%00y", "/api/v1/session/position/%F0%9F%98%80", "/console/zzz"):
                http.get(path)
        text = metrics.metrics_text().decode()
    finally:
        server.stop()
    labels = route_labels(text)
    allowed = url_templates()
    assert labels <= allowed, sorted(labels - allowed)
    assert "/api/v1/session/position/{user_id}" in labels
    assert len(labels) <= len(allowed)


def test_console_charts_filter_by_endpoint() -> None:
    staff = get_user_model().objects.create_superuser(username="lead", password="pw")
    client = Client()
    client.force_login(staff)
    client.get("/api/v1/session/position/lead")
    page = client.get("/console/", {"endpoint": "/api/v1/session/position/{user_id}"})
    html = page.content.decode()
    assert "Requests and errors per minute: /api/v1/session/position/{user_id}" in html
    assert '<option value="/api/v1/session/position/{user_id}" selected>' in html
    # Anything that is not a known label is ignored, never echoed into a query.
    html = client.get("/console/", {"endpoint": "/etc/passwd"}).content.decode()
    assert "Requests and errors per minute (API and chat)" in html
    assert "/etc/passwd" not in html
    live = client.get("/console/live.json", {"endpoint": "/api/v1/session/position/{user_id}"})
    assert "/api/v1/session/position/{user_id}" in live.json()["fragments"]["charts"]
