"""Request counts added up in the process and written once a second (metrics/tally.py): the same
hashes `request_record` writes, nothing lost when a write fails, and readers in the process see
everything at once."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
from django.test import Client

from sessions_app import metrics
from sessions_app.gate.admission import get_manager
from sessions_app.metrics import tally

REQUESTS = [
    {"group": "api", "route": "/api/v1/session/create", "method": "POST", "status": 201},
    {"group": "api", "route": "/api/v1/session/create", "method": "POST", "status": 429},
    {"group": "chat", "route": "/chat/", "method": "GET", "status": 200},
    {"group": None, "route": "/healthz", "method": "GET", "status": 503},
]


def _metric_hashes() -> dict[str, dict[str, float]]:
    client = get_manager().client
    keys = get_manager().keys
    found = {}
    for key in client.scan_iter(match=keys.all_pattern(), count=1000):
        name = key.decode()
        if client.type(key) == b"hash" and ":metrics" in name:
            found[name] = {k.decode(): float(v) for k, v in client.hgetall(key).items()}
    return found


def _wipe() -> None:
    client = get_manager().client
    for key in client.scan_iter(match=get_manager().keys.all_pattern(), count=1000):
        client.delete(key)


def test_the_tally_writes_exactly_what_request_record_writes(settings: Any) -> None:
    tally.flush()
    _wipe()  # counts an earlier test left in Redis (a /metrics scrape) are not this test's
    for index, request in enumerate(REQUESTS * 3):
        metrics.request_record(**request, seconds=0.004 * (index + 1))
    recorded = _metric_hashes()
    assert recorded, "request_record wrote nothing: the comparison would be empty"
    _wipe()
    for index, request in enumerate(REQUESTS * 3):
        tally.add(**request, seconds=0.004 * (index + 1))
    assert _metric_hashes() == {}, "counted requests reached Redis before a write"
    tally.flush()
    written = _metric_hashes()
    assert written.keys() == recorded.keys()
    for key, fields in recorded.items():
        assert written[key] == pytest.approx(fields), key
    client = get_manager().client
    minute = get_manager().keys.metrics_minute(int(time.time() // 60))
    assert 0 < client.ttl(minute) <= settings.CHATGATE["METRICS_RETENTION_SECONDS"]


def test_a_failed_write_keeps_its_counts_for_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    tally.flush()
    manager = get_manager()
    tally.add(**REQUESTS[0], seconds=0.01)
    real_pipeline = manager.client.pipeline

    def broken(*args: Any, **kwargs: Any) -> Any:
        pipe = real_pipeline(*args, **kwargs)
        pipe.execute = lambda: (_ for _ in ()).throw(redis.ConnectionError("Redis is away"))
        return pipe

    monkeypatch.setattr(manager.client, "pipeline", broken)
    with pytest.raises(redis.ConnectionError):
        tally.flush(manager)
    tally.add(**REQUESTS[0], seconds=0.01)  # counted while Redis was away
    monkeypatch.setattr(manager.client, "pipeline", real_pipeline)
    tally.flush(manager)
    total = manager.client.hget(manager.keys.metrics_endpoints(), "/api/v1/session/create|POST|n")
    assert total is not None and int(total) == 2


def test_the_writer_thread_sends_counts_without_a_reader() -> None:
    tally.flush()
    tally.add(**REQUESTS[2], seconds=0.01)
    key = get_manager().keys.metrics_minute(int(time.time() // 60))
    deadline = time.monotonic() + 10 * tally.FLUSH_SECONDS
    while time.monotonic() < deadline and not get_manager().client.hget(key, "chat:n"):
        time.sleep(0.05)
    assert get_manager().client.hget(key, "chat:n") == b"1"


@pytest.mark.django_db
def test_a_reader_in_the_process_sees_its_requests_at_once() -> None:
    tally.flush()
    Client().get("/api/v1/session/status")  # 401, counted under its route
    routes = metrics.endpoint_routes()  # writes the tally first
    assert "/api/v1/session/status" in routes


def test_a_reader_waits_for_a_write_the_writer_thread_has_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The writer thread has taken the sums and is still sending them when a reader flushes:
    the reader's flush returns only once they are in Redis, so the reader sees them."""
    tally.flush()
    manager = get_manager()
    tally.add(**REQUESTS[0], seconds=0.01)
    real_pipeline = manager.client.pipeline
    sending = threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:
        pipe = real_pipeline(*args, **kwargs)
        if threading.current_thread().name == "writer-in-flight":
            real_execute = pipe.execute

            def execute() -> Any:
                sending.set()
                time.sleep(0.5)  # a write still on its way
                return real_execute()

            pipe.execute = execute
        return pipe

    monkeypatch.setattr(manager.client, "pipeline", slow)
    writer = threading.Thread(target=tally.flush, args=(manager,), name="writer-in-flight")
    writer.start()
    assert sending.wait(5)
    tally.flush(manager)  # a reader: nothing left to take, but one write in flight
    total = manager.client.hget(manager.keys.metrics_endpoints(), "/api/v1/session/create|POST|n")
    writer.join()
    assert total is not None and int(total) == 1
