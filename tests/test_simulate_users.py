"""`simulate_users` against a live daphne: 50 people, limit 5, everyone served, and the
limit never exceeded — checked continuously from Redis while the rehearsal runs, not only
from what the command reports.
"""

from __future__ import annotations

import threading
import time
from io import StringIO

import pytest
import redis
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.core.management.base import CommandError

from sessions_app.gate import services
from sessions_app.gate.admission import get_manager
from sessions_app.management.commands.simulate_users import Command
from sessions_app.management.rehearsal import percentile
from sessions_app.models import ApiToken, ChatMessage, ChatSession


class ActiveMonitor(threading.Thread):
    """Samples the active set's size every few milliseconds from its own Redis connection."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.key = key
        self.samples: list[int] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.samples.append(int(self.client.zcard(self.key)))
            time.sleep(0.005)
        self.client.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)


@pytest.mark.slow
def test_fifty_people_limit_five_everyone_served_limit_never_exceeded(daphne_server, redis_url):
    services.limits_set(actor=None, max_active_sessions=5)
    manager = get_manager()
    assert manager.config()["max_active_sessions"] == 5
    monitor = ActiveMonitor(redis_url, manager.keys.active)
    monitor.start()
    command = Command()
    out = StringIO()
    try:
        call_command(
            command,
            "50",
            "--url", daphne_server.url,
            "--think", "0.3",
            "--poll", "0.3",
            "--duration", "150",
            stdout=out,
        )  # fmt: skip
    finally:
        monitor.stop()
    report = command.report
    text = out.getvalue()
    print(text)
    assert report["served"] == 50, text
    assert report["errors"] == 0, text
    assert report["admitted_at_once"] == 5 and report["waited"] == 45, text
    assert report["max_active_seen"] <= 5 and report["limit"] == 5
    # The invariant, from Redis itself, sampled throughout the run.
    assert len(monitor.samples) > 100
    assert max(monitor.samples) == 5, max(monitor.samples)
    assert manager.counts()["active"] == 0 and manager.counts()["queued"] == 0
    assert "served (admitted and chatted)  50/50" in text
    assert "[" in text and "served" in text.split("Done in")[0]  # progress lines were shown
    # The temporary token was revoked at the end.
    assert not ApiToken.objects.filter(revoked_at__isnull=True).exists()


@pytest.mark.slow
def test_people_log_in_and_chat_over_the_socket(daphne_server, redis_url):
    """--chat: real logins, the chat socket's pushed positions, one answered message each."""
    services.limits_set(actor=None, max_active_sessions=5)
    manager = get_manager()
    monitor = ActiveMonitor(redis_url, manager.keys.active)
    monitor.start()
    command = Command()
    out = StringIO()
    try:
        call_command(
            command, "20", "--chat", "--url", daphne_server.url, "--think", "0.2",
            "--duration", "120", stdout=out,
        )  # fmt: skip
    finally:
        monitor.stop()
    text = out.getvalue()
    print(text)
    report = command.report
    assert report["served"] == 20 and report["errors"] == 0, text
    assert report["waited"] == 15, text
    assert max(monitor.samples) == 5
    assert ChatMessage.objects.filter(sender_type="assistant", status="done").count() == 20
    assert ChatSession.objects.filter(close_reason="user", opened_via="page").count() == 20
    # The logins minted for the rehearsal are gone afterwards.
    assert not Session.objects.exists()


def test_refuses_a_remote_url_and_bad_bounds(db):
    with pytest.raises(CommandError, match="not a loopback address"):
        call_command("simulate_users", "3", "--url", "http://example.com", stdout=StringIO())
    with pytest.raises(CommandError, match="people must be from 1"):
        call_command("simulate_users", "0", stdout=StringIO())
    with pytest.raises(CommandError, match="--duration"):
        call_command("simulate_users", "3", "--duration", "0", stdout=StringIO())


def test_says_so_when_no_server_answers(db):
    with pytest.raises(CommandError, match=r"No chatgate answers at http://127\.0\.0\.1:1"):
        call_command("simulate_users", "3", "--url", "http://127.0.0.1:1", stdout=StringIO())


def test_percentile_is_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 11)], 90) == 9.0
