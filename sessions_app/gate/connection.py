"""How each process connects to Redis for the gate (the admission manager's pool)."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


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
