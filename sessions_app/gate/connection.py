"""How each process connects to Redis for the gate (the admission manager's pool): REDIS_URL's
server, or the master that REDIS_SENTINELS name (issue 11)."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import BlockingConnectionPool
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool


def pool_options() -> dict[str, Any]:
    """How each process talks to Redis, sized so that "busy" is never reported as "unreachable".

    Measured (issue 11): 2,000 API creates over 4 daphne processes, Redis healthy, answered 12-182
    times 503 "unreachable". Django's ASGI handler runs each sync view in a thread of its own, so
    a burst is hundreds of threads per process; with 64 pooled connections and a 5 s wait, a
    thread still queued after 5 s got redis-py's ConnectionError("No connection available.").
    That is the process being busy, not Redis being down. So:

    * waiting for a pooled connection has no deadline (`timeout=None`): every holder gives its
      connection back within one socket timeout, and when Redis is down each one fails fast at
      connect, so a waiter soon gets a connection and learns the real answer from Redis itself;
    * the API bounds how many requests per process run at once (api/views.py), so the pool is
      rarely waited for and the threads that do run are not starved of the GIL past the socket
      timeout on a loaded box;
    * a connection found dead (Redis restarted, a reset) is retried once on a fresh one: the
      script never reached a server that closed the socket, so it cannot run twice there.
    """
    from sessions_app import conf

    return {
        "max_connections": int(conf.get("REDIS_POOL_SIZE")),
        "timeout": None,
        "socket_timeout": float(conf.get("REDIS_SOCKET_TIMEOUT_SECONDS")),
        "socket_connect_timeout": 2,
        "health_check_interval": 30,
        "retry": Retry(NoBackoff(), 1),
        "retry_on_error": [redis.exceptions.ConnectionError],
    }


class SentinelBlockingConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel-discovered master behind the same waiting pool as REDIS_URL's (above).

    redis-py's SentinelConnectionPool is a plain ConnectionPool, which raises past its size
    instead of waiting: that is the spurious "unreachable" of issue 11 again. Mixed in first,
    the Sentinel side finds the master on every new connection (and drops idle connections to
    a former master); the blocking side hands connections out."""


def gate_client() -> redis.Redis:
    """The admission manager's client: REDIS_URL's server, or the Sentinels' current master.

    After a failover, a connection to the old master is dead (redis-py notices when it takes
    it from the pool) or fails in flight (refused, reset, or ReadOnlyError, which redis-py's
    Sentinel connection turns into a ConnectionError, retried once by `pool_options`); either
    way a fresh connection is made, and making one asks the Sentinels for the master. Scripts
    need no care: redis-py's Script answers NOSCRIPT by loading the script and running it again.
    """
    from django.conf import settings

    options = pool_options()
    if settings.REDIS_PASSWORD:
        options["password"] = settings.REDIS_PASSWORD
    if not settings.REDIS_SENTINELS:
        pool = redis.BlockingConnectionPool.from_url(settings.REDIS_URL, **options)
        return redis.Redis(connection_pool=pool)
    sentinel = Sentinel(settings.REDIS_SENTINELS, sentinel_kwargs=settings.REDIS_SENTINEL_KWARGS)
    return sentinel.master_for(
        settings.REDIS_SENTINEL_MASTER,
        connection_pool_class=SentinelBlockingConnectionPool,
        db=settings.REDIS_DB,
        **options,
    )


def client_close(client: redis.Redis) -> None:
    """Closes a client from `gate_client`, and the Sentinel connections behind it if any."""
    pool = client.connection_pool
    client.close()
    sentinel = getattr(pool, "sentinel_manager", None)
    if sentinel is not None:
        sentinel.close()
