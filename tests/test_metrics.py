"""Request metrics in Redis, and `/metrics` read back with prometheus-client's own parser."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from sessions_app import metrics
from sessions_app.chat import messages
from sessions_app.gate import services
from sessions_app.gate.admission import get_manager
from tests.live import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)


def parse(text: str) -> dict[str, Any]:
    """Metric families by name (counters under their base name, as the parser gives them)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], name: str, **labels: str) -> float:
    family_name = name.removesuffix("_total")
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels} in {family_name}")


def open_for(username: str) -> str:
    user = get_user_model().objects.create_user(username=username, password=None)
    return services.session_open(user=user, via="api").session_id


# --- the middleware ----------------------------------------------------------------------------


def test_api_and_chat_requests_are_counted_per_minute() -> None:
    client = Client()
    assert client.get("/api/v1/no-such-endpoint").status_code == 404
    assert client.get("/api/v1/no-such-endpoint").status_code == 404
    user = get_user_model().objects.create_user(username="alice", password=None)
    client.force_login(user)
    client.get("/")  # the chat page
    client.get("/admin/")  # not measured

    now = time.time()
    series = metrics.minute_series(minutes=2, now=now)
    # The two calls may straddle a minute boundary; count both minutes.
    api = sum(m.groups["api"].requests for m in series)
    refused = sum(m.groups["api"].refused for m in series)
    chat = sum(m.groups["chat"].requests for m in series)
    assert (api, refused, chat) == (2, 2, 1)
    assert all(m.groups["api"].errors == 0 for m in series)
    busiest = max(series, key=lambda m: m.groups["api"].requests)
    assert busiest.groups["api"].p50_ms is not None and busiest.groups["api"].p95_ms is not None


def test_minute_hashes_expire(redis_client: Any) -> None:
    metrics.request_record(group="api", status=500, seconds=0.012)
    key = get_manager().keys.metrics_minute(int(time.time() // 60))
    ttl = redis_client.ttl(key)
    assert 0 < ttl <= 24 * 3600
    assert metrics.minute_series(minutes=1)[-1].groups["api"].errors == 1


def test_quantiles_from_buckets() -> None:
    bounds = (10, 20, 40)
    assert metrics.quantile_from_buckets([0, 0, 0, 0], bounds, 0.5) is None
    assert metrics.quantile_from_buckets([10, 0, 0, 0], bounds, 0.5) == 5.0
    assert metrics.quantile_from_buckets([0, 10, 0, 0], bounds, 0.95) == 19.5
    assert metrics.quantile_from_buckets([0, 0, 0, 3], bounds, 0.5) == 40.0  # open bucket: floor


# --- /metrics ----------------------------------------------------------------------------------


def test_metrics_parse_and_tell_the_redis_truth() -> None:
    services.limits_set(actor=None, max_active_sessions=2)
    ids = [open_for(f"user{i}") for i in range(4)]
    services.session_close(session_id=ids[0], reason="admin", actor=None)
    services.session_close(session_id=ids[3], reason="user")
    metrics.generation_observe(seconds=0.7)
    metrics.generation_observe(seconds=3.2)
    metrics.chat_event("chat_messages", amount=5)
    metrics.chat_event("backend_errors")

    response = Client().get("/metrics")  # the test client comes from 127.0.0.1: allowed
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    families = parse(response.content.decode())

    counts = get_manager().counts()
    stats = get_manager().stats()
    assert sample(families, "chatgate_redis_up") == 1
    assert sample(families, "chatgate_active_sessions") == counts["active"] == 2
    assert sample(families, "chatgate_queued_sessions") == counts["queued"] == 0
    assert sample(families, "chatgate_max_active_sessions") == 2
    assert sample(families, "chatgate_generating_queries") == 0
    assert families["chatgate_admissions"].type == "counter"
    assert sample(families, "chatgate_admissions_total") == stats["admissions"] == 3
    assert sample(families, "chatgate_promotions_total") == stats.get("promotions", 0) == 1
    assert sample(families, "chatgate_sessions_closed_total", reason="admin") == 1
    assert sample(families, "chatgate_sessions_closed_total", reason="user") == 1
    assert sample(families, "chatgate_sessions_closed_total", reason="expired") == 0
    assert sample(families, "chatgate_chat_messages_total") == 5
    assert sample(families, "chatgate_backend_errors_total") == 1
    assert sample(families, "chatgate_journal_pending") == 0  # the services wrote it (inline)
    assert sample(families, "chatgate_journal_behind_seconds") == 0

    # A transition no writer has written yet (the manager journals, only the services write):
    # the journal shows it, and how long it has waited.
    get_manager().open("unwritten", via="api")
    time.sleep(0.3)
    families = parse(Client().get("/metrics").content.decode())
    assert sample(families, "chatgate_journal_pending") == 1
    assert 0.2 <= sample(families, "chatgate_journal_behind_seconds") < 30

    assert families["chatgate_generation_seconds"].type == "histogram"
    assert sample(families, "chatgate_generation_seconds_count") == 2
    assert sample(families, "chatgate_generation_seconds_bucket", le="1.0") == 1
    assert sample(families, "chatgate_generation_seconds_bucket", le="+Inf") == 2
    assert sample(families, "chatgate_generation_seconds_sum") == pytest.approx(3.9)
    # Three admissions so far: two let straight in, one promoted after waiting.
    assert sample(families, "chatgate_queue_wait_seconds_count") == 3
    assert sample(families, "chatgate_queue_wait_seconds_bucket", le="+Inf") == 3

    # A second scrape folds nothing twice.
    again = parse(Client().get("/metrics").content.decode())
    assert sample(again, "chatgate_queue_wait_seconds_count") == 3


def test_wait_fold_counts_each_admission_once() -> None:
    services.limits_set(actor=None, max_active_sessions=1)
    first = open_for("a")
    open_for("b")
    assert metrics.waits_fold() == 1  # a, let straight in; b is still queued
    services.session_close(session_id=first, reason="user")  # promotes b
    assert metrics.waits_fold() == 1
    assert metrics.waits_fold() == 0


def test_metrics_refuse_others_with_json_403(settings: Any) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "METRICS_TOKEN": "", "METRICS_ALLOWED_IPS": []}
    response = Client().get("/metrics")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_metrics_token(settings: Any) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "METRICS_TOKEN": "s3cret", "METRICS_ALLOWED_IPS": []}
    client = Client()
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret")
    assert ok.status_code == 200
    assert "chatgate_active_sessions" in parse(ok.content.decode())


def test_metrics_ip_allow_list_takes_networks(settings: Any) -> None:
    settings.CHATGATE = {**settings.CHATGATE, "METRICS_ALLOWED_IPS": ["10.0.0.0/8"]}
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.168.1.9").get("/metrics").status_code == 403


def test_metrics_say_redis_down_instead_of_failing(settings: Any) -> None:
    from sessions_app.gate import admission

    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    admission.reset_manager()
    try:
        response = Client().get("/metrics")
    finally:
        admission.reset_manager()
    assert response.status_code == 200
    families = parse(response.content.decode())
    assert sample(families, "chatgate_redis_up") == 0


def test_a_live_server_records_and_reports_the_same_truth(daphne_server: DaphneServer) -> None:
    """Through daphne (the async middleware path) and across processes sharing one Redis."""
    open_for("alice")
    with httpx.Client(base_url=daphne_server.url, timeout=10) as http:
        for _ in range(3):
            assert http.get("/api/v1/no-such-endpoint").status_code == 404
        text = http.get("/metrics").text
    families = parse(text)
    assert sample(families, "chatgate_active_sessions") == get_manager().counts()["active"] == 1
    # The async middleware writes after the response: give it a moment, then read Redis here.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        series = metrics.minute_series(minutes=2)
        if sum(m.groups["api"].requests for m in series) >= 3:
            break
        time.sleep(0.05)
    assert sum(m.groups["api"].refused for m in metrics.minute_series(minutes=2)) == 3


def test_chat_services_feed_the_chat_counters_and_generation_histogram() -> None:
    from sessions_app.models import ChatMessage, ChatSession

    sid = open_for("alice")
    owner = ChatSession.objects.get(pk=sid).user
    asked = messages.message_ask(owner=owner, seat_id=sid, content="hello")
    messages.answer_begin(answer_id=asked.answer.pk)
    messages.answer_finish(
        answer_id=asked.answer.pk, content="hi", status=ChatMessage.Status.DONE, latency_ms=1500
    )
    failed = messages.message_ask(
        owner=owner, seat_id=sid, content="again", conversation_id=str(asked.conversation.pk)
    )
    messages.answer_begin(answer_id=failed.answer.pk)
    messages.answer_finish(
        answer_id=failed.answer.pk, content="", status=ChatMessage.Status.FAILED, latency_ms=200
    )
    families = parse(Client().get("/metrics").content.decode())
    assert sample(families, "chatgate_chat_messages_total") == 2
    assert sample(families, "chatgate_backend_errors_total") == 1
    assert sample(families, "chatgate_generation_seconds_count") == 2
    assert sample(families, "chatgate_generation_seconds_bucket", le="0.25") == 1
    assert sample(families, "chatgate_generation_seconds_bucket", le="2.0") == 2


def test_wait_fold_reads_past_a_chunk() -> None:
    services.limits_set(actor=None, max_active_sessions=250)
    for index in range(230):  # more than one chunk of the waits list, all new
        open_for(f"p{index}")
    assert metrics.waits_fold() == 230
    open_for("late")
    assert metrics.waits_fold() == 1
    families = parse(Client().get("/metrics").content.decode())
    assert sample(families, "chatgate_queue_wait_seconds_count") == 231
