"""Shared fixtures: a real Redis server for the whole run, a clean keyspace per test.

The run starts its own server on a free port (sessions_app.devredis) and points the settings,
the channel layer and the cache at it, so `pytest` alone works. REDIS_URL is deliberately
ignored: the tests flush their database, and must never flush yours. TEST_REDIS_URL names a
server to use instead (it will be flushed).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from channels.layers import channel_layers

from sessions_app.api.auth import token_cache_forget
from sessions_app.api.views import eta_cache_forget
from sessions_app.gate import admission, services
from sessions_app.gate.admission import AdmissionManager
from sessions_app.gate.keys import RedisKeys
from tests.live import (  # noqa: F401  (shared fixtures)
    browser,
    chromium_path,
    daphne_server,
    orm_beside_playwright,
)

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
_server = None


def pytest_configure(config: pytest.Config) -> None:
    global _server
    from django.conf import settings

    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        from sessions_app.devredis import start_server

        _server, url = start_server()
    os.environ["REDIS_URL"] = url  # for the servers and workers the tests start
    settings.REDIS_URL = url
    # Nor Sentinels set in the shell: they would lead every Redis user to your master.
    os.environ.pop("REDIS_SENTINELS", None)
    settings.REDIS_SENTINELS = []
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    for sentinel_only in ("master_name", "sentinels", "sentinel_kwargs", "db"):
        host.pop(sentinel_only, None)
    host["address"] = url
    settings.CACHES["default"]["LOCATION"] = url
    settings.CACHES["default"]["OPTIONS"].pop("CONNECTION_FACTORY", None)
    ARTIFACTS.mkdir(exist_ok=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    from sessions_app import notifications

    notifications.flush()  # notices still on their way, while their Redis is still up
    if _server is not None:
        from sessions_app.devredis import stop_server

        stop_server(_server)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: object) -> Iterator[None]:
    """On PostgreSQL, the test database can only be dropped once nobody uses it: a connection
    left open in an executor thread of this process (or by a server a failed test did not stop)
    made the drop fail, leaving test_<name> behind on the server DATABASE_URL names."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:  # type: ignore[attr-defined]
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    connection.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["REDIS_URL"]


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def default_language() -> Iterator[None]:
    """Every test starts in the default language: a test-client request with a Korean
    Accept-Language leaves Korean active on the test's thread (LocaleMiddleware activates, nothing
    deactivates), and later tests that read messages directly then saw Korean."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def clean_redis(redis_url: str) -> Iterator[None]:
    """Every test starts from an empty Redis: no admission state, no channel-layer leftovers."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    admission.reset_manager()
    services.forget_priority_holders()  # primary keys are reused between tests
    token_cache_forget()  # so are tokens' rows: a cached one would outlive its test's database
    eta_cache_forget()  # a departure rate read in the previous test is not this test's
    # channels-redis binds its receive lock to the event loop that first used it; every async
    # test has a loop of its own, so each test gets fresh channel-layer objects.
    channel_layers.backends.clear()
    yield
    admission.reset_manager()


@pytest.fixture
def manager(redis_client: redis.Redis) -> AdmissionManager:
    """A manager on its own key prefix (isolation even for tests that do not flush)."""
    return AdmissionManager(redis_client, RedisKeys(f"t{uuid.uuid4().hex[:8]}"))


@pytest.fixture
def artifacts_dir() -> Path:
    return ARTIFACTS
