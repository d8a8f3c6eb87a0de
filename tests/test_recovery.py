"""Fail closed while Redis is away, recover by itself when it returns: no process restarts."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from sessions_app.devredis import free_port, start_server, stop_server
from sessions_app.gate import admission, services
from sessions_app.gate.admission import GateUnavailable, get_manager
from sessions_app.models import GateSettings

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_redis(settings):
    """A Redis server of this test's own, which the test may stop and start again."""
    port = free_port()
    process, url = start_server(port)
    settings.REDIS_URL = url
    admission.reset_manager()
    state = {"process": process, "port": port}
    yield state
    stop_server(state["process"])
    admission.reset_manager()


def test_the_gate_fails_closed_and_recovers_when_redis_returns(own_redis, client):
    gate = GateSettings.load()
    gate.max_active_sessions = 1
    gate.save()
    services.limits_sync_from_record()
    first, second = (User.objects.create_user(f"r{i}", password="x") for i in range(2))
    assert services.session_open(user=first).state == "active"

    stop_server(own_redis["process"])  # Redis goes away, and with it every key and script
    with pytest.raises(GateUnavailable):
        services.session_open(user=second)
    assert client.get("/healthz").status_code == 503

    own_redis["process"], _ = start_server(own_redis["port"])  # back, empty
    assert client.get("/healthz").status_code == 200
    # Nothing is re-pushed by hand: the first transition finds the limits missing, puts the
    # recorded ones back (not the defaults: the limit is 1 here) and runs under them.
    reopened = services.session_open(user=second)
    assert reopened.state == "active"
    assert get_manager().config()["max_active_sessions"] == 1
    assert services.session_open(user=first).state == "queued"


def test_a_paused_gate_stays_paused_after_redis_loses_its_data(own_redis):
    gate = GateSettings.load()
    gate.admissions_paused = True
    gate.save()
    services.limits_sync_from_record()
    get_manager().client.flushdb()  # data loss
    person = User.objects.create_user("late", password="x")
    assert services.session_open(user=person).state == "queued"
