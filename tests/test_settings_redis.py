"""How config/settings.py reads the Redis settings (issue 11): REDIS_URL alone as before, or
REDIS_SENTINELS + REDIS_SENTINEL_MASTER for every Redis user. The settings file is executed
afresh with the environment under test (runpy), leaving the running settings untouched."""

from __future__ import annotations

import runpy
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.live import ROOT

SENTINEL_VARS = ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD")


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in (*SENTINEL_VARS, "REDIS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    # Named, so that the settings do not clear "leftover" test database files: ours is live.
    monkeypatch.setenv("CHATGATE_TEST_DB", "/nonexistent/chatgate-settings-test.sqlite3")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "config" / "settings.py"))


def test_without_sentinels_redis_url_is_the_server_as_before(monkeypatch):
    conf = load(monkeypatch, REDIS_URL="redis://10.0.0.5:6380/2")
    host = conf["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"][0]
    assert host["address"] == "redis://10.0.0.5:6380/2"
    assert "master_name" not in host and "password" not in host
    cache = conf["CACHES"]["default"]
    assert cache["LOCATION"] == "redis://10.0.0.5:6380/2"
    assert "CONNECTION_FACTORY" not in cache["OPTIONS"]
    assert conf["REDIS_SENTINELS"] == [] and conf["REDIS_DB"] == 2


def test_sentinels_serve_the_channel_layer_and_the_cache(monkeypatch):
    conf = load(
        monkeypatch,
        REDIS_URL="redis://ignored-host/3",
        REDIS_SENTINELS="10.0.0.1:26379, [::1]:26380,sentinel-c",
        REDIS_SENTINEL_MASTER="gate",
        REDIS_SENTINEL_PASSWORD="s-secret",
        REDIS_PASSWORD="m-secret",
    )
    sentinels = [("10.0.0.1", 26379), ("::1", 26380), ("sentinel-c", 26379)]
    assert conf["REDIS_SENTINELS"] == sentinels
    host = conf["CHANNEL_LAYERS"]["default"]["CONFIG"]["hosts"][0]
    assert "address" not in host
    assert (host["master_name"], host["sentinels"], host["db"]) == ("gate", sentinels, 3)
    assert host["sentinel_kwargs"]["password"] == "s-secret"
    assert host["password"] == "m-secret"
    assert host["socket_timeout"] is None  # the layer's blocking pop, as without Sentinels
    cache = conf["CACHES"]["default"]
    assert cache["LOCATION"] == "redis://gate/3"  # the master's name, resolved by the Sentinels
    options = cache["OPTIONS"]
    assert options["CONNECTION_FACTORY"] == "django_redis.pool.SentinelConnectionFactory"
    assert options["CLIENT_CLASS"] == "django_redis.client.DefaultClient"  # the master only
    assert options["SENTINELS"] == sentinels and options["PASSWORD"] == "m-secret"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_SENTINELS": "10.0.0.1:26379"}, "REDIS_SENTINEL_MASTER is not"),
        ({"REDIS_SENTINELS": "10.0.0.1:port", "REDIS_SENTINEL_MASTER": "m"}, "not host:port"),
        ({"REDIS_SENTINELS": "10.0.0.1:70000", "REDIS_SENTINEL_MASTER": "m"}, "not host:port"),
        ({"REDIS_SENTINELS": ":26379", "REDIS_SENTINEL_MASTER": "m"}, "not host:port"),
    ],
)
def test_a_wrong_sentinel_setting_is_a_clear_error(monkeypatch, env, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        load(monkeypatch, **env)


def test_the_database_number_is_read_as_redis_py_reads_it(monkeypatch):
    assert load(monkeypatch, REDIS_URL="redis://h:1/5")["REDIS_DB"] == 5
    assert load(monkeypatch, REDIS_URL="redis://h:1?db=4")["REDIS_DB"] == 4
    assert load(monkeypatch, REDIS_URL="unix:///run/redis.sock?db=6")["REDIS_DB"] == 6
    assert load(monkeypatch, REDIS_URL="unix:///run/redis.sock")["REDIS_DB"] == 0
