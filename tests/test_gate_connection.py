"""gate/connection.py: the admission manager's client from REDIS_URL or from Sentinels.

Sentinel here is a stand-in that names the test's real Redis as the master (the full failover,
with real Sentinels, is tests/test_prod_sentinel.py)."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlparse

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from sessions_app.devredis import start_server, stop_server
from sessions_app.gate import connection
from sessions_app.gate.connection import SentinelBlockingConnectionPool


class OneMaster:
    """What the pool asks of redis-py's Sentinel: where the master is."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.address = (parsed.hostname, parsed.port)
        self.asked = 0

    def discover_master(self, service_name: str) -> tuple[Any, Any]:
        self.asked += 1
        return self.address


def held_while_another_asks(pool: redis.ConnectionPool) -> tuple[float, BaseException | None]:
    """One thread holds the only connection for 0.3 s while another asks for one: how long
    the second waited, or what it raised."""
    client = redis.Redis(connection_pool=pool)
    first = pool.get_connection()
    outcome: dict[str, Any] = {"error": None}

    def second() -> None:
        started = time.monotonic()
        try:
            client.ping()
        except redis.RedisError as exc:
            outcome["error"] = exc
        outcome["waited"] = time.monotonic() - started

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)
    pool.release(first)
    thread.join(timeout=5)
    pool.disconnect()
    return outcome["waited"], outcome["error"]


def test_a_full_sentinel_pool_waits_instead_of_reporting_redis_unreachable(redis_url):
    """redis-py's own SentinelConnectionPool raises past its size ("Too many connections"),
    which the gate would report as Redis unreachable under a burst (issue 11): ours waits."""
    ours = SentinelBlockingConnectionPool(
        "gate", OneMaster(redis_url), max_connections=1, timeout=None
    )
    waited, error = held_while_another_asks(ours)
    assert error is None and waited >= 0.25

    plain = SentinelConnectionPool("gate", OneMaster(redis_url), max_connections=1)
    _waited, error = held_while_another_asks(plain)
    assert isinstance(error, redis.ConnectionError)


def test_after_a_failover_the_next_call_runs_on_the_new_master(settings):
    """The old master dies with a connection pooled to it; the Sentinels now name another
    server. The next call finds the pooled connection dead (redis-py checks it when it is
    taken from the pool; one that dies in flight is retried once, pool_options()) and connects
    afresh, which asks the Sentinels again: the caller never sees the failover."""
    old_process, old_url = start_server()
    new_process, new_url = start_server()
    settings.REDIS_SENTINELS = [("127.0.0.1", 1)]  # never asked: the stand-in answers
    settings.REDIS_SENTINEL_MASTER = "gate"
    sentinel = OneMaster(old_url)
    real_sentinel = connection.Sentinel
    client: redis.Redis | None = None

    def stand_in(*args: Any, **kwargs: Any) -> Any:
        real = real_sentinel(*args, **kwargs)
        real.discover_master = sentinel.discover_master  # type: ignore[method-assign]
        return real

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(connection, "Sentinel", stand_in)
            client = connection.gate_client()
        assert isinstance(client.connection_pool, SentinelBlockingConnectionPool)
        assert client.set("where", "old")  # a pooled connection to the old master now
        old_process.kill()  # as a machine lost: no goodbye to the pooled connection
        old_process.wait()
        sentinel.address = OneMaster(new_url).address  # the Sentinels promoted the other one
        assert client.set("where", "new")
        with redis.Redis.from_url(new_url) as promoted:
            assert promoted.get("where") == b"new"
    finally:
        if client is not None:
            connection.client_close(client)
        stop_server(new_process)
        stop_server(old_process)


def test_without_sentinels_the_client_is_redis_url_as_before(redis_url, settings):
    settings.REDIS_SENTINELS = []
    client = connection.gate_client()
    try:
        assert type(client.connection_pool) is redis.BlockingConnectionPool
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"]) == (
            urlparse(redis_url).hostname,
            urlparse(redis_url).port,
        )
        assert client.ping()
    finally:
        connection.client_close(client)
