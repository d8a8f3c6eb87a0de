"""Issue 8, item 4: a Redis outage longer than the grace does not count against the people who
waited through it. A real Redis with AOF is stopped for longer than the grace and restarted;
the first sweep after it keeps everyone, in the same order, and the grace then runs again from
the moment Redis returned."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.contrib.auth.models import User

from sessions_app.devredis import find_server_binary, free_port, stop_server
from sessions_app.gate import admission, services
from sessions_app.gate.admission import GateUnavailable, get_manager

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]
T = TypeVar("T")
GRACE = 3  # seconds; staff may not set a grace this short, the test writes it to Redis


def start_aof_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            find_server_binary(),
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            "--loglevel", "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis did not start")


@pytest.fixture
def aof_redis(settings: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    port = free_port()
    state: dict[str, Any] = {"port": port, "dir": tmp_path}
    state["process"] = start_aof_redis(port, tmp_path)
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    admission.reset_manager()
    yield state
    stop_server(state["process"])
    admission.reset_manager()


def retrying(call: Callable[[], T]) -> T:
    """The first call after Redis returns may meet a dead pooled connection."""
    for _ in range(20):
        try:
            return call()
        except GateUnavailable:
            time.sleep(0.2)
    return call()


def test_an_outage_longer_than_the_grace_abandons_nobody(aof_redis: dict[str, Any]) -> None:
    manager = get_manager()
    manager.set_limits({"max_active_sessions": 1})
    people = [User.objects.create_user(f"o{i}") for i in range(5)]
    opened = [services.session_open(user=p, via="api") for p in people]
    queued = [o.session_id for o in opened if o.state == "queued"]
    assert len(queued) == 4
    # Short live values, written straight to Redis (LIMIT_BOUNDS keeps staff above 45 s).
    manager.client.hset(manager.keys.config, mapping={"grace": GRACE, "outage_gap": 1})
    for session_id in queued:
        services.session_touch(session_id=session_id, kind="presence")

    stop_server(aof_redis["process"])  # SIGTERM: the AOF is complete
    time.sleep(GRACE + 3)  # longer than the grace: nobody could renew presence meanwhile
    aof_redis["process"] = start_aof_redis(aof_redis["port"], aof_redis["dir"])

    swept = retrying(services.sessions_sweep)
    assert swept.abandoned == []
    order = [m.decode() for m in manager.client.zrange(manager.keys.queue, 0, -1)]
    assert order == queued  # same people, same order
    assert int(manager.client.hget(manager.keys.stats, "outages") or 0) == 1

    # The rule forgives the outage, not absence: after Redis returned, the grace runs again.
    # One person keeps their page open (a touch every half second, as a page would, faster);
    # the others never come back and are abandoned one grace later.
    keeper = queued[0]
    deadline = time.monotonic() + GRACE + 1.5
    while time.monotonic() < deadline:
        services.session_touch(session_id=keeper, kind="presence")
        time.sleep(0.5)
    swept = services.sessions_sweep()
    assert sorted(swept.abandoned) == sorted(queued[1:])
    assert [m.decode() for m in manager.client.zrange(manager.keys.queue, 0, -1)] == [keeper]
